"""A run's live output: a bounded :class:`~textual.widgets.Log` fed in batches.

Lines arrive already sanitised by the producer (only SGR colour sequences survive). Here SGR
is turned into styling with the dangerous parts dropped: no background (text drawn in its
own background colour would hide), no conceal, no blink. Rich markup is never interpreted:
a line is a plain string until it becomes a :class:`rich.text.Text`.
"""

from __future__ import annotations

import re

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widgets import Log

from tui.data import OutputView

_SGR_RE = re.compile(r"\x1b\[[0-9;]*m")
MAX_LINES = 2000


def _safe_style(style: Style | str | None) -> Style | None:
    if not isinstance(style, Style):
        return None
    return Style(
        color=style.color,
        bold=style.bold,
        dim=style.dim,
        italic=style.italic,
        underline=style.underline,
    )


def styled_line(line: str) -> Text:
    """One sanitised output line as Text: SGR colours kept, nothing else honoured."""
    if "\x1b" not in line:
        return Text(line, no_wrap=True)
    text = Text.from_ansi(line, no_wrap=True, end="")
    text.spans[:] = [
        span._replace(style=safe) for span in text.spans if (safe := _safe_style(span.style))
    ]
    return text


class OutputLog(Log):
    """A Log that renders SGR colour safely and shows one run's output (or an interleave)."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=MAX_LINES, auto_scroll=True, id=id, classes=classes)
        self.key: str | None = None
        self._generation = -1
        self._shown_total = 0
        self._placeholder: str | None = None

    def _update_size(self, updates: int, lines: list[str]) -> None:
        # Log measures new lines in a new worker thread per write; a batch of a few lines is
        # cheaper to measure here than a thread is to start.
        if lines:
            width = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, width)

    @classmethod
    def _process_line(cls, line: str) -> str:
        return super()._process_line(_SGR_RE.sub("", line))

    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        raw = self._lines[y]
        if "\x1b" not in raw or self.text_selection is not None:
            return super()._render_line_strip(y, rich_style)
        text = styled_line(raw.expandtabs())
        text.stylize_before(rich_style)
        plain = text.plain
        return Strip(text.render(self.app.console), cell_len(plain))

    def show(self, key: str | None, view: OutputView | None, placeholder: str = "") -> None:
        """Show ``view`` as the output of ``key``: append new lines, or start over if needed.

        Only the lines not yet shown are written (one batch), unless the key changed, the
        file was compacted (a new generation) or more lines arrived than the buffer holds.
        """
        if view is None:
            if key != self.key or self._placeholder != placeholder:
                self.clear()
                self.key, self._generation, self._shown_total = key, -1, 0
                self._placeholder = placeholder
                if placeholder:
                    self.write_line(placeholder)
            return
        new = view.total - self._shown_total
        if (
            key != self.key
            or view.generation != self._generation
            or new < 0
            or new > len(view.lines)
        ):
            self.clear()
            self.key, self._generation, self._placeholder = key, view.generation, None
            if view.lines:
                self.write_lines(view.lines)
            elif placeholder:
                self._placeholder = placeholder
                self.write_line(placeholder)
        elif new:
            if self._placeholder is not None:
                self.clear()
                self._placeholder = None
            self.write_lines(view.lines[-new:])
        self._shown_total = view.total
