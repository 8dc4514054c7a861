"""The run tree's model: its lines (group, run, detail), the filter, the column widths.

Pure functions of rows, no drawing: :mod:`tui.widgets.run_tree` keeps the lines,
:mod:`tui.widgets.tree_paint` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tui.feed.snapshot import RunRow

DETAIL_FIELDS = (
    "id",
    "command",
    "status",
    "time",
    "steps",
    "loss",
    "ckpts",
    "gpus",
    "health",
    "created",
    "ended",
    "exit",
    "lineage",
)


@dataclass(frozen=True)
class Line:
    """One line of the tree: a group header, a run, or one detail line of an expanded run."""

    kind: str  # "group" | "run" | "detail"
    key: str  # group name or run id
    index: int = 0  # which detail field


# The detail lines a run placed on an engine adds after "status" (a local run has none).
REMOTE_FIELDS = ("backend", "engine")


def matches(row: RunRow, text: str) -> bool:
    """Whether ``row`` passes the filter: words match the name, id, group, status or backend.

    ``status:failed`` (or just ``failed``) matches a status, ``backend:slurm`` (or just
    ``slurm``) a backend, ``host:node07`` a host by prefix; several words must all match.
    """
    for word in text.lower().split():
        if word.startswith("status:"):
            if row.status.value != word[7:]:
                return False
        elif word.startswith("backend:"):
            if row.backend != word[8:]:
                return False
        elif word.startswith("host:"):
            if not row.host.lower().startswith(word[5:]):
                return False
        elif not (
            word in row.name.lower()
            or word == row.status.value
            or word == row.backend
            or row.id.endswith(word)
            or (row.group is not None and word in row.group.lower())
        ):
            return False
    return True


def detail_fields(row: RunRow) -> tuple[str, ...]:
    """The detail lines every run has, plus where it runs for one placed on an engine."""
    if row.backend == "local":
        return DETAIL_FIELDS
    at = DETAIL_FIELDS.index("status") + 1
    return DETAIL_FIELDS[:at] + REMOTE_FIELDS + DETAIL_FIELDS[at:]


def columns(width: int) -> tuple[int, int, int]:
    """Widths of the sparkline, step and loss columns for a tree ``width`` cells wide."""
    spark = 0 if width < 30 else (12 if width >= 56 else (8 if width >= 46 else 6))
    return (spark, 6, 7) if width >= 46 else (spark, 5, 6)
