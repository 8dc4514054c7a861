"""The human forms of ``ls`` and ``show``: the run table and the detail page."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from runner.backends.where import Where
from runner.config import format_duration
from runner.registry import RunView
from runner.textsafe import safe_label
from tui.cli import backends, pipeline


def _fmt_num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _age(t: float | None) -> str:
    return "-" if t is None else format_duration(max(0.0, time.time() - t)) + " ago"


def _duration_of(view: RunView) -> str:
    d = view.to_json()
    start, end = d.get("started_at"), d.get("ended_at")
    if start is None:
        return "-"
    return format_duration((end or time.time()) - start)


def print_table(views: Sequence[RunView], wheres: Mapping[str, Where] | None = None) -> None:
    """The human ``ls`` table (a GROUP column appears once any run belongs to a group).

    A BACKEND column appears once any run is not local (``wheres``: where the remote runs
    are, see :func:`tui.cli.backends.wheres`).
    """
    docs = [v.to_json() for v in views]
    with_group = any(d.get("group") for d in docs)
    found = wheres or {}
    with_backend = any(v.backend != "local" for v in views)
    primaries = {str(d.get("primary_metric") or "loss") for d in docs}
    metric = primaries.pop().upper() if len(primaries) == 1 else "METRIC"
    head = ["ID", "NAME", "STATUS", "STEP", metric[:16], "ATT", "TIME", "REASON"]
    if with_group:
        head.insert(2, "GROUP")
    if with_backend:
        head.insert(head.index("STATUS") + 1, "BACKEND")
    rows = [tuple(head)]
    for v, d in zip(views, docs, strict=True):
        health = ",".join(d.get("health") or [])
        reason = (d.get("reason") or "") + (f" [{health}]" if health else "")
        row = [
            v.id,
            safe_label(v.name, 28),
            v.status.value,
            _fmt_num(d.get("step")),
            _fmt_num(d.get("loss")),
            str(d.get("attempt") or "-"),
            _duration_of(v),
            safe_label(reason, 60) + backends.reason_note(v, found.get(v.id)),
        ]
        if with_backend:
            row.insert(3, backends.backend_cell(v, found.get(v.id)))
        if with_group:
            row.insert(2, safe_label(str(d.get("group") or "-"), 20))
        rows.append(tuple(row))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


def print_details(
    view: RunView,
    events: list[dict[str, Any]],
    doc: dict[str, Any] | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> None:
    """The human ``show`` page (``extra``: more label/value lines, such as provenance)."""
    d = view.to_json() if doc is None else doc
    fields = [
        ("id", d["id"]),
        ("name", safe_label(str(d["name"]))),
        ("group", d.get("group") or "-"),
        ("status", d["status"]),
        ("reason", safe_label(str(d.get("reason") or "-"))),
        ("attempt", d.get("attempt_text") or d["attempt"]),
        ("command", " ".join(safe_label(c) for c in d.get("command") or [])),
        ("cwd", d.get("cwd")),
        ("step", _fmt_num(d.get("step"))),
        ("loss", f"{_fmt_num(d.get('loss'))} (best {_fmt_num(d.get('best_loss'))})"),
        ("steps/s", _fmt_num(d.get("steps_per_s"))),
        ("progress", _fmt_num(d.get("progress"))),
        ("eta", format_duration(d.get("eta_s"))),
        ("checkpoints", f"{d.get('checkpoints', 0)} (latest {d.get('latest_checkpoint') or '-'})"),
        ("health", ", ".join(d.get("health") or []) or "ok"),
        ("created", _age(d.get("created_at"))),
        ("started", _age(d.get("started_at"))),
        ("ended", _age(d.get("ended_at"))),
        ("duration", _duration_of(view)),
        ("time limit", format_duration(d.get("timeout_s"))),
        ("exit code", _fmt_num(d.get("exit_code"))),
        ("signal", _fmt_num(d.get("signal"))),
        ("pid", _fmt_num(d.get("pid"))),
        ("gpus", ",".join(map(str, d.get("gpus") or [])) or "-"),
    ]
    fields += backends.where_fields(d)
    if d.get("parent"):
        fields.append(("forked from", f"{d['parent']['run_id']} @ {d['parent']['checkpoint']}"))
    fields += pipeline.dependency_fields(d)
    metrics = d.get("metrics") or {}
    if metrics:
        fields.append(("metrics", ", ".join(f"{k}={_fmt_num(v)}" for k, v in metrics.items())))
    fields += [(k, safe_label(v, 200)) for k, v in extra]
    for k, v in fields:
        print(f"{k:>12}  {v}")
    if events:
        print(f"{'events':>12}")
        for e in events[-10:]:
            stamp = time.strftime("%H:%M:%S", time.localtime(float(str(e.get("t", 0)))))
            detail = {k: v for k, v in e.items() if k not in ("t", "event", "attempt")}
            print(
                f"{'':>12}  {stamp} #{e.get('attempt')} {e.get('event')} "
                f"{safe_label(json.dumps(detail, default=str), 100)}"
            )


def print_env(env: dict[str, str], *, shown: bool) -> None:
    if not shown:
        print(f"{'env':>12}  {len(env)} variables, values hidden (--show-env shows them)")
        return
    print(f"{'env':>12}")
    for k, v in env.items():
        print(f"{'':>12}  {safe_label(k, 80)}={safe_label(v, 200)}")
