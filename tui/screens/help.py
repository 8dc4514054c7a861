"""The keys, on one screen."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    """Every key with what it does; Esc, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, keys: Sequence[tuple[str, str]], note: str) -> None:
        super().__init__()
        self.keys = tuple(keys)
        self.note = note

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, what in self.keys:
            table.add_row(Text(key), Text(what))
        with VerticalScroll(classes="dialog -help"):
            yield Static("Backprop keys", classes="dialog-title")
            yield Static(table)
            yield Static(Text(self.note), classes="dialog-note")

    def action_close(self) -> None:
        self.dismiss(None)
