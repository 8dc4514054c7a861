"""The queue on the command line: submit options, the fast path, and ``backprop queue``.

Every command that changes the queue ends with :func:`kick` (runs that fit start from this
very process, the rest get a dispatcher); every command that reads runs starts with
:func:`ensure` (waiting runs without a dispatcher get one, runs lost in a reboot are looked
at). Neither ever fails the command: the queue on disk stays the truth either way.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import TYPE_CHECKING, Any

from governor import dispatcher
from runner.retry import RetryPolicy

if TYPE_CHECKING:
    from tui.cli import Context


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The queue's options of ``backprop run``."""
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="place in the queue: higher starts first (default 0, range -4999..4999)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=None,
        help="retry up to N times after an end named by --retry-on (default: [retry] retries)",
    )
    parser.add_argument(
        "--retry-on",
        default=None,
        metavar="CAUSES",
        help="comma-separated among failed, lost, oom, preempted (default lost,oom,preempted)",
    )


def submit_options(ctx: Context) -> dict[str, Any]:
    """Keyword arguments for ``lifecycle.submit``/``submit_many`` from the run options.

    Raises:
        ConfigError: a bad ``--retries``/``--retry-on`` or ``[retry]`` (a usage error).
    """
    a = ctx.args
    base = RetryPolicy.from_config(ctx.config)
    retries = base.retries if a.retries is None else a.retries
    retry_on = base.retry_on if a.retry_on is None else a.retry_on
    policy = RetryPolicy.build(retries, retry_on, base.backoff_s, base.backoff_max_s)
    return {"priority": int(getattr(a, "priority", 0) or 0), "retry": policy}


def kick(ctx: Context) -> None:
    """After a change to the queue: start what fits now, leave a dispatcher for the rest."""
    try:
        dispatcher.kick(ctx.registry)
    except OSError as exc:  # the runs are queued on disk; the next command tries again
        print(f"backprop: warning: could not start the queue: {exc}", file=sys.stderr)


def ensure(ctx: Context) -> None:
    """Before reading runs: waiting runs get a dispatcher if none lives."""
    with contextlib.suppress(OSError):
        dispatcher.ensure(ctx.registry)
