"""Removing a run, once nothing of it runs any more."""

from __future__ import annotations

import contextlib
import os
import shutil
import time

from runner import identity
from runner.control.errors import LifecycleError
from runner.control.run_actions import (
    stop,
)
from runner.registry import (
    Registry,
    RunView,
)


def live_processes(registry: Registry, run_id: str, view: RunView | None = None) -> list[str]:
    """What still runs of a run: its supervisor and trainer, identity-checked (one line each).

    The status alone is not enough: a ``lost`` run's trainer may live on without its
    supervisor.
    """
    view = view or registry.load(run_id)
    found = []
    if registry.supervisor_locked(run_id):
        found.append("its supervisor")
    st = view.state
    if st is not None:
        if "its supervisor" not in found and identity.matches(st.supervisor):
            found.append(f"its supervisor (pid {st.supervisor.pid})")
        if st.trainer is not None and identity.matches(st.trainer):
            found.append(f"its trainer (pid {st.trainer.pid})")
    return found


def remove(registry: Registry, run_id: str, *, force: bool = False, wait_s: float = 15.0) -> str:
    """Delete a finished run's folder; returns a one-line description of what was done.

    A run with any live process (an active run, or a ``lost`` run whose trainer lives on) is
    refused: deleting its record would leave that process untracked. With ``force`` it is
    force-stopped first and removed once nothing of it runs.
    """
    view = registry.load(run_id)
    alive = live_processes(registry, run_id, view)
    stopped = ""
    if (alive or view.status.active) and not force:
        what = " and ".join(alive) if alive else "it"
        verb = "are" if len(alive) > 1 else "is"
        raise LifecycleError(
            f"cannot remove run {run_id}: {what} {verb} still running ({view.status.value}); "
            "stop it first or use rm --force"
        )
    if alive or view.status.active:
        with contextlib.suppress(LifecycleError):
            stop(registry, run_id, force=True)
        deadline = time.monotonic() + wait_s
        while live_processes(registry, run_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = live_processes(registry, run_id)
        if left:
            raise LifecycleError(
                f"cannot remove run {run_id}: {' and '.join(left)} survived a forced stop"
            )
        stopped = " after stopping it"
    folder = registry.run_dir(run_id)
    trash = registry.runs_dir / f".trash-{run_id}-{os.urandom(4).hex()}"
    os.rename(folder, trash)  # vanishes from listings atomically
    shutil.rmtree(trash, ignore_errors=True)
    return f"removed run {run_id}{stopped}"
