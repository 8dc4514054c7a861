"""A run's row, built from its registry view and (when read) its metric digest.

Every text field is made safe for a terminal here, once, so that widgets draw rows as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from runner.backends.where import Where
from runner.registry import RunView
from runner.textsafe import safe_label
from tui.feed.snapshot import RunRow
from tui.feed.tails import MetricDigest, finite


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return finite(value)
    return float(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def primary_metric(view: RunView) -> str:
    """The metric a run is judged by (``loss`` unless its spec says otherwise)."""
    return str(view.to_json().get("primary_metric") or "loss")


def row_from_view(
    view: RunView, digest: MetricDigest | None = None, where: Where | None = None
) -> RunRow:
    """Build a :class:`RunRow` from a registry view and, if read, its metric digest.

    The metric history wins over ``summary.json`` for step and loss: it is read on every
    change, while the summary is only as fresh as its last rewrite. ``where``: where a
    remote run is (:func:`runner.backends.where.where`); ``None`` for a local run.
    """
    d = view.to_json()
    metric = str(d.get("primary_metric") or "loss")
    row = _row_from_json(view, d, metric)
    if where is not None and not where.is_local:
        row = with_where(row, where)
    return row if digest is None else with_digest(row, digest, metric)


def with_where(row: RunRow, w: Where) -> RunRow:
    """``row`` with its backend, host, job id and the engine's view (made terminal-safe).

    A run queued on both sides shows the engine's reason (Slurm's pending reason).
    """
    queued = w.queue_reason(row.status)
    return replace(
        row,
        backend=safe_label(w.backend, 20),
        host=safe_label(w.host, 100),
        job_id=safe_label(w.handle, 100),
        engine=safe_label(w.engine_text(), 200),
        engine_disagrees=w.disagrees(row.status),
        reason=safe_label(f"{w.backend}: {queued}", 300) if queued else row.reason,
    )


def with_digest(row: RunRow, digest: MetricDigest, metric: str) -> RunRow:
    """``row`` with the step, ``metric`` value and sparkline of ``digest`` (metrics moved on).

    The same as building the row again from its view with this digest, without re-reading
    the view: the producer calls this many times a second for each running run.
    """
    step, loss = row.step, row.loss
    if digest.step is not None:
        step = digest.step
        loss = digest.values.get(metric, row.loss)
    names = (
        row.metric_names
        if digest.names == row.metric_names
        else tuple(safe_label(n, 40) for n in digest.names)
    )
    return replace(row, step=step, loss=loss, spark=digest.spark, metric_names=names)


def _row_from_json(view: RunView, d: Mapping[str, Any], metric: str) -> RunRow:
    step, loss = _int(d.get("step")), _num(d.get("loss"))
    parent = d.get("parent")
    lineage = None
    if isinstance(parent, dict) and isinstance(parent.get("run_id"), str):
        ckpt = parent.get("checkpoint")
        lineage = safe_label(
            f"{parent['run_id']} @ {os.path.basename(ckpt) if isinstance(ckpt, str) else '-'}"
        )
    command = d.get("command") or []
    resources = d.get("resources") or {}
    health = d.get("health") or []
    ckpt_latest = d.get("latest_checkpoint")
    return RunRow(
        id=view.id,
        name=safe_label(str(d.get("name") or view.id), 128),
        status=view.status,
        reason=safe_label(str(d.get("reason") or ""), 300),
        group=safe_label(str(d["group"]), 128) if d.get("group") else None,
        attempt=_int(d.get("attempt")) or 0,
        attempt_text=safe_label(str(d.get("attempt_text") or ""), 200),
        command=safe_label(" ".join(str(c) for c in command), 1000),
        step=step,
        loss=loss,
        best_loss=_num(d.get("best_loss")),
        primary_metric=safe_label(metric, 40),
        steps_per_s=_num(d.get("steps_per_s")),
        progress=_num(d.get("progress")),
        eta_s=_num(d.get("eta_s")),
        checkpoints=_int(d.get("checkpoints")) or 0,
        latest_checkpoint=(
            safe_label(os.path.basename(ckpt_latest)) if isinstance(ckpt_latest, str) else None
        ),
        health=tuple(safe_label(str(h), 60) for h in health if isinstance(h, str)),
        created_at=_num(d.get("created_at")),
        started_at=_num(d.get("started_at")),
        ended_at=_num(d.get("ended_at")),
        exit_code=_int(d.get("exit_code")),
        signal=_int(d.get("signal")),
        pid=_int(d.get("pid")),
        timeout_s=_num(d.get("timeout_s")),
        gpus=tuple(g for g in (d.get("gpus") or []) if isinstance(g, int)),
        vram_request=_int(resources.get("vram_bytes")) if isinstance(resources, dict) else None,
        parent=lineage,
        after=_after(d.get("after")),
    )


def _after(raw: Any) -> tuple[tuple[str, str], ...]:
    """A listing entry's dependencies, only well-formed ones (ids are digits: safe to draw)."""
    if not isinstance(raw, list):
        return ()
    out = []
    for d in raw:
        if isinstance(d, dict) and isinstance(d.get("id"), str) and d["id"].isdigit():
            out.append((d["id"][:12], "any" if d.get("kind") == "any" else "ok"))
    return tuple(out)
