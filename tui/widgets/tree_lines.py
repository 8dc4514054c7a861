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


def matches(row: RunRow, text: str) -> bool:
    """Whether ``row`` passes the filter: words match the name, id, group or status.

    ``status:failed`` (or just ``failed``) matches a status; several words must all match.
    """
    for word in text.lower().split():
        if word.startswith("status:"):
            if row.status.value != word[7:]:
                return False
        elif not (
            word in row.name.lower()
            or word == row.status.value
            or row.id.endswith(word)
            or (row.group is not None and word in row.group.lower())
        ):
            return False
    return True


def columns(width: int) -> tuple[int, int, int]:
    """Widths of the sparkline, step and loss columns for a tree ``width`` cells wide."""
    spark = 0 if width < 30 else (12 if width >= 56 else (8 if width >= 46 else 6))
    return (spark, 6, 7) if width >= 46 else (spark, 5, 6)
