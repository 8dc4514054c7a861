"""The experiment tree: runs grouped by sweep/group, newest first, one line each.

One widget draws every line, inline sparklines included (fifty Sparkline widgets cost a
core; one ``render_line`` costs almost nothing). Rows are keyed by run id: a new snapshot
re-renders only the lines of rows that changed, and rebuilds the line list only when runs
appear, disappear, change group or enter/leave the filter. Textual sends a redrawn line to
the terminal whole, so how often rows change matters: the producer reads a busy run twice a
second, and the spinners turn twice a second (only their cells, in rows not just redrawn).

This module keeps the state and the keys; :mod:`tui.widgets.tree_paint` draws a line,
:mod:`tui.widgets.tree_lines` holds the line model and the filter, and
:mod:`tui.widgets.tree_details` the text of a run's detail lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from rich.style import Style
from textual.binding import Binding
from textual.geometry import Region, Size

from governor.probes import GpuSnapshot
from runner.model import Status
from tui.feed.snapshot import RunRow
from tui.messages import RunHighlighted, SelectionChanged, VisibleRunsChanged
from tui.widgets.tree_lines import Line, matches
from tui.widgets.tree_paint import TreePainter

SPIN_HZ = 2


class RunTree(TreePainter, can_focus=True):
    """All runs: a keyboard-driven tree with details under expanded runs."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "toggle_node", "Expand", show=False),
        Binding("right,l", "expand(True)", "Expand", show=False),
        Binding("left,h", "expand(False)", "Collapse", show=False),
        Binding("space", "select", "Select", show=False),
    ]

    def __init__(self, *, clock: Callable[[], float] = time.time, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self._frame = int(clock() * SPIN_HZ)
        self.rows: dict[str, RunRow] = {}
        self.order: tuple[str, ...] = ()
        self.lines: list[Line] = []
        self.expanded: set[str] = set()
        self._dependents: tuple[object, dict[str, tuple[str, ...]]] = (None, {})
        self.collapsed: set[str] = set()
        self.selected: set[str] = set()
        self.filter_text = ""
        self.cursor = 0
        self.gpu = GpuSnapshot()
        self.empty_text = ""
        self._line_of: dict[str, int] = {}
        self._group_size: dict[str, int] = {}
        self._highlighted: str | None = None
        self._visible: frozenset[str] = frozenset()
        self._styles: dict[str, Style] = {}
        self._drawn_at: dict[str, float] = {}  # run id -> when its row was last redrawn

    # --- data in ----------------------------------------------------------------------------

    def update_rows(
        self,
        runs: Sequence[RunRow],
        gpu: GpuSnapshot | None = None,
        changed: Sequence[RunRow] | None = None,
    ) -> None:
        """Take a snapshot's rows: re-render what changed, rebuild only when the shape changed.

        ``changed``: the rows that differ from the rows taken last (the producer knows them),
        so that a snapshot costs what changed in it, not how many runs there are. ``None``:
        compare them all.
        """
        if gpu is not None and gpu != self.gpu:
            self.gpu = gpu
            self.refresh_details()
        old = self.rows
        if changed is not None and len(runs) == len(self.order):
            if all(r.id in old for r in changed):
                old = {r.id: old[r.id] for r in changed}
                self.rows.update((r.id, r) for r in changed)
            else:
                changed = None  # not the rows taken last: compare them all
        if changed is None:
            new = {r.id: r for r in runs}
            order = tuple(new)
            self.rows = new
            if order != self.order:
                self.order = order
                self.rebuild()
                return
            changed = [r for i, r in new.items() if r is not old.get(i)]
        for row in changed:
            prev = old.get(row.id)
            if (
                prev is None
                or prev.group != row.group
                or (
                    self.filter_text
                    and matches(prev, self.filter_text) != matches(row, self.filter_text)
                )
            ):
                self.rebuild()
                return
        for row in changed:
            self._row_changed(row.id)

    def _row_changed(self, run_id: str) -> None:
        """Redraw a changed row (its lines only) if it is on screen."""
        y = self._line_of.get(run_id)
        top = int(self.scroll_offset.y)
        if (y is None or not top <= y < top + self.size.height) and run_id not in self.expanded:
            return  # off screen: drawn with its current data when it scrolls in
        self._drawn_at[run_id] = time.monotonic()
        self._refresh_run(run_id)

    def set_filter(self, text: str) -> None:
        """Show only the runs that match ``text`` (see :func:`matches`)."""
        if text != self.filter_text:
            self.filter_text = text
            self.rebuild()

    def rebuild(self) -> None:
        """Recompute the line list (runs appeared, vanished, moved group or filter changed)."""
        cursor_line = self.lines[self.cursor] if 0 <= self.cursor < len(self.lines) else None
        lines: list[Line] = []
        groups: dict[str, list[str]] = {}
        top: list[tuple[str, str]] = []  # ("run", id) or ("group", name), newest first
        for run_id in self.order:
            row = self.rows[run_id]
            if self.filter_text and not matches(row, self.filter_text):
                continue
            if row.group is None:
                top.append(("run", run_id))
            else:
                if row.group not in groups:
                    groups[row.group] = []
                    top.append(("group", row.group))
                groups[row.group].append(run_id)
        for kind, key in top:
            if kind == "group":
                lines.append(Line("group", key))
                if key in self.collapsed:
                    continue
                members = groups[key]
            else:
                members = [key]
            for run_id in members:
                lines.append(Line("run", run_id))
                if run_id in self.expanded:
                    count = len(self.detail_keys(self.rows[run_id]))
                    lines.extend(Line("detail", run_id, i) for i in range(count))
        self.lines = lines
        self._drawn_at = {k: t for k, t in self._drawn_at.items() if k in self.rows}
        self._line_of = {ln.key: i for i, ln in enumerate(lines) if ln.kind == "run"}
        self._group_size = {g: len(m) for g, m in groups.items()}
        self.cursor = self._find(cursor_line)
        self.virtual_size = Size(self.size.width, len(lines))
        self.refresh()
        self._after_move()

    def _find(self, line: Line | None) -> int:
        if line is None or not self.lines:
            return 0
        if line.kind == "detail":
            line = Line("run", line.key)
        if line.kind == "run" and line.key in self._line_of:
            return self._line_of[line.key]
        for i, candidate in enumerate(self.lines):
            if candidate == line:
                return i
        return min(self.cursor, len(self.lines) - 1)

    def _refresh_run(self, run_id: str) -> None:
        y = self._line_of.get(run_id)
        if y is None:
            return
        count = 1 + (len(self.detail_keys(self.rows[run_id])) if run_id in self.expanded else 0)
        self.refresh_lines(y, count)

    def refresh_details(self, *, active_only: bool = False) -> None:
        """Re-render the expanded runs' details (durations move on, VRAM changes)."""
        for run_id in self.expanded:
            row = self.rows.get(run_id)
            if row is not None and (row.status.active or not active_only):
                self._refresh_run(run_id)

    def tick(self) -> None:
        """Turn the spinners of running rows (the app ticks ``SPIN_HZ`` times a second).

        Only the spinner's cells are re-rendered, and only in rows not redrawn since the last
        tick: those show the current frame already.
        """
        now = time.monotonic()
        frame = int(self.clock() * SPIN_HZ)
        if frame == self._frame:
            return
        self._frame = frame
        recent = now - 1 / SPIN_HZ
        top = int(self.scroll_offset.y)
        for y in range(top, min(len(self.lines), top + self.size.height)):
            line = self.lines[y]
            if (
                line.kind == "run"
                and self.rows[line.key].status is Status.RUNNING
                and self._drawn_at.get(line.key, -1e9) < recent
            ):
                self.refresh(Region(0, y - top, 4, 1))

    # --- what the app asks -------------------------------------------------------------------

    @property
    def current_run(self) -> str | None:
        """The run under the cursor (a detail line belongs to its run)."""
        if 0 <= self.cursor < len(self.lines):
            line = self.lines[self.cursor]
            if line.kind != "group":
                return line.key
        return None

    def visible_ids(self) -> frozenset[str]:
        """The runs whose lines are on screen now."""
        top = int(self.scroll_offset.y)
        return frozenset(
            ln.key for ln in self.lines[top : top + max(1, self.size.height)] if ln.kind != "group"
        )

    # --- keys ---------------------------------------------------------------------------------

    def _navigable(self, y: int) -> bool:
        return self.lines[y].kind != "detail"

    def move_to(self, y: int) -> None:
        """Put the cursor on line ``y`` (clamped, detail lines skipped)."""
        if not self.lines:
            return
        y = max(0, min(len(self.lines) - 1, y))
        while y > 0 and not self._navigable(y):
            y -= 1
        old = self.cursor
        self.cursor = y
        self.refresh_lines(old)
        self.refresh_lines(y)
        self._after_move()

    def action_cursor(self, delta: int) -> None:
        y = self.cursor + delta
        while 0 <= y < len(self.lines) and not self._navigable(y):
            y += delta
        if 0 <= y < len(self.lines):
            self.move_to(y)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.size.height - 1))

    def action_jump(self, where: int) -> None:
        self.move_to(0 if where == 0 else len(self.lines) - 1)

    def action_toggle_node(self) -> None:
        if not self.lines:
            return
        line = self.lines[self.cursor]
        if line.kind == "group":
            self.collapsed.symmetric_difference_update({line.key})
        else:
            self.expanded.symmetric_difference_update({line.key})
        self.rebuild()

    def action_expand(self, expand: bool) -> None:
        if not self.lines:
            return
        line = self.lines[self.cursor]
        target, key = (
            (self.collapsed, line.key) if line.kind == "group" else (self.expanded, line.key)
        )
        is_open = (key not in target) if line.kind == "group" else (key in target)
        if is_open != expand:
            self.action_toggle_node()

    def action_select(self) -> None:
        run_id = self.current_run
        if run_id is None:
            return
        self.selected.symmetric_difference_update({run_id})
        self._refresh_run(run_id)
        self.post_message(SelectionChanged(frozenset(self.selected)))
        self.action_cursor(1)

    def _after_move(self) -> None:
        if self.lines:
            y = self.cursor
            run_id = self.current_run
            extra = len(self.detail_keys(self.rows[run_id])) if run_id in self.expanded else 0
            self.scroll_to_region(Region(0, y, 1, 1 + extra), animate=False, immediate=True)
            self.scroll_to_region(Region(0, y, 1, 1), animate=False, immediate=True)
        run_id = self.current_run
        if run_id != self._highlighted:
            self._highlighted = run_id
            self.post_message(RunHighlighted(run_id))
        self._report_visible()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._report_visible()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.lines))
        self._report_visible()

    def _report_visible(self) -> None:
        visible = self.visible_ids()
        if visible != self._visible:
            self._visible = visible
            self.post_message(VisibleRunsChanged(visible))
