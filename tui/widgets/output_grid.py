"""Several runs' output side by side, one pane each, keyed by run id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.markup import escape
from textual.containers import Grid

from tui.feed.snapshot import OutputView
from tui.widgets.output_pane import OutputLog

WAITING = "waiting for output…"


class OutputGrid(Grid):
    """A grid of :class:`OutputLog` panes; panes are added and removed by key, never rebuilt."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.panes: dict[str, OutputLog] = {}

    def show(self, runs: Sequence[tuple[str, str]], outputs: Mapping[str, OutputView]) -> None:
        """Show these ``(run id, name)`` panes, fed from ``outputs``."""
        wanted = {run_id for run_id, _ in runs}
        for run_id in [k for k in self.panes if k not in wanted]:
            self.panes.pop(run_id).remove()
        self.set_class(len(wanted) > 2, "-many")
        for run_id, name in runs:
            pane = self.panes.get(run_id)
            if pane is None:
                pane = self.panes[run_id] = OutputLog(classes="grid-pane")
                pane.border_title = escape(name)
                self.mount(pane)
                pane.call_after_refresh(pane.show, run_id, outputs.get(run_id), WAITING)
            else:
                pane.show(run_id, outputs.get(run_id), WAITING)
