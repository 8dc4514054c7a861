"""A small keyboard form in a modal dialog: one line per field, Enter to accept, Esc to cancel.

The new-run, resume, fork and filter dialogs are all this form with different fields and a
different ``parse``: the dialog stays open, with the reason shown, until ``parse`` accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

T = TypeVar("T")


@dataclass(frozen=True)
class Field:
    """One input of a form."""

    key: str
    label: str
    value: str = ""
    placeholder: str = ""


class FormDialog(ModalScreen[T | None], Generic[T]):
    """A titled form; dismisses with ``parse(values)`` or ``None`` when cancelled."""

    # Tab and Shift+Tab are priority bindings: the app then moves the focus before it hands
    # the next key on. Otherwise keys that arrive together (tmux, a paste, a slow SSH link)
    # are all queued for the field that had the focus, and the Tabs move it afterwards.
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("tab", "app.focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "app.focus_previous", "Previous field", show=False, priority=True),
    ]

    def __init__(
        self,
        title: str,
        fields: Sequence[Field],
        parse: Callable[[dict[str, str]], T],
        *,
        note: str = "Enter: OK   Tab: next field   Esc: cancel",
        on_change: Callable[[dict[str, str]], None] | None = None,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.title_text = title
        self.fields = tuple(fields)
        self.parse = parse
        self.note = note
        self.on_change = on_change

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title", markup=False)
            for f in self.fields:
                with Horizontal(classes="form-row"):
                    yield Label(f.label, classes="form-label")
                    yield Input(
                        value=f.value,
                        placeholder=f.placeholder,
                        id=f"field-{f.key}",
                        select_on_focus=False,
                    )
            yield Static("", classes="dialog-error")
            yield Static(self.note, classes="dialog-note")

    def values(self) -> dict[str, str]:
        """What is typed in each field now."""
        return {f.key: self.query_one(f"#field-{f.key}", Input).value for f in self.fields}

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_accept()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self.on_change is not None:
            self.on_change(self.values())

    def action_accept(self) -> None:
        try:
            result = self.parse(self.values())
        except ValueError as exc:
            error = self.query_one(".dialog-error", Static)
            error.update(Text(str(exc)))
            error.add_class("-shown")
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
