"""``backprop compare A B [C…]``: differing arguments, config, code and results side by side.

Registered by :func:`tui.cli.build_parser`; the comparison itself is :mod:`runner.compare`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from runner.compare import compare_runs
from runner.textsafe import safe_label

if TYPE_CHECKING:
    import argparse

    from tui.cli import Context

SECTIONS = (
    ("arguments", "arguments"),
    ("config", "config"),
    ("provenance", "code"),
    ("metrics", "results"),
)


def cell(value: Any) -> str:
    """A value as a table cell (short commits, 4 significant digits)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        import json

        return json.dumps(value, default=str)
    return str(value)


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """``(section, field, cells)`` for every shown field (what the TUI's view draws too)."""
    rows: list[tuple[str, str, list[str]]] = []
    for key, title in SECTIONS:
        for field, values in result.get(key, {}).items():
            cells = [cell(v) for v in values]
            if field == "commit":
                cells = [c[:12] for c in cells]
            rows.append((title, field, cells))
    if result.get("env"):
        n = len(result["runs"])
        rows.append(("config", "env (values hidden)", [", ".join(result["env"])] + [""] * (n - 1)))
    return rows


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
    """Add the command to the parser (``cmd`` is :func:`tui.cli.build_parser`'s helper)."""
    c = cmd(
        "compare",
        cmd_compare,
        "runs side by side: differing arguments, config, code (commit, dirty) and results",
    )
    c.add_argument("ids", nargs="+", metavar="ID")
