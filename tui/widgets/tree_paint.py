"""How the run tree draws a line: a group header, a run's row with its sparkline, a detail.

One ``render_line`` draws every line (fifty Sparkline widgets cost a core; this costs almost
nothing); styles are looked up once per style change, not per line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual.scroll_view import ScrollView
from textual.strip import Strip

from governor.probes import GpuSnapshot
from runner.model import Status
from tui.feed.snapshot import RunRow
from tui.seed_view import group_spread
from tui.widgets.format import fit, fmt_loss, fmt_step, icon, sparkline, truncate
from tui.widgets.pipeline_text import dependents_index, waiting_for
from tui.widgets.tree_details import detail_text
from tui.widgets.tree_lines import Line, columns, detail_fields


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


class TreePainter(ScrollView):
    """The drawing half of :class:`~tui.widgets.run_tree.RunTree` (which owns the state)."""

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

    clock: Callable[[], float]
    rows: dict[str, RunRow]
    order: tuple[str, ...]
    lines: list[Line]
    collapsed: set[str]
    selected: set[str]
    cursor: int
    gpu: GpuSnapshot
    empty_text: str
    _frame: int
    _group_size: dict[str, int]
    _styles: dict[str, Style]
    _dependents: tuple[object, dict[str, tuple[str, ...]]]

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
        # A run on an engine says which, and flags the engine contradicting our status.
        place = "" if row.backend == "local" else f" @{row.backend}"
        flag = " ≠" if row.engine_disagrees and place else ""
        if place and name_w - len(place + flag + label) >= 4:
            name = fit(row.name, name_w - len(place + flag + label))
            segments.append(Segment(" " + name, name_style))
            segments.append(Segment(place, self._style("muted")))
            if flag:
                segments.append(Segment(flag, self._style("lost")))
            segments.append(Segment(label + " ", self._style("muted")))
        elif label and name_w - len(label) >= 4:  # a dependent shows what it waits for
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
        return detail_text(
            row, key, now=self.clock(), gpu=self.gpu, rows=self.rows, dependents=self.dependents
        )

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
        keys = detail_fields(row)
        if row.after:
            keys += ("after",)
        if row.id in self.dependents():
            keys += ("needed by",)
        return keys
