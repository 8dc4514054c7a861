"""The ``[governor]`` section of ``backprop.toml`` (placeholder until the governor lands)."""

from __future__ import annotations
