"""Backprop runner: launches, supervises and records training runs (never imports textual).

``from runner import report`` is the training-side helper (:mod:`runner.reporting`); it is
the only thing this package imports eagerly, so ``import runner`` stays cheap.
"""

from __future__ import annotations

from runner.reporting import report

__all__ = ["report"]
