"""The local backend (the default): a detached supervisor process on this machine."""

from __future__ import annotations

import os

from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN, BackendStatus, read_output
from runner.model import Status
from runner.registry import Registry


class LocalBackend:
    """Today's behaviour: ``python -m runner.supervisor.main --detach`` in a session of its own."""

    name = "local"
    queues_itself = False
    remote = False

    def __init__(self, *, wait: bool = True) -> None:
        """``wait=False``: do not wait for each supervisor to detach (the caller reaps)."""
        self.wait = wait

    def submit(self, registry: Registry, run_id: str, attempt: int) -> str:
        """Start the supervisor (a second start of the same attempt exits by itself)."""
        from runner.control.spawn import spawn_supervisor

        spawn_supervisor(registry, run_id, attempt=attempt, wait=self.wait)
        return run_id

    def describe(self, registry: Registry, run_id: str) -> BackendStatus:
        """The run folder reconciled with the live processes is all a local backend knows."""
        view = registry.load(run_id)
        if view.status in (Status.QUEUED, Status.STARTING):
            state = PENDING
        elif view.status in (Status.RUNNING, Status.PAUSED):
            state = RUNNING
        elif view.status.finished:
            state = ENDED
        else:
            state = UNKNOWN
        return BackendStatus(state=state, reason=view.reason, handle=run_id, host=os.uname()[1])

    def cancel(self, registry: Registry, run_id: str, *, force: bool) -> str:
        """Stop through the run's control requests (the supervisor escalates)."""
        from runner.control.run_actions import stop

        return stop(registry, run_id, force=force)

    def logs(self, registry: Registry, run_id: str, offset: int, limit: int) -> tuple[bytes, int]:
        """Read ``output.log`` from ``offset``."""
        return read_output(registry, run_id, offset, limit)

    def reachable(self) -> tuple[bool, str]:
        """This machine is always there."""
        return True, f"this machine ({os.uname()[1]})"
