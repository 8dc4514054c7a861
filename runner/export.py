"""Metric histories as tables: one row per step and attempt, written as CSV or JSON lines.

The rows are the merged history (:func:`run_history`): where a resumed attempt repeats steps,
the latest attempt wins, exactly as ``show``, the TUI and the plots read it. Non-finite values
are written as ``nan``, ``inf`` and ``-inf`` (as ``metrics.jsonl`` holds them); a metric a step
did not log is an empty CSV cell and is absent from a JSON line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from runner.metrics.history import History, encode_value, read_history

FORMATS = ("csv", "jsonl")
FIXED_COLUMNS = ("run_id", "attempt", "step", "time")


def run_history(run_dir: Path | str) -> History:
    """A run's merged metric history: the one place export and aggregation read it from."""
    return read_history(run_dir)


@dataclass(frozen=True, slots=True)
class Row:
    """One exported row: a run's merged point at one step."""

    run_id: str
    attempt: int
    step: int
    t: float
    values: dict[str, float]


def rows_of(run_id: str, history: History) -> list[Row]:
    """The rows of one run's history, in step order."""
    return [Row(run_id, p.attempt, p.step, p.t, dict(p.values)) for p in history.points]


def metric_columns(rows: Iterable[Row]) -> list[str]:
    """Every metric name in ``rows``, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for name in row.values:
            seen.setdefault(name, None)
    return list(seen)


def column_name(metric: str) -> str:
    """The CSV header of a metric (prefixed where it would clash with a fixed column)."""
    return f"metric.{metric}" if metric in FIXED_COLUMNS or metric.startswith("metric.") else metric


def metric_of_column(column: str) -> str:
    """The inverse of :func:`column_name`."""
    return column[len("metric.") :] if column.startswith("metric.") else column


def format_value(value: float) -> str:
    """A value as a CSV cell: ``repr`` round-trips every float exactly."""
    enc = encode_value(value)
    return enc if isinstance(enc, str) else repr(enc)


def write_csv(rows: Sequence[Row], out: IO[str]) -> int:
    """Write ``rows`` as CSV with a header; return the number of rows written."""
    names = metric_columns(rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*FIXED_COLUMNS, *(column_name(n) for n in names)])
    for row in rows:
        cells = [row.run_id, str(row.attempt), str(row.step), repr(row.t)]
        cells += [format_value(row.values[n]) if n in row.values else "" for n in names]
        writer.writerow(cells)
    return len(rows)


def write_jsonl(rows: Sequence[Row], out: IO[str]) -> int:
    """Write ``rows`` as JSON lines; return the number of rows written."""
    for row in rows:
        doc: dict[str, Any] = {
            "run_id": row.run_id,
            "attempt": row.attempt,
            "step": row.step,
            "time": row.t,
            "values": {k: encode_value(v) for k, v in row.values.items()},
        }
        out.write(json.dumps(doc, allow_nan=False) + "\n")
    return len(rows)


def write_rows(rows: Sequence[Row], out: IO[str], fmt: str) -> int:
    """Write ``rows`` in ``fmt`` (``csv`` or ``jsonl``).

    Raises:
        ValueError: for another format.
    """
    if fmt == "csv":
        return write_csv(rows, out)
    if fmt == "jsonl":
        return write_jsonl(rows, out)
    raise ValueError(f"unknown format {fmt!r}: use csv or jsonl")


def read_csv(text: Iterable[str]) -> Iterator[Row]:
    """Parse what :func:`write_csv` wrote (for tests and for re-import)."""
    reader = csv.reader(text)
    header = next(reader, None)
    if header is None:
        return
    metrics = [metric_of_column(c) for c in header[len(FIXED_COLUMNS) :]]
    for cells in reader:
        run_id, attempt, step, t = cells[: len(FIXED_COLUMNS)]
        values = {
            name: float(cell)
            for name, cell in zip(metrics, cells[len(FIXED_COLUMNS) :], strict=True)
            if cell != ""
        }
        yield Row(run_id, int(attempt), int(step), float(t), values)
