"""The base layer of the supervisor: state, records and the wake-up pipe.

It holds the base layer of :class:`runner.supervisor.loop.Supervisor`: its state,
its records (state and events through the :class:`RecordKeeper`) and its wake-up pipe.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner import identity
from runner.model import RunSpec, RunState, Status
from runner.node_report import NodeReport
from runner.registry import Registry
from runner.supervisor.exits import StopKind
from runner.supervisor.recordkeeper import RecordKeeper
from runner.tickets import Ticket

if TYPE_CHECKING:
    import subprocess

    from runner.metrics.ingest import Ingestor
    from runner.supervisor.start import NoIngestor


class SupervisorBase:
    """State, records and the wake-up pipe of one attempt's supervisor."""

    # Set once the trainer starts (runner.supervisor.start), read by every later layer.
    ingestor: Ingestor | NoIngestor
    started_at: float
    _popen: subprocess.Popen[bytes]
    _terminate_reason: str

    def __init__(
        self,
        registry: Registry,
        run_id: str,
        attempt: int,
        *,
        timeout_s: float | None,
        resume_from: str | None,
        ticket: Ticket | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.run_id = run_id
        self.run_dir = registry.run_dir(run_id)
        self.attempt = attempt
        self.timeout_s = timeout_s
        self.resume_from = resume_from
        self.ticket = ticket or Ticket(run_id=run_id, attempt=attempt, kind="admitted")
        self.clock = clock
        self.spec: RunSpec = registry.read_spec(run_id)
        me = identity.identity_of(os.getpid())
        assert me is not None
        # Host, heartbeat (remote runs only) and GPU samples, for listers on other hosts.
        self.node = NodeReport(registry, self.spec, attempt, boot_id=me.boot_id)
        self.state = RunState(
            run_id=run_id,
            attempt=attempt,
            host=self.node.host,
            status=Status.STARTING,
            updated_at=clock(),
            supervisor=me,
            timeout_s=timeout_s,
            resume_from=resume_from,
            queued_at=self.ticket.queued_at or None,
        )
        self.trainer_pid: int | None = None
        self.cgroup: Path | None = None
        self.stop_kind: StopKind | None = None
        self.stop_phase = 0  # 0 none, 1 SIGINT sent, 2 SIGTERM sent, 3 SIGKILL sent
        self.engine_sigint = False  # the engine (Ray's stop_job) sent SIGINT to the whole job
        self.phase_at = 0.0
        self.paused_at: float | None = None
        self.paused_total = 0.0
        self.trimmed_at = 0.0
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # State and events go through the keeper: a write error never ends supervision.
        self.keeper = RecordKeeper(self.run_dir)
        self.write_trouble: str | None = None  # the first write error of this attempt

    # --- records ---------------------------------------------------------------------------

    def record(self, event: str, /, **fields: Any) -> None:
        """Append a lifecycle event (an end also fires its notifications)."""
        entry = {"t": self.clock(), "attempt": self.attempt, "event": event, **fields}
        self.keeper.put_event(entry)
        self._note_write_trouble(self.keeper.error)
        if event in _ENDS:
            notify_observers(self, getattr(self, "ingestor", None))

    def set_state(self, **changes: Any) -> None:
        """Durably replace ``state.json`` with the current state plus ``changes``.

        While writes fail the newest state waits in memory (see :class:`RecordKeeper`).
        """
        self.state = replace(self.state, updated_at=self.clock(), **changes)
        self.keeper.put_state(self.state.to_json())
        self._note_write_trouble(self.keeper.error)

    def _note_write_trouble(self, error: str | None) -> None:
        if error is not None and self.write_trouble is None:
            self.write_trouble = error

    def sync_records(self) -> None:
        """Retry records that could not be written yet (on the keeper's schedule)."""
        failing = self.keeper.error
        if failing is not None and self.keeper.flush():
            self.record("write_recovered", error=failing)

    def wait(self, timeout: float) -> None:
        """Sleep until a signal arrives or ``timeout`` passes."""
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], max(timeout, 0.0))
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 512):
                pass


_ENDS = frozenset({"exited", "stopped", "supervisor_error", "failed_to_start"})


def notify_observers(sup: SupervisorBase, ingestor: object | None) -> None:
    """Let the run's notification rules see the supervisor (and its metrics, once started)."""
    from runner import notify  # only once a run is admitted or ends: queued shims stay small

    notify.observe(sup, ingestor)
