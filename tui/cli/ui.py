"""The commands that open the Textual app: ``backprop tui`` and ``backprop demo``.

Only these import :mod:`tui.app` (lazily, when run): every other command stays Textual-free.
"""

from __future__ import annotations

from tui.cli import queue
from tui.cli.context import Context


def cmd_tui(ctx: Context) -> int:
    """``backprop tui`` (and ``backprop`` alone)."""
    from tui.app import run_app

    queue.ensure(ctx)
    return run_app(ctx.registry, readonly=getattr(ctx.args, "readonly", False))


def cmd_demo(ctx: Context) -> int:
    """``backprop demo``: real concurrent runs in a demo registry, shown in the TUI."""
    from tui.demo import run_demo

    return run_demo(ctx.args)
