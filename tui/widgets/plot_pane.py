"""Metric curves drawn with plotext: one run's chosen metrics, or several runs' losses overlaid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import RenderResult
from textual.color import Color
from textual.widget import Widget

from tui import seams

if TYPE_CHECKING:
    from textual_plotext.plot import Plot


@dataclass(frozen=True)
class Curve:
    """One line of a plot: a label and its points (steps ascending)."""

    label: str
    steps: tuple[int, ...]
    values: tuple[float, ...]


def thin(
    steps: Sequence[int], values: Sequence[float], limit: int
) -> tuple[list[int], list[float]]:
    """At most ``limit`` finite points, evenly spaced over the curve (the last one kept)."""
    pairs = [(s, v) for s, v in zip(steps, values, strict=False) if math.isfinite(v)]
    if len(pairs) > limit > 1:
        stride = len(pairs) / (limit - 1)
        pairs = [pairs[int(i * stride)] for i in range(limit - 1)] + [pairs[-1]]
    return [s for s, _ in pairs], [v for _, v in pairs]


class MetricPlot(Widget, can_focus=True):
    """A plot that is told what to draw and redraws only when that changes.

    It draws as textual-plotext's ``PlotextPlot`` does, but imports plotext only when it
    first has a curve to draw: the import (20-35 ms here) held the first frame back.
    """

    DEFAULT_CSS = """
    MetricPlot {
        width: 1fr;
        height: 1fr;
    }
    """

    def __init__(self, *, id: str | None = None, empty: str = "no metrics yet") -> None:
        super().__init__(id=id)
        self.curves: tuple[Curve, ...] = ()
        self.empty = empty
        self.plot_title = ""
        self._plot: Plot | None = None

    @property
    def plt(self) -> Plot:
        """The plotext figure (textual-plotext's ``Plot``), made on first use."""
        if self._plot is None:
            from textual_plotext.plot import Plot

            self._plot = Plot()
            self.app.theme_changed_signal.subscribe(
                self, lambda theme: self._register_theme(theme.name)
            )
            self._register_theme(self.app.theme)
        return self._plot

    def _register_theme(self, app_theme: str) -> None:
        """Give plotext a theme with the app's surface and foreground colours."""
        variables = self.app.theme_variables
        surface = Color.parse(variables.get("surface", "black")).rgb
        foreground = Color.parse(variables.get("foreground", "white")).rgb
        seams.register_plot_theme(f"textual-auto-{app_theme}", surface, foreground)
        self.refresh()

    def show_curves(
        self, curves: Sequence[Curve], title: str = "", empty: str | None = None
    ) -> None:
        """Draw ``curves`` (a no-op when nothing changed)."""
        curves = tuple(curves)
        if empty is not None and empty != self.empty:
            self.empty = empty
            self.refresh()
        if curves == self.curves and title == self.plot_title:
            return
        self.curves, self.plot_title = curves, title
        if not any(c.steps for c in curves) and self._plot is None:
            self.refresh()  # nothing to plot: the empty text needs no plotext
            return
        plt = self.plt
        plt.clear_data()
        limit = max(20, 2 * max(self.size.width, 40))
        for curve in curves:
            xs, ys = thin(curve.steps, curve.values, limit)
            if xs:
                plt.plot(xs, ys, label=curve.label, marker="braille")
        plt.title(title)
        plt.xlabel("step")
        self.refresh()

    def render(self) -> RenderResult:
        if not any(c.steps for c in self.curves) or self.size.height < 4 or self._plot is None:
            return Text(self.empty, style="dim", justify="center")
        plot = self._plot
        seams.set_plot_size(plot, self.size.width, self.size.height)
        plot.theme(f"textual-auto-{self.app.theme}")
        return Text.from_ansi(plot.build())
