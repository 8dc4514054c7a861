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
from runner.textsafe import sanitize_line
from tui.feed.snapshot import EMPTY_MAP, OutputView, SeriesView

# Output lines longer than this are cut (the rest is counted, not kept).
MAX_OUTPUT_LINE = 1000
# How often a tree row's sparkline is recomputed from the whole history.
SPARK_EVERY_S = 1.0
# A partial line (no newline yet) is kept up to this size, then shown as it is.
MAX_PENDING = 64 * 1024


def finite(value: Any) -> float | None:
    """A metric value as a float; the strings "nan"/"inf" that JSON cannot carry included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "+inf", "-inf"):
        return float(value.strip().lower())
    return None


def _read_at(path: Path, offset: int, size: int) -> bytes | None:
    """Up to ``size`` bytes of ``path`` from ``offset``; ``None`` when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)
    except OSError:
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

    def __init__(
        self, path: Path, *, max_points: int = 2000, max_read: int = 8 * 1024 * 1024
    ) -> None:
        self.path = path
        self.max_points = max_points
        self.max_read = max_read
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
        self._first_poll = True
        self._skip_partial = False

    def poll(self) -> bool:
        """Read what was appended since the last call; return whether anything changed."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return False
        if size < self.offset:  # rewritten (e.g. restored from a bundle): start again
            self.offset = 0
            self._points.clear()
            self._spark.clear()
            self.last_values.clear()
            self._last_at.clear()
            self.last_step = None
            self._rule = StepRule()
        if self._first_poll:
            self._first_poll = False
            # A huge history: the latest part is what a curve needs.
            if size - self.offset > 8 * self.max_read:
                self.offset = size - 8 * self.max_read
                self._skip_partial = True
        changed = False
        while self.offset < size:
            data = _read_at(self.path, self.offset, min(self.max_read, size - self.offset))
            if data is None:
                break
            end = data.rfind(b"\n")
            if end < 0:
                break
            self.offset += end + 1
            lines = data[: end + 1].split(b"\n")
            if self._skip_partial:
                lines = lines[1:]  # began mid-file: the first piece is part of a line
                self._skip_partial = False
            for line in lines:
                if line:
                    changed |= self._ingest(line)
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
        max_read: int = 1024 * 1024,
    ) -> None:
        self.path = path
        self.max_lines = max_lines
        self.initial_bytes = initial_bytes
        self.max_read = max_read
        self.offset: int | None = None
        self.generation = 0
        self.total = 0
        self.lines: deque[str] = deque(maxlen=max_lines)
        self._pending = b""
        self._view: OutputView | None = None
        self._skip_partial = False

    def _restart(self, size: int) -> None:
        self.offset = max(0, size - self.initial_bytes)
        self._skip_partial = self.offset > 0
        self._pending = b""

    def poll(self) -> list[str]:
        """Read what was appended since the last call; return the new lines."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            return []
        if self.offset is None:
            self._restart(size)
        elif size < self.offset:  # compacted: keep what we have, continue from the new tail
            self.generation += 1
            self.total = 0
            self.lines.clear()
            self._restart(size)
        assert self.offset is not None
        new: list[str] = []
        while self.offset < size:
            data = _read_at(self.path, self.offset, min(self.max_read, size - self.offset))
            if not data:
                break
            self.offset += len(data)
            data = self._pending + data
            cut = data.rfind(b"\n")
            if cut < 0:
                self._pending = data
                if len(self._pending) > MAX_PENDING:
                    new.append(self._line(self._pending))
                    self._pending = b""
                continue
            self._pending = data[cut + 1 :]
            chunks = data[:cut].split(b"\n")
            if self._skip_partial:
                chunks = chunks[1:]
                self._skip_partial = False
            new.extend(self._line(c) for c in chunks)
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
