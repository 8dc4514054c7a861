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


def submit_options(ctx: Context) -> dict[str, Any]:
    """Keyword arguments for ``lifecycle.submit``/``submit_many`` from the run options."""
    return {"priority": int(getattr(ctx.args, "priority", 0) or 0)}


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
