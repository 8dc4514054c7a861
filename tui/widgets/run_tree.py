"""The experiment tree: runs grouped by sweep/group, newest first, one line each.

One widget draws every line, inline sparklines included (fifty Sparkline widgets cost a
core; one ``render_line`` costs almost nothing). Rows are keyed by run id: a new snapshot
re-renders only the lines of rows that changed, and rebuilds the line list only when runs
appear, disappear, change group or enter/leave the filter. Textual sends a redrawn line to
the terminal whole, so how often rows change matters: the producer reads a busy run twice a
second, and the spinners turn twice a second (only their cells, in rows not just redrawn).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from governor.probes import GpuSnapshot
from runner.model import Status
from tui.feed.snapshot import RunRow
from tui.messages import RunHighlighted, SelectionChanged, VisibleRunsChanged
from tui.seed_view import group_spread
from tui.widgets.format import (
    fit,
    fmt_clock,
    fmt_loss,
    fmt_step,
    format_duration,
    format_size,
    icon,
    sparkline,
    truncate,
)
from tui.widgets.pipeline_text import after_text, dependents_index, needed_by_text, waiting_for

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
SPIN_HZ = 2


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


@lru_cache(maxsize=1024)
def _spark_text(values: tuple[float, ...], width: int) -> str:
    """A row's sparkline and the space after it (it changes once a second at most)."""
    return sparkline(values, width) + " "


def _strip(segments: list[Segment], width: int, style: Style) -> Strip:
    """One line: ``segments`` over ``style``, cut or padded to ``width``.

    Builds one Strip, not three: a Strip is costly to make.
    """
    line = [
        Segment(text, style + seg_style if seg_style else style) for text, seg_style, _ in segments
    ]
    strip = Strip(line)
    if strip.cell_length != width:
        strip = strip.crop_extend(0, width, style)
    return strip


