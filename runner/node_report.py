"""What a supervisor publishes about itself from its node, for listers on other hosts.

* Its host, in ``state.json`` (``host``, every run, local too), so ``show`` and the tree say
  where a run ran.
* A heartbeat (:mod:`runner.heartbeat`), for a run placed on an engine only: from another host
  its pid cannot be checked, its heartbeat can. A local run's pids are the truth, so local
  supervisors write none and behave exactly as before.
* Its own process tree's GPU memory (:mod:`runner.gpu_usage`, ``gpu.json``), every run, once
  the trainer has started: VRAM per run wherever the TUI runs.

A remote supervisor needs no signal to hear a stop or pause (no one on another host can send
it one): it reads ``requests/`` every :data:`REQUEST_POLL_S` (:meth:`NodeReport.requests_due`;
a local one reads it on every turn of its loop, as before, and is nudged by SIGUSR1). On NFS a
new request shows once the client's attribute cache of the folder expires (``actimeo``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from runner.gpu_usage import GpuSampler
from runner.heartbeat import HeartbeatWriter, this_host
from runner.model import RunSpec, ShapeError
from runner.registry import Registry
from runner.supervisor import proctree
from runner.tickets import Queue

REQUEST_POLL_S = 1.0  # a remote supervisor's look at requests/ (one listing on shared storage)


class NodeReport:
    """A supervisor's reports: call :meth:`tick` on every turn of its loop (cheap when not due).

    Args:
        registry: the registry.
        spec: the run's spec (its placement says whether it is remote).
        attempt: the attempt supervised.
        boot_id: this host's boot id.
        pids: the run's process tree now (default: this process's descendants).
    """

    def __init__(
        self,
        registry: Registry,
        spec: RunSpec,
        attempt: int,
        *,
        boot_id: str,
        pids: Callable[[], set[int]] | None = None,
    ) -> None:
        run_dir = registry.run_dir(spec.id)
        self.host = this_host()
        self.remote = not spec.placement.is_local
        self.heartbeat = (
            HeartbeatWriter(run_dir, attempt=attempt, boot_id=boot_id) if self.remote else None
        )
        self.gpu = GpuSampler(run_dir, host=self.host, pids=pids or _own_tree)
        self._requests_at = -1e18
        self._queue = Queue(registry.root)
        self._run_id = spec.id
        self._attempt = attempt
        self._ticket_due = 0.0

    def tick(self, now: float, *, running: bool) -> None:
        """Beat (remote runs) and, while the trainer runs, sample the GPUs when due."""
        if self.heartbeat is not None:
            self.heartbeat.beat(now)
        if running:
            self.gpu.maybe_sample(now)

    def superseded(self, now: float) -> int | None:
        """The attempt that replaced this one, once the queue holds a later one (remote only).

        A remote attempt is declared lost when its heartbeat stops (a node cut off from the
        storage, say); its retry is a new attempt. Should the old supervisor come back, it
        must not write over the new attempt's records: it looks each heartbeat interval.
        """
        if self.heartbeat is None or now < self._ticket_due:
            return None
        self._ticket_due = now + self.heartbeat.every_s
        try:
            ticket = self._queue.read_ticket(self._run_id)
        except (ShapeError, OSError, ValueError):
            return None
        return ticket.attempt if ticket is not None and ticket.attempt > self._attempt else None

    def requests_due(self, now: float) -> bool:
        """Whether to read ``requests/`` now: always locally, each second on shared storage."""
        if not self.remote:
            return True
        if now - self._requests_at < REQUEST_POLL_S:
            return False
        self._requests_at = now
        return True


def _own_tree() -> set[int]:
    return set(proctree.descendants(os.getpid()))
