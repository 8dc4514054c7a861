"""Entry point of the per-run supervisor: ``python -m runner.supervisor.main``.

Started as ``python -m runner.supervisor.main --home ROOT --run ID --attempt N [--detach]`` by
a backend (:mod:`runner.backends.local`) once the dispatcher admitted the attempt. With
``--detach`` it forks once and the parent exits at once, so the launcher can reap it and the
supervisor is adopted by init (or a subreaper) in a session of its own: closing the terminal,
killing tmux or the launcher does not reach it.

It alone writes the run's ``state.json`` and ``events.jsonl``. It holds ``supervisor.lock`` for
its whole life (so two supervisors never run one run) and starts only an attempt the queue
admitted (``ticket.json``) that no supervisor has started before: a second start of the same
attempt (a dispatcher killed between its decision and the start, then restarted) exits at
once. It never asks for admission: placement arrives in the ticket. It starts the trainer in
its own process group with default signal dispositions and output straight to
``output.log``, adopts orphans as a child subreaper, and enforces stop, time limit and pause.
Control requests arrive as files in ``requests/`` (written by anyone), with SIGUSR1 as a nudge.
When it ends it pokes the queue, so a waiting run takes its place at once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

from runner.registry import Registry
from runner.supervisor.claim import acquire_lock, claim_attempt
from runner.supervisor.loop import Supervisor
from runner.supervisor.start import StartFailed
from runner.tickets import Queue

EXIT_ALREADY_SUPERVISED = 3
EXIT_NOT_ADMITTED = 4  # already started by another supervisor, or never admitted


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m runner.supervisor.main``."""
    parser = argparse.ArgumentParser(prog="backprop-supervisor")
    parser.add_argument("--home", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the dispatcher ignores it; we reap
    if args.detach and os.fork() > 0:
        os._exit(0)  # the launcher reaps this parent; the child is adopted by init
    if args.detach:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.close(devnull)
    registry = Registry(args.home)
    run_dir = registry.run_dir(args.run)
    lock = acquire_lock(run_dir)
    if lock is None:
        print(f"run {args.run} already has a supervisor", file=sys.stderr)
        return EXIT_ALREADY_SUPERVISED
    claimed = claim_attempt(registry, args.run, args.attempt)
    if isinstance(claimed, str):
        print(f"backprop: {claimed}; nothing to do", file=sys.stderr)
        return EXIT_NOT_ADMITTED
    sup = Supervisor(
        registry,
        args.run,
        args.attempt,
        timeout_s=claimed.timeout_s,
        resume_from=claimed.resume_from,
        ticket=claimed,
    )
    try:
        sup.run()
    except StartFailed:
        return 1
    finally:
        with contextlib.suppress(OSError):
            Queue(registry.root).poke()  # a slot is free: wake the dispatcher
    return 0


if __name__ == "__main__":
    sys.exit(main())
