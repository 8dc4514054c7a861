"""The compare view's table: the fields that differ between the marked runs, side by side.

It draws what it is given (the rows of :func:`tui.compare_rows.table_rows`, the same as
``backprop compare`` prints); the app computes them off the UI thread.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from runner.textsafe import safe_label
from tui.compare_rows import table_rows


class CompareTable(Static):
    """Differing arguments, config, code and results of the marked runs."""

    result: dict[str, Any] | None = None
    refreshed_at = -1e9  # monotonic time the app last asked for new rows

    DEFAULT_CSS = """
    CompareTable {
        height: auto;
        max-height: 50%;
        overflow-y: auto;
    }
    """

    def show(self, result: dict[str, Any] | None, message: str = "") -> None:
        """Draw ``result`` (a :func:`runner.compare.compare_runs` result) or ``message``."""
        self.result = result
        if result is None:
            self.update(Text(message, style="dim"))
            return
        table = Table(box=None, pad_edge=False, expand=True, show_edge=False)
        table.add_column("", style="dim", no_wrap=True, min_width=9)
        table.add_column("", no_wrap=True, min_width=12, max_width=18)
        for run in result["runs"]:
            head = Text(safe_label(f"{run['id']} {run['name'] or ''}", 40))
            table.add_column(head, no_wrap=True, ratio=1, overflow="ellipsis")
        rows = table_rows(result)
        last_section = None
        for section, field, cells in rows:
            shown = section if section != last_section else ""
            last_section = section
            table.add_row(
                Text(shown), Text(safe_label(field, 30)), *(Text(safe_label(c, 40)) for c in cells)
            )
        if not rows:
            table.add_row("", Text("no differences in arguments, config or code", style="dim"))
        self.update(table)
