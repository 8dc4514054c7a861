"""Incremental readers of a run's files: ``metrics.jsonl`` and ``output.log`` by byte offset.

The producer thread owns them; each returns frozen values (:class:`~tui.feed.snapshot.SeriesView`,
:class:`~tui.feed.snapshot.OutputView`, :class:`MetricDigest`) that are safe to hand to the UI.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.metrics.history import Point, StepRule, decode_record
from runner.tail import LineTail
from runner.textsafe import sanitize_line
from tui.feed.snapshot import EMPTY_MAP, OutputView, SeriesView

# Output lines longer than this are cut (the rest is counted, not kept).
MAX_OUTPUT_LINE = 1000
# How often a tree row's sparkline is recomputed from the whole history.
SPARK_EVERY_S = 1.0
# A partial line (no newline yet) is kept up to this size, then its head is shown.
MAX_PENDING = 64 * 1024
# A metric record longer than this is not one Backprop wrote: skipped, counted by the tail.
MAX_METRIC_LINE = 1024 * 1024


def finite(value: Any) -> float | None:
    """A metric value as a float; the strings "nan"/"inf" that JSON cannot carry included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "+inf", "-inf"):
        return float(value.strip().lower())
    return None


class MetricTail:
    """Incremental reader of one run's ``metrics.jsonl``.

    Reads whole lines from a byte offset (a torn last line waits for the next poll) and
    places records by :class:`runner.metrics.history.StepRule`, the rule the summary and ``show``
    follow: within an attempt a record belongs at its step (a late one does not rewind);
    where attempts overlap in steps the latest attempt wins. Each metric keeps at most
    ``max_points``: beyond that, the older half is thinned, so recent points stay dense and
    memory stays bounded however long a run trains.
    """

    def __init__(self, path: Path, *, max_points: int = 2000, recent: int = 64 << 20) -> None:
        self.path = path
        self.max_points = max_points
        self.recent = recent  # a history larger than this is read from its last ``recent`` bytes
        self.offset = 0
        self.version = 0
        self.last_step: int | None = None
        self.last_values: dict[str, float] = {}
        self._rule = StepRule()
        self._last_at: dict[str, int] = {}  # metric -> the step of its value in last_values
        self._points: dict[str, dict[int, float]] = {}
        self._view: SeriesView | None = None
        self._digest: dict[tuple[str, int], MetricDigest] = {}
        self._spark: dict[tuple[str, int], tuple[float, tuple[float, ...]]] = {}
        self._tail: LineTail | None = None
        self._restarts = 0
        self._skip_partial = False

    def _reset(self) -> None:
        """Forget everything read: the file was rewritten (e.g. restored from a bundle)."""
        self._points.clear()
        self._spark.clear()
        self.last_values.clear()
        self._last_at.clear()
        self.last_step = None
        self._rule = StepRule()
        self._skip_partial = False

    def poll(self) -> bool:
        """Read what was appended since the last call; return whether anything changed."""
        if self._tail is None:
            try:
                size = os.stat(self.path).st_size
            except OSError:
                return False
            # A huge history: the latest part is what a curve needs.
            start = size - self.recent if size > self.recent else 0
            self._tail = LineTail(
                self.path, start, max_line=MAX_METRIC_LINE, over_long="drop", rewrite="restart"
            )
            self._skip_partial = start > 0  # began mid-file: the first piece is part of a line
        tail = self._tail
        changed = False
        for batch in tail.batches():
            if tail.restarts != self._restarts:
                self._restarts = tail.restarts
                self._reset()
                changed = True
            if self._skip_partial:
                batch = batch[1:]
                self._skip_partial = False
            for line in batch:
                if line:
                    changed |= self._ingest(line)
        if tail.restarts != self._restarts:  # rewritten and empty so far
            self._restarts = tail.restarts
            self._reset()
            changed = True
        if changed:
            self.version += 1
            self._view = None
            self._digest.clear()
        return changed

    def _ingest(self, line: bytes) -> bool:
        try:
            rec = decode_record(json.loads(line))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return False
        if not isinstance(rec, Point):
            return False
        step = rec.step
        claim = self._rule.admit(rec.attempt, step)
        if claim is None:
            return False  # a later attempt owns this step
        lo, hi = claim
        changed = False
        if hi is None or lo < hi:
            # Steps an earlier attempt loses (the run went back to a checkpoint).
            for points in self._points.values():
                gone = [s for s in points if s >= lo and (hi is None or s < hi)]
                for s in gone:
                    del points[s]
                changed |= bool(gone)
            for name, at in list(self._last_at.items()):
                if at >= lo and (hi is None or at < hi):  # its latest value was dropped
                    points = self._points[name]
                    if points:
                        self._last_at[name] = last = max(points)
                        self.last_values[name] = points[last]
                    else:
                        del self._last_at[name], self.last_values[name]
        for name, value in rec.values.items():
            points = self._points.setdefault(name, {})
            points[step] = value
            if step >= self._last_at.get(name, step):
                self.last_values[name] = value
                self._last_at[name] = step
            changed = True
            if len(points) > self.max_points:
                self._thin(points)
        self.last_step = self._rule.step
        return changed

    @staticmethod
    def _thin(points: dict[int, float]) -> None:
        steps = sorted(points)
        for s in steps[1 : len(steps) // 2 : 2]:
            del points[s]

    def view(self) -> SeriesView:
        """The history as an immutable value (rebuilt only after a change)."""
        if self._view is None:
            metrics: dict[str, tuple[tuple[int, ...], tuple[float, ...]]] = {}
            for name, points in self._points.items():
                steps = tuple(sorted(points))
                metrics[name] = (steps, tuple(points[s] for s in steps))
            self._view = SeriesView(MappingProxyType(metrics), self.version)
        return self._view

    def digest(self, metric: str, width: int) -> MetricDigest:
        """Latest step and values plus the whole curve of ``metric`` in ``width`` buckets.

        The curve is recomputed at most once a second (it moves slowly; the step and values
        are always the latest).
        """
        key = (metric, width)
        cached = self._digest.get(key)
        if cached is None:
            now = time.monotonic()
            spark_at, spark = self._spark.get(key, (-1e9, ()))
            if now - spark_at >= SPARK_EVERY_S or not spark:
                points = self._points.get(metric)
                spark = bucket_means([points[s] for s in sorted(points)], width) if points else ()
                self._spark[key] = (now, spark)
            cached = MetricDigest(
                step=self.last_step,
                values=MappingProxyType(dict(self.last_values)),
                spark=spark,
                names=tuple(self._points),
            )
            self._digest[key] = cached
        return cached


@dataclass(frozen=True)
class MetricDigest:
    """What a tree row needs of a run's metrics: the latest point and a tiny curve."""

    step: int | None = None
    values: Mapping[str, float] = field(default_factory=lambda: EMPTY_MAP)
    spark: tuple[float, ...] = ()
    names: tuple[str, ...] = ()


def bucket_means(values: list[float], width: int) -> tuple[float, ...]:
    """``values`` reduced to at most ``width`` bucket means (non-finite values skipped)."""
    if width <= 0 or not values:
        return ()
    n = len(values)
    buckets = min(width, n)
    out: list[float] = []
    for b in range(buckets):
        chunk = [v for v in values[b * n // buckets : (b + 1) * n // buckets] if math.isfinite(v)]
        out.append(sum(chunk) / len(chunk) if chunk else math.nan)
    return tuple(out)


class OutputTail:
    """Incremental, bounded reader of one run's ``output.log``.

    Starts near the end (the last ``initial_bytes``), reads whole lines by byte offset, keeps
    at most ``max_lines`` sanitised lines (colour kept as SGR only, every other escape and
    control character neutralised, carriage-return redraws collapsed, huge lines cut). When the file
    shrinks (the supervisor compacted it past its cap) it starts a new generation from the
    new tail.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_lines: int = 2000,
        initial_bytes: int = 256 * 1024,
    ) -> None:
        self.path = path
        self.max_lines = max_lines
        self.initial_bytes = initial_bytes
        self.generation = 0
        self.total = 0
        self.lines: deque[str] = deque(maxlen=max_lines)
        self._tail: LineTail | None = None
        self._view: OutputView | None = None
        self._skip_partial = False

    @property
    def offset(self) -> int | None:
        """Where the next read starts (``None`` before the first poll)."""
        return self._tail.offset if self._tail is not None else None

    def _restart(self, size: int) -> None:
        start = max(0, size - self.initial_bytes)
        # "wait": a shrunk file is handled here (a new generation from its tail), not by the tail.
        self._tail = LineTail(self.path, start, max_line=MAX_PENDING, rewrite="wait")
        self._skip_partial = start > 0

    def poll(self) -> list[str]:
        """Read what was appended since the last call; return the new lines."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return []
        if self._tail is None:
            self._restart(size)
        elif size < self._tail.offset:  # compacted: continue from the new tail
            self.generation += 1
            self.total = 0
            self.lines.clear()
            self._restart(size)
        assert self._tail is not None
        new: list[str] = []
        for batch in self._tail.batches(end=size):
            if self._skip_partial:
                batch = batch[1:]
                self._skip_partial = False
            new.extend(self._line(c) for c in batch)
        if new:
            self.lines.extend(new)
            self.total += len(new)
            self._view = None
        return new

    @staticmethod
    def _line(raw: bytes) -> str:
        return sanitize_line(
            raw.decode("utf-8", "replace"), keep_colour=True, max_len=MAX_OUTPUT_LINE
        )

    def view(self) -> OutputView:
        """The buffered lines as an immutable value (rebuilt only after a change)."""
        if self._view is None:
            self._view = OutputView(tuple(self.lines), self.total, self.generation)
        return self._view
