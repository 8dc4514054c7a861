"""A run's metric history (``metrics.jsonl``): records, latest-wins merging, tailing, summary.

One JSON object per line, appended only by the run's supervisor::

    {"a": 1, "s": 120, "t": 1700000000.5, "v": {"loss": 0.53, "val_loss": "nan"}}
    {"a": 1, "s": 100, "t": 1700000000.2, "e": "checkpoint", "path": "/.../ckpt-100.pt"}

``a`` is the attempt, ``s`` the step, ``t`` the wall time; non-finite values are the strings
``"nan"``, ``"inf"`` and ``"-inf"``. A torn last line is ignored by readers. Each batch ends
with an offsets record, ``{"a": 1, "ingest": {"o": 1234, "r": 0}}`` (how far the output and
the reports were read; see :mod:`runner.metrics.reingest`), which is neither a point nor an event.

Every reader (the summary and ``show``, the TUI's curves, :func:`read_history` and any
export) applies one rule, :class:`StepRule`, to what it reads:

1. **Within an attempt**, a record belongs at its step. A step that goes backwards is a late
   record for that step (another rank's line, an evaluation logged for an earlier step), not
   a rewind: the points after it stay. Records of one attempt at one step merge, metric by
   metric, the later value winning.
2. **Across attempts**, where attempts overlap in steps the latest attempt wins: an attempt
   owns every step from the lowest one it has written on, so an earlier attempt's points at
   those steps are dropped (a resume went back to a checkpoint), and a late record of an
   earlier attempt at such a step is ignored.
3. The run's latest point is the one at the highest step; its step is the run's step.

The digest in ``summary.json`` is :mod:`runner.metrics.summary`'s.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from runner.registry import METRICS
from runner.tail import LineTail

_encode_key = json.encoder.encode_basestring_ascii  # what json.dumps does to a key


@dataclass(frozen=True, slots=True)
class Point:
    """Metric values of one step of one attempt."""

    attempt: int
    step: int
    t: float
    values: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class CheckpointEvent:
    """A checkpoint the trainer announced."""

    attempt: int
    step: int | None
    t: float
    path: str


# --- records ---------------------------------------------------------------------------------


def encode_value(value: float) -> float | str:
    """A metric value as strict JSON allows it (non-finite values become strings)."""
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def decode_value(raw: Any) -> float | None:
    """The inverse of :func:`encode_value`; ``None`` for anything that is not a value."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if raw in ("nan", "inf", "-inf"):
        return float(raw)
    return None


def point_record(attempt: int, step: int, t: float, values: Mapping[str, float]) -> dict[str, Any]:
    """The ``metrics.jsonl`` record of a point."""
    return {
        "a": attempt,
        "s": step,
        "t": round(t, 6),
        "v": {k: encode_value(v) for k, v in values.items()},
    }


def encode_point(attempt: int, step: int, t: float, values: Mapping[str, float]) -> bytes:
    """``dump_json(point_record(...))``, byte for byte, without building the dict (hot path)."""
    parts = []
    for k in sorted(values):
        v = values[k]
        if v.__class__ is float and math.isfinite(v):
            enc = float.__repr__(v)
        else:  # non-finite (a string), or an int from report(): as the JSON encoder writes it
            enc = json.dumps(encode_value(v), allow_nan=False)
        parts.append(f"{_encode_key(k)}:{enc}")
    t6 = float.__repr__(round(t, 6))
    return f'{{"a":{attempt},"s":{step},"t":{t6},"v":{{{",".join(parts)}}}}}\n'.encode()


def event_record(attempt: int, step: int | None, t: float, path: str) -> dict[str, Any]:
    """The ``metrics.jsonl`` record of a checkpoint announcement."""
    return {"a": attempt, "s": step, "t": round(t, 6), "e": "checkpoint", "path": path}


def decode_record(obj: Any) -> Point | CheckpointEvent | None:
    """Parse one record; ``None`` for anything of another shape (never raises).

    A record without an attempt is attempt 1's, one without a time happened at time 0 (older
    and hand-written histories); any other field of the wrong type rejects the record.
    """
    if not isinstance(obj, dict):
        return None
    attempt, step, t = obj.get("a", 1), obj.get("s"), obj.get("t", 0.0)
    if not _is_int(attempt) or not isinstance(t, int | float) or isinstance(t, bool):
        return None
    if obj.get("e") == "checkpoint":
        path = obj.get("path")
        if not isinstance(path, str) or not (step is None or _is_int(step)):
            return None
        return CheckpointEvent(attempt=attempt, step=step, t=float(t), path=path)
    raw = obj.get("v")
    if not _is_int(step) or not isinstance(raw, dict):
        return None
    values: dict[str, float] = {}
    for k, v in raw.items():
        value = decode_value(v)
        if value is not None and isinstance(k, str):
            values[k] = value
    return Point(attempt=attempt, step=step, t=float(t), values=values)


