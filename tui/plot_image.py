"""Metric curves as a PNG or SVG file, drawn with matplotlib (the optional ``plot`` extra).

matplotlib is imported only when an image is drawn: neither the CLI's other commands nor the
TUI load it. Each curve's line carries the SVG id ``series-N`` and its band ``band-N``, so a
reader (or a test) can find them in the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.export import run_history
from runner.model import RunSpec
from runner.registry import Registry
from runner.seeds import Band, aggregate, seed_groups

IMAGE_FORMATS = ("png", "svg")


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


@dataclass(frozen=True)
class Line:
    """One drawn curve, with an optional band around it (a seed group's spread)."""

    label: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    band: Band | None = None


def image_format(path: Path) -> str:
    """``png`` or ``svg`` from the file name.

    Raises:
        ValueError: for any other suffix.
    """
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"{path}: the image must end in .png or .svg")
    return fmt


def lines_for_runs(
    registry: Registry, run_ids: Sequence[str], metric: str | None, *, group_seeds: bool = True
) -> tuple[list[Line], str]:
    """The curves of ``metric`` (default: the first run's primary metric) for the runs.

    Runs that differ only in seed become one line (the mean) with a band (± one standard
    deviation) when ``group_seeds``. Returns the lines and the metric's name.
    """
    specs: list[RunSpec] = []
    for run_id in run_ids:
        spec = registry.read_spec(run_id)
        specs.append(spec)
    name = metric or (specs[0].primary_metric if specs else "loss")
    series = {s.id: run_history(registry.run_dir(s.id)).series(name) for s in specs}
    lines: list[Line] = []
    grouped: set[str] = set()
    if group_seeds:
        for g in seed_groups(specs):
            band = aggregate([series[i] for i in g.run_ids])
            label = f"{g.label} (mean ± std, {len(g.run_ids)} seeds)"
            lines.append(Line(label, band.steps, band.mean, band))
            grouped.update(g.run_ids)
    for spec in specs:
        if spec.id not in grouped:
            steps, values = series[spec.id]
            lines.append(Line(f"{spec.id} {spec.name}", tuple(steps), tuple(values)))
    return lines, name


def draw(lines: Sequence[Line], out: Path, *, metric: str, title: str | None = None) -> Path:
    """Write the curves to ``out`` (PNG or SVG by its suffix); return ``out``.

    Raises:
        PlotUnavailable: when matplotlib is not installed.
        ValueError: for an unknown suffix.
    """
    fmt = image_format(out)
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(
            "plotting to a file needs matplotlib: pip install 'backprop[plot]'"
        ) from None
    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    for i, line in enumerate(lines):
        pairs = [(s, v) for s, v in zip(line.steps, line.values, strict=False) if math.isfinite(v)]
        (drawn,) = ax.plot([s for s, _ in pairs], [v for _, v in pairs], label=line.label)
        drawn.set_gid(f"series-{i}")
        if line.band is not None and line.band.steps:
            b = line.band
            low = [m - s for m, s in zip(b.mean, b.std, strict=True)]
            high = [m + s for m, s in zip(b.mean, b.std, strict=True)]
            fill = ax.fill_between(b.steps, low, high, alpha=0.25, color=drawn.get_color())
            fill.set_gid(f"band-{i}")
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    if lines:
        ax.legend(loc="best", fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp")
    # The description names the number of curves: a reader can check the file without pixels.
    meta = {"Title": title or metric, "Description": f"backprop: {len(lines)} series of {metric}"}
    fig.savefig(tmp, format=fmt, metadata=meta)
    tmp.replace(out)
    return out