class RunTree(ScrollView, can_focus=True):
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
    COMPONENT_CLASSES = {
        "runtree--cursor",
        "runtree--group",
        "runtree--selected",
        "runtree--spark",
        "runtree--muted",
        "runtree--key",
        "runtree--value",
        *(f"runtree--{s.value}" for s in Status),
    }

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

    # --- drawing ------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(
                f"runtree--{name}", partial=True
            )
        return style

    def _base_style(self) -> Style:
        # ``rich_style`` walks every ancestor's styles (~75 us); once per line was a third of
        # the cost of drawing a line. It changes only with the styles.
        style = self._styles.get("")
        if style is None:
            style = self._styles[""] = self.rich_style
        return style

    def render_line(self, y: int) -> Strip:
        top = int(self.scroll_offset.y)
        index = top + y
        width = self.size.width
        base = self._base_style()
        if index >= len(self.lines):
            if index == 0 and self.empty_text:
                text = " " + truncate(self.empty_text, max(1, width - 1))
                return _strip([Segment(text, self._style("muted"))], width, base)
            return Strip.blank(width, base)
        line = self.lines[index]
        if line.kind == "group":
            segments = self._group_segments(line.key, width)
        elif line.kind == "run":
            segments = self._run_segments(self.rows[line.key], width)
        else:
            segments = self._detail_segments(self.rows[line.key], line.index, width)
        line_style = base + self._style("cursor") if index == self.cursor else base
        return _strip(segments, width, line_style)

    def _mark(self, run_id: str) -> str:
        return "•" if run_id in self.selected else " "

    def _group_segments(self, name: str, width: int) -> list[Segment]:
        arrow = "▸" if name in self.collapsed else "▾"
        size = self._group_size.get(name, 0)
        running = sum(
            1 for r in self.rows.values() if r.group == name and r.status is Status.RUNNING
        )
        extra = f" ({size}" + (f", {running} running)" if running else ")")
        spread = group_spread([r for r in self.rows.values() if r.group == name])
        if spread:  # runs that differ only in seed: their spread
            extra += f" {spread}"
        label = truncate(name, max(1, width - 3 - len(extra)))
        return [
            Segment(f" {arrow} {label}", self._style("group")),
            Segment(extra, self._style("muted")),
        ]

    def _run_segments(self, row: RunRow, width: int) -> list[Segment]:
        indent = "  " if row.group is not None else ""
        spark_w, step_w, loss_w = columns(width)
        fixed = 1 + len(indent) + 2 + (spark_w + 1 if spark_w else 0) + step_w + 1 + loss_w
        name_w = max(4, width - fixed - 1)
        selected = row.id in self.selected
        name_style = self._style("selected") if selected else None
        segments = [
            Segment(self._mark(row.id) + indent, self._style("selected") if selected else None),
            Segment(icon(row.status, self._frame), self._style(row.status.value)),
        ]
        waits = waiting_for(row, self.rows)
        label = f" ← {waits}" if waits else ""
        if label and name_w - len(label) >= 4:  # a dependent shows what it waits for
            segments.append(Segment(" " + fit(row.name, name_w - len(label)), name_style))
            segments.append(Segment(label + " ", self._style("muted")))
        else:
            segments.append(Segment(" " + fit(row.name, name_w) + " ", name_style))
        if spark_w:
            segments.append(Segment(_spark_text(row.spark, spark_w), self._style("spark")))
        segments.append(Segment(fmt_step(row.step).rjust(step_w) + " ", self._style("muted")))
        segments.append(Segment(fmt_loss(row.loss, loss_w).rjust(loss_w)))
        return segments

    def _detail_segments(self, row: RunRow, index: int, width: int) -> list[Segment]:
        keys = self.detail_keys(row)
        if index >= len(keys):
            return []
        key = keys[index]
        indent = "    " if row.group is not None else "  "
        value = self.detail_value(row, key)
        label = f"{indent}{key:<8}" if len(key) < 8 else f"{indent}{key} "
        return [
            Segment(label, self._style("key")),
            Segment(truncate(value, max(1, width - len(label))), self._style("value")),
        ]

    def detail_value(self, row: RunRow, key: str) -> str:
        """The text of one detail line of ``row``."""
        now = self.clock()
        if key == "id":
            attempt = row.attempt_text or f"attempt {row.attempt or '-'}"
            return f"{row.id}  {attempt}"
        if key == "command":
            return row.command or "-"
        if key == "status":
            same = row.reason in ("", row.status.value)
            return row.status.value + ("" if same else f": {row.reason}")
        if key == "time":
            if row.started_at is None:
                ran = "not started"
            else:
                ran = "ran " + format_duration((row.ended_at or now) - row.started_at)
            limit = f", limit {format_duration(row.timeout_s)}" if row.timeout_s else ""
            return ran + limit
        if key == "steps":
            parts = [fmt_step(row.step)]
            if row.steps_per_s is not None:
                parts.append(f"{row.steps_per_s:.3g} steps/s")
            if row.progress is not None:
                parts.append(f"{row.progress * 100:.0f}%")
            if row.eta_s is not None and row.status is Status.RUNNING:
                parts.append(f"eta {format_duration(row.eta_s)}")
            return ", ".join(parts)
        if key == "loss":
            return f"{row.primary_metric} {fmt_loss(row.loss)}, best {fmt_loss(row.best_loss)}"
        if key == "ckpts":
            latest = f", latest {row.latest_checkpoint}" if row.latest_checkpoint else ""
            return f"{row.checkpoints}{latest}"
        if key == "gpus":
            used = sum(p.memory for g in self.gpu.gpus for p in g.processes if p.run_id == row.id)
            gpus = ",".join(map(str, row.gpus)) if row.gpus else "none"
            parts = [gpus]
            if used:
                parts.append(f"{format_size(used)} VRAM in use")
            if row.vram_request:
                parts.append(f"asked {format_size(row.vram_request)}")
            return ", ".join(parts)
        if key == "health":
            return ", ".join(row.health) if row.health else "ok"
        if key == "created":
            return f"{fmt_clock(row.created_at, now)}, started {fmt_clock(row.started_at, now)}"
        if key == "ended":
            return fmt_clock(row.ended_at, now)
        if key == "exit":
            if row.exit_code is None and row.signal is None:
                return "-"
            sig = f", signal {row.signal}" if row.signal is not None else ""
            return f"code {row.exit_code if row.exit_code is not None else '-'}{sig}"
        if key == "lineage":
            return f"forked from {row.parent}" if row.parent else "-"
        if key == "after":
            return after_text(row, self.rows)
        if key == "needed by":
            return needed_by_text(self.dependents().get(row.id, ()), self.rows)
        return "-"

    def dependents(self) -> dict[str, tuple[str, ...]]:
        """Who waits for whom, among the rows shown.

        A run's dependencies never change, so the index is rebuilt only when runs appear or
        vanish (``order`` is a new tuple exactly then), not on every snapshot.
        """
        if self._dependents[0] is not self.order:
            self._dependents = (self.order, dependents_index(self.rows))
        return self._dependents[1]

    def detail_keys(self, row: RunRow) -> tuple[str, ...]:
        """The detail lines of ``row``: the dependency lines only for runs in a pipeline."""
        keys: tuple[str, ...] = DETAIL_FIELDS
        if row.after:
            keys += ("after",)
        if row.id in self.dependents():
            keys += ("needed by",)
        return keys