def _is_int(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _decode_lines(lines: Iterable[bytes]) -> Iterator[Any]:
    for line in lines:
        if line:
            try:
                yield json.loads(line)
            except (ValueError, RecursionError):
                continue


# --- merging ---------------------------------------------------------------------------------


class StepRule:
    """Which attempt owns which steps: the one rule every reader of ``metrics.jsonl`` applies.

    See the module's docstring. Feed it each record's attempt and step in file order;
    :meth:`admit` says whether the record counts and which steps earlier attempts lose.

    Attributes:
        attempt: the latest attempt seen.
        step: the highest step of that attempt: the run's step (``None`` before any).
    """

    def __init__(self) -> None:
        self._first: dict[int, int] = {}  # attempt -> the lowest step it wrote
        self.attempt = 0
        self.step: int | None = None

    def admit(self, attempt: int, step: int) -> tuple[int, int | None] | None:
        """Whether a record of ``attempt`` at ``step`` counts, and what it takes.

        Returns:
            ``None`` when a later attempt owns ``step``; else the steps ``[lo, hi)`` that
            earlier attempts lose (``hi`` ``None``: no end; ``lo >= hi``: none).
        """
        first = self._first
        cut: int | None = None
        for other, low in first.items():
            if other > attempt and (cut is None or low < cut):
                cut = low
        if cut is not None and step >= cut:
            return None
        if attempt > self.attempt:
            self.attempt, self.step = attempt, step
        elif attempt == self.attempt and (self.step is None or step > self.step):
            self.step = step
        own = first.get(attempt)
        if own is not None and step >= own:
            return (step, step)  # nothing new is claimed
        first[attempt] = step
        hi = own if cut is None or (own is not None and own < cut) else cut
        return (step, hi)


@dataclass
class MergedSeries:
    """Points in strictly increasing step order, merged by :class:`StepRule`.

    Attributes:
        points: the merged points.
        version: incremented whenever points other than the last were dropped (a resume
            rewound the history), so a consumer knows to redraw from :attr:`points`.
    """

    points: list[Point] = field(default_factory=list)
    version: int = 0
    _steps: list[int] = field(default_factory=list, repr=False)
    _rule: StepRule = field(default_factory=StepRule, repr=False)

    def add(self, point: Point) -> int | None:
        """Merge ``point`` in; return the index of the first point that changed.

        ``None`` when the point does not count (a later attempt owns its step).
        """
        claim = self._rule.admit(point.attempt, point.step)
        if claim is None:
            return None
        pts, steps = self.points, self._steps
        lo, hi = claim
        first = len(pts)
        i = bisect_left(steps, lo)
        j = len(steps) if hi is None else bisect_left(steps, hi)
        if i < j:
            if i < len(pts) - 1:
                self.version += 1
            del pts[i:j], steps[i:j]
            first = i
        i = bisect_left(steps, point.step)
        if i < len(steps) and steps[i] == point.step:
            old = pts[i]  # the same attempt's (an earlier attempt's was dropped above)
            pts[i] = Point(point.attempt, point.step, point.t, {**old.values, **point.values})
        else:
            steps.insert(i, point.step)
            pts.insert(i, point)
        return min(first, i)

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """Steps and values of one metric."""
        steps, values = [], []
        for p in self.points:
            v = p.values.get(name)
            if v is not None:
                steps.append(p.step)
                values.append(v)
        return steps, values


@dataclass
class History(MergedSeries):
    """A run's whole history: merged points plus checkpoint announcements."""

    events: list[CheckpointEvent] = field(default_factory=list)
    records: int = 0

    def metric_names(self) -> list[str]:
        """Every metric name present, in first-seen order."""
        seen: dict[str, None] = {}
        for p in self.points:
            for k in p.values:
                seen.setdefault(k, None)
        return list(seen)


def iter_records(path: Path, offset: int = 0, end: int | None = None) -> Iterator[Any]:
    """Decoded JSON objects of the whole lines of ``path`` from ``offset`` (to ``end``)."""
    for batch in LineTail(path, offset).batches(end=end):
        yield from _decode_lines(batch)


def read_history(run_dir: Path | str) -> History:
    """Read a run's whole metric history (latest attempt wins on repeated steps)."""
    history = History()
    for obj in iter_records(Path(run_dir) / METRICS):
        _add(history, decode_record(obj))
    return history


def _add(history: History, rec: Point | CheckpointEvent | None) -> int | None:
    if rec is None:
        return None
    history.records += 1
    if isinstance(rec, CheckpointEvent):
        history.events.append(rec)
        return None
    return history.add(rec)


class HistoryTail:
    """Follows ``metrics.jsonl`` by byte offset; each :meth:`poll` costs one ``stat`` when idle.

    Args:
        run_dir: the run's folder.
        max_bytes: the most to read in one poll (the rest waits for the next).
    """

    def __init__(self, run_dir: Path | str, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.path = Path(run_dir) / METRICS
        self.max_bytes = max_bytes
        self.history = History()
        self._tail = LineTail(self.path, max_line=max_bytes)
        self._restarts = 0

    @property
    def points(self) -> list[Point]:
        """The merged points so far."""
        return self.history.points

    @property
    def events(self) -> list[CheckpointEvent]:
        """Checkpoint announcements so far."""
        return self.history.events

    @property
    def version(self) -> int:
        """Changes whenever earlier points were dropped: redraw from :attr:`points` then."""
        return self.history.version

    def poll(self) -> list[Point]:
        """Read what was appended; return the points added or changed, in step order.

        Every point from the first returned one on may be new or changed: a consumer keeps
        its points before that step and replaces the rest with the returned ones.
        """
        lines = self._tail.read(self.max_bytes)
        if self._tail.restarts != self._restarts:  # replaced or rewritten: start over
            self._restarts = self._tail.restarts
            self.history = History(version=self.history.version + 1)
        points = self.history.points
        first = len(points)
        for obj in _decode_lines(lines):
            changed = _add(self.history, decode_record(obj))
            if changed is not None:
                first = min(first, changed)
        return points[first:]
