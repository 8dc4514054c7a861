"""The backend interface: how a run's supervisor is started, observed, stopped and read.

Shaped like TorchX's scheduler (``submit``, ``describe``, ``cancel``, ``log_iter``), with the
run folder as the truth and the backend's own view as a cross-check:

* :meth:`Backend.submit` starts the supervisor of one admitted attempt and returns the
  backend's handle for it (the local backend: the run id; Slurm: the job id; Ray: the
  submission id, derived from run id + attempt so a repeated submit is refused as a
  duplicate rather than run twice). It must be idempotent for one ``(run, attempt)``: a
  dispatcher killed between its decision and the submit submits again.
* :meth:`Backend.describe` says what the backend itself knows: ``pending`` with its own
  reason (Slurm's ``squeue %r`` becomes the run's queue reason), ``running``, ``ended`` or
  ``unknown`` (no accounting: say so rather than guess).
* :meth:`Backend.cancel` ends the run, gracefully (SIGINT, then SIGTERM, then SIGKILL by the
  supervisor) or at once.
* :meth:`Backend.logs` reads the trainer's output by byte offset (the run folder's
  ``output.log`` where it is shared storage).

``queues_itself``: a backend whose engine schedules (Slurm, Ray) skips the local governor's
admission: the dispatcher hands such a run over as soon as its dependencies allow, and the
engine's pending reason is what ``queued`` says. ``remote``: the supervisor runs on another
host, so process identities recorded in the run folder cannot be checked here; the run's
heartbeat and :meth:`describe` stand in for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from runner.registry import Registry

PENDING, RUNNING, ENDED, UNKNOWN = "pending", "running", "ended", "unknown"


@dataclass(frozen=True)
class BackendStatus:
    """The backend's own view of one attempt (a cross-check of the run folder).

    Attributes:
        state: ``pending``, ``running``, ``ended`` or ``unknown``.
        reason: the backend's words (a Slurm pending reason, an exit description).
        handle: the backend's id for the attempt (job id, submission id, run id).
        host: where it runs, when known.
    """

    state: str
    reason: str = ""
    handle: str = ""
    host: str = ""


class Backend(Protocol):
    """What the dispatcher and the commands need from a place where supervisors run."""

    name: str
    queues_itself: bool
    remote: bool

    def submit(self, registry: Registry, run_id: str, attempt: int) -> str:
        """Start the supervisor of an admitted attempt (idempotent); return the handle."""

    def describe(self, registry: Registry, run_id: str) -> BackendStatus:
        """The backend's view of the run's latest attempt."""

    def cancel(self, registry: Registry, run_id: str, *, force: bool) -> str:
        """Stop the run: gracefully, or with ``force`` at once. Returns what was done."""

    def logs(self, registry: Registry, run_id: str, offset: int, limit: int) -> tuple[bytes, int]:
        """Up to ``limit`` bytes of output from ``offset``; returns them and the next offset."""

    def reachable(self) -> tuple[bool, str]:
        """Whether the engine answers from here, and in a few words why not (``status``)."""


def read_output(registry: Registry, run_id: str, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of the run folder's ``output.log`` from ``offset``; the next offset.

    Every backend reads the trainer's output here: the run folder is the record (shared storage
    for a remote backend), never an engine's own copy of the log.
    """
    from runner.registry import OUTPUT

    try:
        with open(registry.run_dir(run_id) / OUTPUT, "rb") as f:
            f.seek(max(0, offset))
            data = f.read(max(0, limit))
    except FileNotFoundError:
        return b"", offset
    return data, offset + len(data)
