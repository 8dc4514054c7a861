"""Continuing a run's metric capture where it stopped: after a lost supervisor, on demand.

``metrics.jsonl`` ends every batch with an offsets record (see :mod:`runner.metrics.ingest`), so the
point where ingestion of an attempt stopped is known exactly: a re-adopting supervisor and
``backprop reingest ID`` read ``output.log`` (and ``report.jsonl``) on from there, and
running either twice adds nothing twice. For a history written before offsets records
existed, the offsets in ``summary.json`` are used and points whose step the history already
has are skipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runner import identity
from runner.durable import read_json
from runner.metrics.history import decode_record, iter_records
from runner.metrics.ingest import Ingestor
from runner.model import RunSpec, ShapeError
from runner.registry import METRICS, OUTPUT, REPORT, SUMMARY, Registry

TAIL_BYTES = 1024 * 1024


class ReingestError(RuntimeError):
    """The run cannot be re-read now (one-line message)."""


def last_offsets(path: Path, attempt: int) -> tuple[int, int] | None:
    """The newest offsets record of ``attempt`` in ``metrics.jsonl`` (``None``: there is none)."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    for start in (max(0, size - TAIL_BYTES), 0):
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(size - start)
        for line in reversed(data.split(b"\n")):
            if b'"ingest"' not in line:
                continue
            found = _offsets(line, attempt)
            if found is not None:
                return found
        if start == 0:
            break
    return None


def _offsets(line: bytes, attempt: int) -> tuple[int, int] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or obj.get("a") != attempt:
        return None
    raw = obj.get("ingest")
    if not isinstance(raw, dict):
        return None
    o, r = raw.get("o"), raw.get("r")
    if type(o) is int and type(r) is int and o >= 0 and r >= 0:
        return o, r
    return None


def last_step(path: Path, attempt: int) -> int | None:
    """The highest step ``attempt`` has in the history."""
    best = None
    for obj in iter_records(path):
        rec = decode_record(obj)
        if rec is not None and rec.attempt == attempt and rec.step is not None:
            best = rec.step if best is None else max(best, rec.step)
    return best


def continue_point(run_dir: Path, attempt: int) -> tuple[tuple[int, int], int | None]:
    """Where to continue ``attempt``'s ingestion, and the step to skip through (if any)."""
    sizes = tuple(_size(run_dir / name) for name in (OUTPUT, REPORT))
    exact = last_offsets(run_dir / METRICS, attempt)
    if exact is not None and exact[0] <= sizes[0] and exact[1] <= sizes[1]:
        return exact, None
    offsets = (0, 0)
    try:
        summary = read_json(run_dir / SUMMARY)
    except (FileNotFoundError, ShapeError):
        summary = None
    if isinstance(summary, dict) and summary.get("attempt") == attempt:
        ingest = summary.get("ingest")
        if isinstance(ingest, dict):
            o, r = ingest.get("output_offset"), ingest.get("report_offset")
            if type(o) is int and type(r) is int and 0 <= o <= sizes[0] and 0 <= r <= sizes[1]:
                offsets = (o, r)
    return offsets, last_step(run_dir / METRICS, attempt)


def make_ingestor(
    run_dir: Path, spec: RunSpec, attempt: int, resume_at: tuple[int, int], skip: int | None
) -> Ingestor:
    """An ingestor that continues ``attempt`` from ``resume_at``."""
    return Ingestor(
        run_dir,
        spec,
        attempt,
        stall_factor=spec.stall_factor,
        stall_floor_s=spec.stall_after_s,
        resume_at=resume_at,
        skip_through_step=skip,
    )


def reingest(registry: Registry, run_id: str) -> dict[str, Any]:
    """Read a run's metrics on from ``output.log`` where its capture stopped.

    Idempotent: a second call adds nothing. Refused while a supervisor holds the run (it
    reads the output itself).

    Returns:
        ``id``, ``attempt``, ``points`` (metric records added), ``from_offset``,
        ``to_offset`` and ``dropped`` (lines that could not be written).
    """
    from runner.supervisor.claim import acquire_lock  # local: the CLI only needs it here

    run_dir = registry.run_dir(run_id)
    try:
        spec = registry.read_spec(run_id)
        state = registry.read_state(run_id)
    except (FileNotFoundError, ShapeError) as exc:
        raise ReingestError(f"cannot reingest run {run_id}: {exc}") from None
    lock = acquire_lock(run_dir)
    if lock is None:
        raise ReingestError(f"run {run_id} has a live supervisor; it reads its metrics itself")
    try:
        if state is not None and state.trainer is not None and identity.matches(state.trainer):
            raise ReingestError(f"run {run_id} still runs (pid {state.trainer.pid}); stop it first")
        attempt = state.attempt if state is not None else 1
        metrics = run_dir / METRICS
        before = _size(metrics)
        resume_at, dropped, error = catch_up(run_dir, spec, attempt)
        if error is not None:
            raise ReingestError(f"cannot reingest run {run_id}: {error}")
        added = sum(1 for obj in iter_records(metrics, before) if decode_record(obj))
        return {
            "id": run_id,
            "attempt": attempt,
            "points": added,
            "from_offset": resume_at[0],
            "to_offset": _size(run_dir / OUTPUT),
            "dropped": dropped,
        }
    finally:
        os.close(lock)


def catch_up(run_dir: Path, spec: RunSpec, attempt: int) -> tuple[tuple[int, int], int, str | None]:
    """Ingest an ended attempt's output from where its capture stopped (lock held).

    Returns:
        The offsets it started from, how many lines could not be written, the write error.
    """
    resume_at, skip = continue_point(run_dir, attempt)
    ingestor = make_ingestor(run_dir, spec, attempt, resume_at, skip)
    try:
        ingestor.poll(final=True)
        dropped = ingestor.settle()
        return resume_at, dropped, ingestor.write_error()
    finally:
        ingestor.close()


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
