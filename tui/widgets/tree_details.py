"""The text of a run's detail lines (shown under an expanded run in the tree)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from governor.probes import GpuSnapshot
from runner.model import Status
from tui.feed.snapshot import RunRow
from tui.widgets.format import fmt_clock, fmt_loss, fmt_step, format_duration, format_size
from tui.widgets.pipeline_text import after_text, needed_by_text


def detail_text(
    row: RunRow,
    key: str,
    *,
    now: float,
    gpu: GpuSnapshot,
    rows: Mapping[str, RunRow],
    dependents: Callable[[], Mapping[str, tuple[str, ...]]],
) -> str:
    """The text of the detail line ``key`` of ``row`` (``now``: the clock, for durations).

    ``rows``: every row shown (a dependency line names the other runs); ``dependents``:
    who waits for whom among them (asked only for the "needed by" line).
    """
    if key == "id":
        attempt = row.attempt_text or f"attempt {row.attempt or '-'}"
        return f"{row.id}  {attempt}"
    if key == "backend":
        return where_text(row)
    if key == "engine":
        return engine_text(row)
    if key == "command":
        return row.command or "-"
    if key == "status":
        same = row.reason in ("", row.status.value)
        return row.status.value + ("" if same else f": {row.reason}")
    if key == "time":
        if row.started_at is None:
            ran = "not started"
        else:
            ran = "ran " + format_duration((row.ended_at or now) - row.started_at)
        limit = f", limit {format_duration(row.timeout_s)}" if row.timeout_s else ""
        return ran + limit
    if key == "steps":
        parts = [fmt_step(row.step)]
        if row.steps_per_s is not None:
            parts.append(f"{row.steps_per_s:.3g} steps/s")
        if row.progress is not None:
            parts.append(f"{row.progress * 100:.0f}%")
        if row.eta_s is not None and row.status is Status.RUNNING:
            parts.append(f"eta {format_duration(row.eta_s)}")
        return ", ".join(parts)
    if key == "loss":
        return f"{row.primary_metric} {fmt_loss(row.loss)}, best {fmt_loss(row.best_loss)}"
    if key == "ckpts":
        latest = f", latest {row.latest_checkpoint}" if row.latest_checkpoint else ""
        return f"{row.checkpoints}{latest}"
    if key == "gpus":
        used = sum(p.memory for g in gpu.gpus for p in g.processes if p.run_id == row.id)
        gpus = ",".join(map(str, row.gpus)) if row.gpus else "none"
        parts = [gpus]
        if used:
            parts.append(f"{format_size(used)} VRAM in use")
        if row.vram_request:
            parts.append(f"asked {format_size(row.vram_request)}")
        return ", ".join(parts)
    if key == "health":
        return ", ".join(row.health) if row.health else "ok"
    if key == "created":
        return f"{fmt_clock(row.created_at, now)}, started {fmt_clock(row.started_at, now)}"
    if key == "ended":
        return fmt_clock(row.ended_at, now)
    if key == "exit":
        if row.exit_code is None and row.signal is None:
            return "-"
        sig = f", signal {row.signal}" if row.signal is not None else ""
        return f"code {row.exit_code if row.exit_code is not None else '-'}{sig}"
    if key == "lineage":
        return f"forked from {row.parent}" if row.parent else "-"
    if key == "after":
        return after_text(row, rows)
    if key == "needed by":
        return needed_by_text(dependents().get(row.id, ()), rows)
    return "-"


_HANDLE_NAMES = {"slurm": "job", "ray": "submission"}


def where_text(row: RunRow) -> str:
    """A remote run's backend line: ``slurm job 4242 on node07``."""
    handle = _HANDLE_NAMES.get(row.backend, "handle")
    job = f" {handle} {row.job_id}" if row.job_id else ", not submitted yet"
    host = f" on {row.host}" if row.host else ", host not known yet"
    return f"{row.backend}{job}{host}"


def engine_text(row: RunRow) -> str:
    """What the engine said of a remote run, and whether that contradicts our status."""
    if not row.engine:
        return "not asked yet"
    if row.engine_disagrees:
        return f"{row.engine}, but ours is {row.status.value}"
    return f"{row.engine}, agrees"
