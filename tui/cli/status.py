"""``backprop status``: the machine, the GPUs, the bucket, the queue and the backends."""

from __future__ import annotations

from tui.cli import backends, queue
from tui.cli.context import Context
from tui.cli.conventions import EXIT_OK


def cmd_status(ctx: Context) -> int:
    """``backprop status``: the machine, the GPUs, the bucket and the queue."""
    from governor.status import render_status, status_report

    queue.ensure(ctx)
    report = status_report(ctx.registry, ctx.config)
    names = backends.configured_backends(ctx.config, ctx.registry.list_runs())
    report["backends"] = backends.reachability(names)
    ctx.emit(
        report,
        lambda: print(
            render_status(report) + "\n" + backends.render_reachability(report["backends"])
        ),
    )
    return EXIT_OK
