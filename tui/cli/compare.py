"""``backprop compare A B [C…]``: differing arguments, config, code and results side by side.

Registered by :func:`tui.cli.parser.build_parser`; the comparison itself is :mod:`runner.compare`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runner.compare import compare_runs
from runner.textsafe import safe_label
from tui.compare_rows import table_rows

if TYPE_CHECKING:
    import argparse

    from tui.cli.context import Context


def render(result: dict[str, Any], width: int = 28) -> str:
    """The human table: one column per run, one line per differing field."""
    head = ["", ""] + [f"{r['id']} {r['name'] or ''}" for r in result["runs"]]
    lines = [head]
    for section, field, cells in table_rows(result):
        lines.append([section, field, *cells])
    widths = [
        min(width, max(len(safe_label(row[i], width)) for row in lines)) for i in range(len(head))
    ]
    out = []
    for row in lines:
        out.append(
            "  ".join(safe_label(c, width).ljust(w) for c, w in zip(row, widths, strict=False))
        )
    if not table_rows(result):
        out.append("no differences in arguments, config or code")
    return "\n".join(line.rstrip() for line in out)


def cmd_compare(ctx: Context) -> int:
    """``backprop compare``."""
    if len(ctx.args.ids) < 2:
        raise ValueError("compare needs at least two runs")
    run_ids = [ctx.resolve(ref) for ref in ctx.args.ids]
    result = compare_runs(ctx.registry, run_ids)
    ctx.emit(result, lambda: print(render(result)))
    return 0


def register(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    """Add the command to the parser (``cmd`` is :func:`tui.cli.parser.build_parser`'s helper)."""
    c = cmd(
        "compare",
        cmd_compare,
        "runs side by side: differing arguments, config, code (commit, dirty) and results",
    )
    c.add_argument("ids", nargs="+", metavar="ID")
