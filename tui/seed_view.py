"""Seed groups as the TUI shows them: one mean curve with its ±1 std band, a group's spread.

Feed-side and pure (no Textual): the app passes rows and series in, widgets draw the result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.seeds import SeedGroup, aggregate, seed_groups
from tui.feed.snapshot import RunRow, SeriesView
from tui.widgets.plot_pane import Curve


@dataclass(frozen=True)
class RowRun:
    """A tree row as :func:`runner.seeds.seed_groups` reads a run."""

    id: str
    name: str
    command: tuple[str, ...]
    cwd: str = ""


def row_groups(rows: Sequence[RunRow]) -> list[SeedGroup]:
    """Seed groups among ``rows`` (their commands are the drawn, space-joined ones)."""
    return seed_groups(RowRun(r.id, r.name, tuple(r.command.split(" "))) for r in rows)


def compare_curves(
    rows: Sequence[RunRow], series: Mapping[str, SeriesView], metric_of: Mapping[str, str]
) -> list[Curve]:
    """Curves for the compare plot: a seed group becomes its mean plus a ±1 std band.

    ``metric_of`` maps a run id to the metric to draw (its primary metric). The band is drawn
    as two curves (plotext has no filled areas) labelled ``+1σ`` and ``-1σ``.
    """
    curves: list[Curve] = []
    grouped: set[str] = set()
    by_id = {r.id: r for r in rows}
    for group in row_groups(rows):
        metric = metric_of.get(group.run_ids[0], "loss")
        data = [
            series[i].metrics[metric]
            for i in group.run_ids
            if i in series and metric in series[i].metrics
        ]
        if len(data) < 2:
            continue
        band = aggregate(data)
        grouped.update(group.run_ids)
        label = f"{group.label} mean of {len(data)} seeds"
        upper = tuple(m + s for m, s in zip(band.mean, band.std, strict=True))
        lower = tuple(m - s for m, s in zip(band.mean, band.std, strict=True))
        curves.append(Curve(label, band.steps, band.mean))
        curves.append(Curve(f"{group.label} +1σ", band.steps, upper))
        curves.append(Curve(f"{group.label} -1σ", band.steps, lower))
    for run_id, row in by_id.items():
        if run_id in grouped:
            continue
        metric = metric_of.get(run_id, "loss")
        s = series.get(run_id)
        if s is not None and metric in s.metrics:
            curves.append(Curve(row.name, *s.metrics[metric]))
    return curves


def group_spread(rows: Sequence[RunRow]) -> str | None:
    """``loss 0.42 ± 0.03`` over a tree group whose runs differ only in seed, else ``None``.

    The statistics are over each run's latest value of its primary metric.
    """
    groups = row_groups(rows)
    if len(groups) != 1 or len(groups[0].run_ids) != len(rows):
        return None
    values = [r.loss for r in rows if r.loss is not None and math.isfinite(r.loss)]
    if len(values) < 2:
        return None
    metric = rows[0].primary_metric
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return f"{metric} {mean:.3g} ± {std:.2g}"
