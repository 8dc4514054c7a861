"""How the tree shows the dependency graph: what a run waits for, and what waits for it.

Pure functions over the tree's rows, no Textual. A dependency's live status comes from its
own row, so "← 000123" and the details follow the dependency at once, whatever the waiting
run last wrote in its reason.
"""

from __future__ import annotations

from collections.abc import Mapping

from runner.model import Status
from tui.feed.snapshot import RunRow

KIND_TEXT = {"ok": "must complete", "any": "must end"}


def waiting_for(row: RunRow, rows: Mapping[str, RunRow]) -> str | None:
    """The first dependency a queued run still waits for (``None``: it waits for none)."""
    if row.status is not Status.QUEUED or not row.after:
        return None
    for run_id, _kind in row.after:
        dep = rows.get(run_id)
        if dep is None or not dep.status.finished:
            return run_id
    return None


def dependents_index(rows: Mapping[str, RunRow]) -> dict[str, tuple[str, ...]]:
    """Run id -> the ids of the runs that name it with ``--after``/``--after-any``."""
    index: dict[str, list[str]] = {}
    for row in rows.values():
        for run_id, _kind in row.after:
            index.setdefault(run_id, []).append(row.id)
    return {k: tuple(sorted(v, key=lambda i: (len(i), i))) for k, v in index.items()}


def after_text(row: RunRow, rows: Mapping[str, RunRow]) -> str:
    """``000123 running (must complete), 000124 completed (must end)``."""
    parts = []
    for run_id, kind in row.after:
        dep = rows.get(run_id)
        status = dep.status.value if dep is not None else "not shown"
        parts.append(f"{run_id} {status} ({KIND_TEXT.get(kind, kind)})")
    return ", ".join(parts) or "-"


def needed_by_text(ids: tuple[str, ...], rows: Mapping[str, RunRow]) -> str:
    """``000125 queued, 000126 skipped``."""
    return ", ".join(f"{i} {rows[i].status.value}" if i in rows else i for i in ids) or "-"
