"""Backprop runner: launches, supervises and records training runs (never imports textual).

``from runner import report`` is the training-side helper (:mod:`runner.metrics.reporting`);
it is the only thing this package imports eagerly, so ``import runner`` stays cheap. Metric
capture lives in :mod:`runner.metrics`, checkpoint discovery and inspection in
:mod:`runner.checkpoints`.
"""

from __future__ import annotations

from runner.metrics.reporting import report

__all__ = ["report"]
