"""The digest of a run's metric history that ``summary.json`` holds, kept incrementally.

Listing and the TUI read it instead of whole histories: the last and best value of the
primary metric, the step, the speed, progress and ETA when a total is known, checkpoints and
health. The supervisor feeds a :class:`SummaryBuilder` record by record; :func:`summarize`
gives the same digest of a whole :class:`~runner.metrics.history.History`. Both read the history by
:class:`~runner.metrics.history.StepRule`, the rule the TUI's curves follow too.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from collections import deque
from typing import Any

from runner.metrics.health import data_flags, higher_is_better
from runner.metrics.history import CheckpointEvent, History, Point, StepRule
from runner.model import SCHEMA

MAX_METRIC_NAMES = 256
RATE_WINDOW_S = 30.0
KEEP_POINTS = 16_384  # primary-metric points kept for rewinds; older ones fold into a floor


class SummaryBuilder:
    """The digest of a history, kept incrementally (what ``summary.json`` holds).

    Only the primary metric's latest points are kept (steps, values, running best), in
    compact arrays in step order, so that a resume that rewinds the history also rewinds the
    best value. Records are placed by :class:`~runner.metrics.history.StepRule`; :attr:`metrics`
    holds each metric's value at its highest step (one a resume dropped is gone until the
    latest attempt reports it again: a late line of an older attempt cannot bring it back, since
    the value that attempt left at a higher step is no longer known).
    Past :data:`KEEP_POINTS` the older half folds into a floor (its best and count), so a
    run of millions of steps costs the supervisor no more memory than a short one; a rewind
    further back than the kept points keeps the floor's best.

    Args:
        primary: the metric shown as "loss" (``spec.primary_metric``).
    """

    def __init__(self, primary: str = "loss") -> None:
        self.primary = primary
        self.higher_better = higher_is_better(primary)
        self.attempt = 0
        self.step: int | None = None
        self.records = 0
        self.metrics: dict[str, float] = {}
        self._metric_steps: dict[str, int] = {}
        self._dropped: set[str] = set()  # metrics a resume dropped, until reported again
        self._rule = StepRule()
        self.total_steps: int | None = None
        self.latest_announced: str | None = None
        self._steps = array("q")
        self._attempts = array("q")
        self._values = array("d")
        self._best = array("d")
        self._best_step = array("q")
        self._floor_best = math.nan
        self._floor_best_step = -1
        self._floor_points = 0
        self._rate: deque[tuple[float, int]] = deque()
        self._rate_attempt = 0

    # --- feeding ---

    def add(self, rec: Point | CheckpointEvent) -> None:
        """Account for one record (in file order)."""
        self.records += 1
        if isinstance(rec, CheckpointEvent):
            self.latest_announced = rec.path
            return
        claim = self._rule.admit(rec.attempt, rec.step)
        if claim is None:
            return  # a later attempt owns this step
        self.attempt, self.step = self._rule.attempt, self._rule.step
        s = rec.step
        lo, hi = claim
        steps = self._steps
        i = bisect_left(steps, lo)
        j = len(steps) if hi is None else bisect_left(steps, hi)
        if i < j:
            for arr in (steps, self._attempts, self._values, self._best, self._best_step):
                del arr[i:j]
            self._rebest(i)
        if hi is None or lo < hi:  # values of dropped steps are gone until reported again
            gone = [
                k for k, at in self._metric_steps.items() if at >= lo and (hi is None or at < hi)
            ]
            for k in gone:
                del self._metric_steps[k], self.metrics[k]
            self._dropped.update(k for k in gone if k != self.primary)  # its history is kept
            if self.primary in gone and self._values:  # the primary's history is kept
                self.metrics[self.primary] = self._values[-1]
                self._metric_steps[self.primary] = self._steps[-1]
        value = rec.values.get(self.primary)
        if value is not None:
            self._place(rec.attempt, s, value)
        latest = rec.attempt == self._rule.attempt
        for k, v in rec.values.items():
            if k in self._dropped:
                if not latest:
                    continue  # an older attempt's late line: its higher steps are unknown now
                self._dropped.discard(k)
            if k in self.metrics:
                if s >= self._metric_steps[k]:
                    self.metrics[k], self._metric_steps[k] = v, s
            elif len(self.metrics) < MAX_METRIC_NAMES:
                self.metrics[k], self._metric_steps[k] = v, s
        if rec.attempt == self._rule.attempt:
            self._track_rate(rec.attempt, rec.t, s)

    def _place(self, attempt: int, s: int, value: float) -> None:
        """Put the primary metric's value at step ``s`` (replacing one there)."""
        steps = self._steps
        if self._floor_points and (not steps or s < steps[0]):
            # Older than every kept point: only the floor's best can still change.
            self._floor_points += 1
            if math.isfinite(value) and (
                math.isnan(self._floor_best)
                or (value > self._floor_best if self.higher_better else value < self._floor_best)
            ):
                self._floor_best, self._floor_best_step = value, s
                self._rebest(0)
            return
        i = bisect_left(steps, s)
        if i < len(steps) and steps[i] == s:
            self._attempts[i] = attempt
            self._values[i] = value
        else:
            steps.insert(i, s)
            self._attempts.insert(i, attempt)
            self._values.insert(i, value)
            self._best.insert(i, math.nan)
            self._best_step.insert(i, -1)
        self._rebest(i)
        if len(steps) > KEEP_POINTS:
            self._fold(KEEP_POINTS // 2)

    def _rebest(self, i: int) -> None:
        """Recompute the running best from kept point ``i`` on (O(1) for an append)."""
        best = self._best[i - 1] if i > 0 else self._floor_best
        best_step = self._best_step[i - 1] if i > 0 else self._floor_best_step
        higher = self.higher_better
        for n in range(i, len(self._steps)):
            value = self._values[n]
            if math.isfinite(value) and (
                math.isnan(best) or (value > best if higher else value < best)
            ):
                best, best_step = value, self._steps[n]
            self._best[n], self._best_step[n] = best, best_step

    def _fold(self, n: int) -> None:
        """Fold the oldest ``n`` kept points into the floor."""
        self._floor_best, self._floor_best_step = self._best[n - 1], self._best_step[n - 1]
        self._floor_points += n
        for arr in (self._steps, self._attempts, self._values, self._best, self._best_step):
            del arr[:n]

    def _track_rate(self, attempt: int, t: float, step: int) -> None:
        window = self._rate
        if attempt != self._rate_attempt:
            window.clear()
            self._rate_attempt = attempt
        if window and step < window[-1][1]:
            return  # a late record for an earlier step: not progress
        if window and t < window[-1][0]:
            window.clear()  # the clock went back: the rate restarts
        if len(window) >= 2 and t - window[-1][0] < 0.05:
            window[-1] = (window[-1][0], step)  # keep the window small at high rates
        else:
            window.append((t, step))
        while len(window) > 2 and t - window[0][0] > RATE_WINDOW_S:
            window.popleft()

    # --- reading ---

    @property
    def last(self) -> float | None:
        """The latest value of the primary metric (may be non-finite)."""
        return self._values[-1] if self._values else None

    @property
    def best(self) -> float | None:
        """The best finite value of the primary metric so far."""
        best = self._best[-1] if self._best else self._floor_best
        return None if math.isnan(best) else best

    @property
    def best_step(self) -> int | None:
        """The step of :attr:`best`."""
        if self.best is None:
            return None
        return self._best_step[-1] if self._best_step else self._floor_best_step

    @property
    def primary_points(self) -> int:
        """How many points of the primary metric the merged history holds."""
        return self._floor_points + len(self._values)

    def steps_per_s(self) -> float | None:
        """Recent training speed, from the latest attempt's points."""
        w = self._rate
        if len(w) < 2:
            return None
        dt, ds = w[-1][0] - w[0][0], w[-1][1] - w[0][1]
        if dt <= 0 or ds <= 0:
            return None
        return ds / dt

    def flags(self) -> list[str]:
        """Health flags the data alone shows (``nan``, ``diverging``)."""
        return data_flags(self.last, self.best, self.primary_points, self.higher_better)

    def to_json(
        self,
        *,
        now: float,
        attempt: int | None = None,
        checkpoints: int = 0,
        latest_checkpoint: str | None = None,
        health: list[str] | None = None,
        running: bool = True,
    ) -> dict[str, Any]:
        """The ``summary.json`` object.

        Args:
            now: the time to record as ``updated_at``.
            attempt: the current attempt (default: the latest attempt with data).
            checkpoints: how many checkpoint files exist.
            latest_checkpoint: the newest checkpoint's path.
            health: the flags (default: :meth:`flags`).
            running: whether the run is still going (no ETA otherwise).
        """
        rate = self.steps_per_s()
        total = self.total_steps
        progress = eta = None
        if total and self.step is not None:
            progress = min(max(self.step / total, 0.0), 1.0)
            if running and rate and self.step < total:
                eta = (total - self.step) / rate
        return {
            "schema": SCHEMA,
            "attempt": attempt if attempt is not None else self.attempt,
            "step": self.step,
            "primary": self.primary,
            "loss": _finite(self.last),
            "best": self.best,
            "best_step": self.best_step,
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "steps_per_s": _round(rate),
            "total_steps": total,
            "progress": _round(progress),
            "eta_s": _round(eta),
            "checkpoints": checkpoints,
            "latest_checkpoint": latest_checkpoint,
            "health": self.flags() if health is None else health,
            "updated_at": now,
            "records": self.records,
        }


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _round(x: float | None) -> float | None:
    return None if x is None else float(f"{x:.6g}")


def summarize(
    history: History,
    *,
    primary: str = "loss",
    now: float = 0.0,
    checkpoints: int | None = None,
    total_steps: int | None = None,
) -> dict[str, Any]:
    """The summary of a whole history (pure; the supervisor keeps the same incrementally).

    ``checkpoints`` defaults to the number of distinct announced paths.
    """
    builder = SummaryBuilder(primary)
    for p in history.points:
        builder.add(p)
    for ev in history.events:
        builder.latest_announced = ev.path
    builder.records = history.records
    builder.total_steps = total_steps
    count = len({e.path for e in history.events}) if checkpoints is None else checkpoints
    return builder.to_json(
        now=now, checkpoints=count, latest_checkpoint=builder.latest_announced, running=False
    )
