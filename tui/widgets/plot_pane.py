"""Metric curves drawn with plotext: one run's chosen metrics, or several runs' losses overlaid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot


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


class MetricPlot(PlotextPlot, can_focus=True):
    """A plot that is told what to draw and redraws only when that changes."""

    def __init__(self, *, id: str | None = None, empty: str = "no metrics yet") -> None:
        super().__init__(id=id)
        self.curves: tuple[Curve, ...] = ()
        self.empty = empty
        self.plot_title = ""

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
        if not any(c.steps for c in self.curves) or self.size.height < 4:
            return Text(self.empty, style="dim", justify="center")
        return super().render()
