"""``backprop status`` (placeholder until the governor lands)."""

from __future__ import annotations

from typing import Any

from runner.config import Config
from runner.registry import Registry


def status_report(registry: Registry, config: Config) -> dict[str, Any]:
    """The machine's state as the governor sees it."""
    return {"host": {}, "gpus": [], "queue": []}


def render_status(report: dict[str, Any]) -> str:
    """Human form of :func:`status_report`."""
    return str(report)
