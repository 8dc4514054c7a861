"""Pick which metrics the plot shows."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, SelectionList, Static
from textual.widgets.selection_list import Selection


class MetricPicker(ModalScreen[tuple[str, ...] | None]):
    """Space toggles a metric; Enter or Esc closes with the ones ticked."""

    BINDINGS = [
        Binding("escape", "done", "Done"),
        Binding("enter", "done", "Done", priority=True),
    ]

    def __init__(self, names: Sequence[str], chosen: Sequence[str]) -> None:
        super().__init__()
        self.names = tuple(names)
        self.chosen = set(chosen)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -metrics"):
            yield Label("Metrics to plot", classes="dialog-title")
            yield SelectionList[str](*(Selection(Text(n), n, n in self.chosen) for n in self.names))
            yield Static("Space: tick/untick   Enter/Esc: done", classes="dialog-note")

    def action_done(self) -> None:
        picked = self.query_one(SelectionList).selected
        self.dismiss(tuple(n for n in self.names if n in picked))
