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

from tui.feed.snapshot import OutputView

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

    def __init__(
        self, *, max_lines: int = MAX_LINES, id: str | None = None, classes: str | None = None
    ) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id, classes=classes)
        self.key: str | None = None
        self._generation = -1
        self._shown_total = 0
        self._placeholder: str | None = None
        self._base_style: Style | None = None

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]  # Log's is a @work thread per write; this one measures inline
        # Log measures new lines in a new worker thread per write; a batch of a few lines is
        # cheaper to measure here than a thread is to start.
        if lines:
            width = max(cell_len(self._process_line(line)) for line in lines)
            self._update_maximum_width(updates, width)

    @classmethod
    def _process_line(cls, line: str) -> str:
        return super()._process_line(_SGR_RE.sub("", line))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base_style = None

    def _render_line(self, y: int, scroll_x: int, width: int) -> Strip:
        # As Log's, with the widget's style looked up once, not per line (it walks every
        # ancestor's styles: as long as rendering the line from the cache).
        if self._base_style is None:
            self._base_style = self.rich_style
        rich_style = self._base_style
        if y >= len(self._lines):
            return Strip.blank(width, rich_style)
        line = self._render_line_strip(y, rich_style)
        line = line.crop_extend(scroll_x, scroll_x + width, rich_style)
        return line.apply_offsets(scroll_x, y)

    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        # Every new batch scrolls the pane, so each visible line is rendered again: keep the
        # strips (Log keeps them only while text is selected; it drops them on a style change
        # and moves them when old lines are pruned).
        if self.text_selection is not None:
            return super()._render_line_strip(y, rich_style)
        cache = self._render_line_cache
        strip = cache.get(y)
        if strip is None:
            raw = self._lines[y]
            if "\x1b" in raw:
                text = styled_line(raw.expandtabs())
                text.stylize_before(rich_style)
                strip = Strip(text.render(self.app.console), cell_len(text.plain))
            else:
                strip = super()._render_line_strip(y, rich_style)
            cache[y] = strip
        return strip

    def _prune_max_lines(self) -> None:
        # Once the buffer is full, every batch drops old lines: the pane keeps its height and
        # its scroll position, so Log repaints nothing and the pane froze on the lines it
        # showed. Everything moved up: repaint it.
        before = len(self._lines)
        super()._prune_max_lines()
        if len(self._lines) != before:
            self.refresh()

    def refresh_lines(self, y_start: int, line_count: int = 1) -> None:
        # Log refreshes the lines it appends before it scrolls to them: a region below the
        # pane, which Textual clips to the parent, not to the pane, and so repaints whatever
        # lies below (the plot). Refresh only what is inside the pane.
        for y in range(y_start, y_start + line_count):
            self._render_line_cache.discard(y)
        top = int(self.scroll_offset.y)
        start = max(y_start, top)
        end = min(y_start + line_count, top + self.scrollable_content_region.height)
        if start < end:
            super(Log, self).refresh_lines(start, end - start)

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
