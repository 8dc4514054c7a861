"""``backprop export-metrics`` and ``backprop plot``: a run's history out as a table or an image.

Registered by :func:`tui.cli.parser.build_parser`; never imports textual (nor matplotlib until an
image is drawn).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from runner.control.errors import LifecycleError
from runner.export import FORMATS, Row, rows_of, run_history, write_rows
from runner.registry import Registry

if TYPE_CHECKING:
    import argparse

    from tui.cli.context import Context

AddCommand = Callable[..., "argparse.ArgumentParser"]


def export_rows(registry: Registry, run_ids: list[str]) -> list[Row]:
    """Every row of the runs' merged histories, run after run."""
    rows: list[Row] = []
    for run_id in run_ids:
        rows += rows_of(run_id, run_history(registry.run_dir(run_id)))
    return rows


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.urandom(3).hex()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def export_to_file(registry: Registry, run_ids: list[str], out: Path, fmt: str) -> int:
    """Write the runs' rows to ``out`` in ``fmt``; return the number of rows."""
    buf = io.StringIO()
    count = write_rows(export_rows(registry, run_ids), buf, fmt)
    write_atomically(out, buf.getvalue())
    return count


def plot_to_file(
    registry: Registry,
    run_ids: list[str],
    out: Path,
    *,
    metric: str | None = None,
    group_seeds: bool = True,
    title: str | None = None,
) -> tuple[int, str]:
    """Draw the runs' curves to ``out``; return the number of curves and the metric."""
    from tui.plot_image import PlotUnavailable, draw, image_format, lines_for_runs

    image_format(out)  # a wrong suffix is refused before anything is read
    lines, name = lines_for_runs(registry, run_ids, metric, group_seeds=group_seeds)
    if not any(line.steps for line in lines):
        raise LifecycleError(f"no values of metric {name!r} in run(s) {', '.join(run_ids)}")
    try:
        draw(lines, out, metric=name, title=title)
    except PlotUnavailable as exc:
        raise LifecycleError(str(exc)) from None
    return len(lines), name


def _format_of(ctx: Context) -> str:
    fmt: str | None = ctx.args.format
    out = ctx.args.output
    if fmt is None and out:
        suffix = Path(out).suffix.lower().lstrip(".")
        fmt = suffix if suffix in FORMATS else None
    fmt = fmt or "csv"
    if ctx.json and not out:
        raise ValueError("--json needs -o FILE (without it the metrics go to stdout)")
    return fmt


def cmd_export_metrics(ctx: Context) -> int:
    """``backprop export-metrics``."""
    fmt = _format_of(ctx)
    run_ids = [ctx.resolve(ref) for ref in ctx.args.ids]
    if not ctx.args.output:
        write_rows(export_rows(ctx.registry, run_ids), sys.stdout, fmt)
        return 0
    out = Path(ctx.args.output)
    count = export_to_file(ctx.registry, run_ids, out, fmt)
    ctx.emit(
        {"ids": run_ids, "file": str(out), "format": fmt, "rows": count},
        f"wrote {count} rows of run(s) {', '.join(run_ids)} to {out}",
    )
    return 0


def cmd_plot(ctx: Context) -> int:
    """``backprop plot``."""
    out = Path(ctx.args.output)
    run_ids = [ctx.resolve(ref) for ref in ctx.args.ids]
    count, metric = plot_to_file(  # a ValueError (a wrong suffix) is a usage error: exit 2
        ctx.registry,
        run_ids,
        out,
        metric=ctx.args.metric,
        group_seeds=not ctx.args.no_group,
        title=ctx.args.title,
    )
    ctx.emit(
        {"ids": run_ids, "file": str(out), "metric": metric, "curves": count},
        f"drew {count} curve(s) of {metric} to {out}",
    )
    return 0


def register(cmd: AddCommand) -> None:
    """Add the commands to the parser (``cmd`` is :func:`tui.cli.parser.build_parser`'s helper)."""
    ex = cmd(
        "export-metrics",
        cmd_export_metrics,
        "write runs' metrics as CSV or JSON lines (one row per step, latest attempt wins)",
    )
    ex.add_argument("ids", nargs="+", metavar="ID")
    ex.add_argument("--format", choices=FORMATS, help="csv or jsonl (default: from -o, else csv)")
    ex.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    pl = cmd("plot", cmd_plot, "draw runs' curves to a PNG or SVG file (needs matplotlib)")
    pl.add_argument("ids", nargs="+", metavar="ID")
    pl.add_argument("-o", "--output", required=True, metavar="FILE.png|FILE.svg")
    pl.add_argument("--metric", help="metric to draw (default: the primary metric)")
    pl.add_argument("--title", help="the image's title")
    pl.add_argument(
        "--no-group", action="store_true", help="one curve per run, even for seed groups"
    )
