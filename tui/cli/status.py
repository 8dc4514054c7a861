"""``backprop status``: the machine, the GPUs, the admission bucket and the queue."""

from __future__ import annotations

from tui.cli import queue
from tui.cli.context import Context
from tui.cli.conventions import EXIT_OK


def cmd_status(ctx: Context) -> int:
    """``backprop status``: the machine, the GPUs, the bucket and the queue."""
    from governor.status import render_status, status_report

    queue.ensure(ctx)
    report = status_report(ctx.registry, ctx.config)
    ctx.emit(report, lambda: print(render_status(report)))
    return EXIT_OK
