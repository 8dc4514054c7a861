"""Acting on a run through its supervisor: stop, cancel, pause, continue, start now.

Control goes through files and signals only: a request file in the run's ``requests/`` folder,
then SIGUSR1 to the supervisor (after checking its identity) so it acts at once. A run placed on
an engine (Slurm, Ray) gets the file only (its supervisor polls it) and is stopped through its
backend, which may still hold it pending.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Set as AbstractSet
from dataclasses import replace

from runner import identity
from runner.control.errors import LifecycleError
from runner.durable import write_json
from runner.model import (
    ShapeError,
    Status,
)
from runner.registry import (
    REQUESTS,
    Registry,
    RunView,
)
from runner.tickets import (
    CANCELLED,
    FORCED_BAND,
    QUEUED,
    Queue,
)


def require_status(view: RunView, allowed: AbstractSet[Status], action: str) -> None:
    """Refuse ``action`` unless the run is in one of the ``allowed`` states."""
    if view.status not in allowed:
        detail = f" ({view.reason})" if view.reason else ""
        raise LifecycleError(f"cannot {action} run {view.id}: it is {view.status.value}{detail}")


def send_request(
    registry: Registry, run_id: str, action: str, *, reason: str | None = None
) -> bool:
    """Leave a control request for the run's supervisor and nudge it. Returns if nudged.

    ``reason`` (optional) is what the run's status will say, e.g. why the governor paused it.
    A stop or force-stop that cannot be written (full disk, read-only registry) is sent as a
    signal to the supervisor instead (SIGTERM, SIGUSR2).
    """
    folder = registry.run_dir(run_id) / REQUESTS
    name = f"{time.time_ns():020d}-{os.urandom(3).hex()}.json"
    doc: dict[str, object] = {"action": action, "at": time.time(), "by": os.getpid()}
    if reason:
        doc["reason"] = reason
    try:
        folder.mkdir(exist_ok=True)
        write_json(folder / name, doc)
    except OSError as exc:
        from runner.supervisor.recordkeeper import describe_write_error

        fallback = {"stop": signal.SIGTERM, "kill": signal.SIGUSR2}.get(action)
        with contextlib.suppress(ShapeError, OSError):
            state = registry.read_state(run_id)
            if fallback and state and identity.send_signal(state.supervisor, fallback):
                return True
        why = describe_write_error(exc, REQUESTS)
        raise LifecycleError(f"cannot {action} run {run_id}: {why}") from None
    with contextlib.suppress(ShapeError, OSError, ValueError):
        if not registry.read_spec(run_id).placement.is_local:
            # An engine's supervisor polls its requests; SIGUSR1 is Slurm's time warning there.
            return False
    with contextlib.suppress(ShapeError, OSError):
        state = registry.read_state(run_id)
        if state is not None:
            return identity.send_signal(state.supervisor, signal.SIGUSR1)
    return False


def stop(registry: Registry, run_id: str, *, force: bool = False) -> str:
    """Stop a run: graceful (SIGINT, then SIGTERM, then SIGKILL) or, with ``force``, SIGKILL.

    Returns a one-line description of what was done.
    """
    view = registry.load(run_id)
    if view.status is Status.LOST:
        return _stop_lost(registry, view, force=force)
    require_status(view, {Status.STARTING, Status.QUEUED, Status.RUNNING, Status.PAUSED}, "stop")
    if view.status is Status.QUEUED and cancel_queued(registry, run_id, "stopped while queued"):
        return f"stopped queued run {run_id}"
    if view.spec is not None and not view.spec.placement.is_local:
        # Handed to an engine: it may hold the job pending, or the supervisor is on another host.
        from runner.backends import get_backend

        return get_backend(view.spec.placement.backend).cancel(registry, run_id, force=force)
    send_request(registry, run_id, "kill" if force else "stop")
    return f"{'force-' if force else ''}stop requested for run {run_id}"


def _stop_lost(registry: Registry, view: RunView, *, force: bool) -> str:
    """Stop a run whose supervisor is gone: end every process of it ourselves, by identity.

    The run's lock is taken first. Reading a lost run with a live trainer starts a new
    supervisor for it (:func:`runner.supervisor.adopt.adopt_orphan`); ending the trainer under
    that one's feet would leave it to record a death by SIGKILL with no stop on record
    (``failed``). Holding the lock keeps it out; if it holds the lock already, it supervises
    the run again and takes the stop as a request, like any supervisor.
    """
    from runner.supervisor.claim import acquire_lock
    from runner.supervisor.members import stop_unsupervised

    run_id = view.id
    try:
        lock = acquire_lock(registry.run_dir(run_id))  # a lock only checked waits ≤ 1 s
    except OSError:
        lock = -1  # no lock file can be opened: nobody can supervise it either
    if lock is None:
        send_request(registry, run_id, "kill" if force else "stop")
        return f"{'force-' if force else ''}stop requested for run {run_id} (supervised again)"
    try:
        ending = stop_unsupervised(
            view.state.trainer if view.state else None,
            run_id,
            registry.root,
            force=force,
            grace_s=view.spec.grace_int_s if view.spec else 30.0,
        )
    finally:
        if lock >= 0:
            os.close(lock)
    if not ending.ended and not ending.survivors:
        raise LifecycleError(f"cannot stop run {run_id}: it is lost and nothing is running")
    if ending.survivors:
        raise LifecycleError(f"run {run_id} had no supervisor: {ending.describe()}")
    return f"run {run_id} had no supervisor: {ending.describe()}"


def cancel_queued(
    registry: Registry, run_id: str, reason: str, *, end_status: Status = Status.STOPPED
) -> bool:
    """End a queued run without running it. Returns ``False`` if it left the queue already.

    The ticket says why, and the run reads as ``end_status`` with that reason.
    """
    queue = Queue(registry.root)
    with queue.locked():
        ticket = queue.read_ticket(run_id)
        if ticket is None or ticket.kind != QUEUED:
            return False
        queue.write_ticket(
            replace(ticket, kind=CANCELLED, reason=reason, end_status=end_status.value)
        )
        for entry in queue.find(run_id):
            queue.remove(entry)
    queue.poke()
    return True


def pause(registry: Registry, run_id: str, *, reason: str | None = None) -> str:
    """Pause a running run (SIGSTOP to its process group); ``reason`` defaults to the user."""
    require_status(registry.load(run_id), {Status.RUNNING}, "pause")
    send_request(registry, run_id, "pause", reason=reason)
    return f"pause requested for run {run_id}"


def cont(registry: Registry, run_id: str, *, reason: str | None = None) -> str:
    """Continue a paused run (SIGCONT)."""
    require_status(registry.load(run_id), {Status.PAUSED}, "continue")
    send_request(registry, run_id, "continue", reason=reason)
    return f"continue requested for run {run_id}"


def start_now(registry: Registry, run_id: str) -> str:
    """Start a queued run now, bypassing the governor's limits (moves it to the front)."""
    require_status(registry.load(run_id), {Status.QUEUED}, "start")
    queue = Queue(registry.root)
    with queue.locked():
        for entry in queue.find(run_id):
            queue.move(entry, replace(entry, band=FORCED_BAND))
    queue.poke()
    return f"start requested for run {run_id}"
