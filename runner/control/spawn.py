"""Starting a detached supervisor (``runner.supervisor.main``) for an admitted attempt.

Two ways, one result (a supervisor in a session of its own, adopted by init, stdio on
``/dev/null`` and ``supervisor.log``, nothing of the starter's inherited):

* **fork** (:mod:`runner.forkstart`): a process that allowed it (the ``backprop`` command, the
  dispatcher) and runs a single thread forks and calls the supervisor's ``main`` in the child.
  No new interpreter: ~150 ms of CPU less per start here, the fast path's and the drain's
  largest cost;
* **exec**: ``python -m runner.supervisor.main --detach`` in a new session, for everyone else
  (the TUI's threads, a user's script, ``BACKPROP_START=exec``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from runner import forkstart
from runner.registry import Registry

MODULE = "runner.supervisor.main"


def _pythonpath(env: Mapping[str, str] | None = None) -> str:
    # The child must import this very package, wherever the launcher was started.
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = os.environ if env is None else env
    return os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))


def popen_detached(
    module: str,
    args: Sequence[str],
    *,
    log: Path,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    log_or_null: bool = False,
) -> subprocess.Popen[bytes]:
    """``python -m MODULE ARGS --detach`` in a session of its own (supervisor, adopter, dispatcher).

    stdin and stdout on ``/dev/null``, stderr appended to ``log`` (``log_or_null``: to
    ``/dev/null`` when ``log`` cannot be opened, e.g. a full or read-only registry; else the
    ``OSError`` is raised), no inherited descriptor, and this package first on ``PYTHONPATH``.
    """
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = _pythonpath(child_env)
    try:
        err = open(log, "ab")  # noqa: SIM115 - closed below
    except OSError:
        if not log_or_null:
            raise
        err = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    with err:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args, "--detach"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            env=child_env,
            cwd=cwd,
        )


def spawn_supervisor(
    registry: Registry, run_id: str, *, attempt: int, wait: bool = True, fork: bool = True
) -> None:
    """Start a detached supervisor for one admitted attempt.

    What it runs (time limit, checkpoint, placement) it reads from the run's ticket. With
    ``fork`` (and a process that may: :func:`runner.forkstart.fork_allowed`) the supervisor
    is a fork of this process; else a new interpreter. With ``wait`` this returns once that
    interpreter has detached; without, at once (a long-lived caller that ignores ``SIGCHLD``
    starts many without waiting for each interpreter). Either way a second start of the same
    attempt exits by itself (the supervisor's lock and claim).
    """
    run_dir = registry.run_dir(run_id)
    args = ["--home", str(registry.root), "--run", run_id, "--attempt", str(attempt)]
    if fork and forkstart.fork_allowed():

        def supervise() -> int:
            from runner.supervisor.main import main

            return main(args)

        if forkstart.fork_call(
            supervise,
            cwd=run_dir,
            log=run_dir / "supervisor.log",
            env={"PYTHONPATH": _pythonpath()},
            # What `ps` shows, the run first: the space is the starter's command line's.
            title=[
                MODULE,
                "--run",
                run_id,
                "--attempt",
                str(attempt),
                "--home",
                str(registry.root),
            ],
        ):
            return
    proc = popen_detached(MODULE, args, log=run_dir / "supervisor.log", cwd=run_dir)
    if wait:
        proc.wait()


def preload() -> None:
    """Import the supervisor's code now, so that every fork of this process shares it."""
    import runner.supervisor.main  # noqa: F401
