"""What a run whose supervisor is on another host reads as: heartbeat first, then the engine.

Invariant 4 ("reality wins over records") checks a recorded pid against this kernel. A run
placed on an engine (Slurm, Ray) is supervised on a compute node, so from the login node its
pid means nothing. There the listing decides from:

1. the run folder: a finished state is the truth, as everywhere;
2. the supervisor's heartbeat (:mod:`runner.heartbeat`): fresh means the record holds;
3. only when the heartbeat is stale, or the attempt has not reached its supervisor yet, the
   engine's own view (:meth:`runner.backends.base.Backend.describe`), asked at most once per
   :data:`DESCRIBE_EVERY_S` per run by all listers together (the engine's last word is kept
   in the run folder's ``engine.json``, :mod:`runner.backends.where`, which the displays
   show), never per run per listing tick.

A stale run the engine says has ended is ``lost`` at once. One the engine says still runs
stays as recorded, its reason saying how long it has been silent: the job exists (a node cut
off from the storage goes on training), and declaring it lost would retry it beside itself;
the engine ends it in time (Slurm fails a dead node's jobs as ``NODE_FAIL``, a time limit ends
any job), and then it is ``lost``. One about which the engine cannot say (not reachable from
here, no accounting) is ``lost`` once silent for :data:`runner.heartbeat.HUNG_BEATS`
intervals: never ``running`` forever. An attempt the engine still holds pending (or has
requeued) is ``queued`` with the engine's reason.

When the supervisor turns out to be on this very host (same host name and boot id, as on a
one-node cluster), :func:`on_this_host` says so and the caller checks pids as for a local run.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from runner import identity
from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN, BackendStatus
from runner.backends.intent import Intent, read_intent
from runner.backends.where import ENGINE_STATES, read_engine_view, record_engine_view
from runner.heartbeat import (
    HEARTBEAT_S,
    HUNG_BEATS,
    STALE_BEATS,
    Heartbeat,
    read_heartbeat,
    this_host,
)
from runner.model import RunSpec, RunState, Status
from runner.registry import Registry
from runner.tickets import ADMITTED, Ticket

DESCRIBE_EVERY_S = 15.0  # one run's engine view is asked for at most this often

EngineView = Callable[[], "BackendStatus | None"]

_describing = threading.local()  # a backend's describe may load the run: no recursion


def on_this_host(state: RunState, heartbeat: Heartbeat | None, *, host: str, boot: str) -> bool:
    """Whether the attempt's supervisor runs on this machine (so its pids can be checked).

    The boot id alone is not enough: containers on one machine share it but not their pids,
    and carry their own host names.
    """
    recorded = state.host or (heartbeat.host if heartbeat else "")
    return state.supervisor.boot_id == boot and recorded in ("", host)


def reconcile_remote(
    state: RunState,
    heartbeat: Heartbeat | None,
    *,
    now: float,
    backend: str,
    engine: EngineView,
) -> tuple[Status, str]:
    """The true status of a remote run whose supervisor has written a state (pure).

    Args:
        state: the supervisor's last record.
        heartbeat: the run folder's heartbeat (``None``: none yet; the state's time stands in).
        now: the current time.
        backend: the engine's name (for the reason).
        engine: asks the engine (rate-limited); called only when the heartbeat is stale.
    """
    if not state.status.active:
        return state.status, state.reason
    beat = heartbeat if heartbeat and heartbeat.attempt == state.attempt else None
    every = beat.every_s if beat else HEARTBEAT_S
    last = max(beat.at if beat else state.updated_at, state.updated_at)
    age = max(0.0, now - last)
    if age <= STALE_BEATS * every:
        return state.status, state.reason
    where = (beat.host if beat else "") or state.host or "its host"
    silent = f"no heartbeat from {where} for {age:.0f}s"
    hung = age > HUNG_BEATS * every
    view = engine()
    said = _engine_words(backend, view)
    if view is not None and view.state == ENDED:
        return Status.LOST, f"supervisor gone: {silent}; {said}"
    if view is not None and view.state == PENDING:
        return Status.QUEUED, f"requeued by {backend}: {view.reason or 'pending'}"
    if hung and (view is None or view.state != RUNNING):
        return Status.LOST, f"supervisor silent: {silent}; {said}"
    return state.status, f"{state.reason}; {silent}; {said}"


def remote_ticket_status(
    ticket: Ticket, intent: Intent | None, *, backend: str, engine: EngineView
) -> tuple[Status, str] | None:
    """What an admitted remote attempt that has no supervisor record yet reads as (pure).

    Returns ``None`` for tickets that are not admitted (the queue's own wording applies).
    """
    if ticket.kind != ADMITTED:
        return None
    if intent is None or intent.attempt != ticket.attempt:
        return Status.QUEUED, f"admitted; being handed to {backend}"
    job = f"job {intent.handle}" if intent.handle else f"job {intent.key} (id not recorded)"
    view = engine()
    if view is None or view.state == UNKNOWN:
        return Status.QUEUED, f"submitted to {backend} as {job}; {_engine_words(backend, view)}"
    if view.state == PENDING:
        return Status.QUEUED, f"{backend}: {view.reason or 'pending'} ({job})"
    if view.state == RUNNING:
        where = f" on {view.host}" if view.host else ""
        return Status.STARTING, f"{backend} {job} running{where}; supervisor starting"
    return Status.LOST, f"{backend} {job} ended before its supervisor started" + (
        f": {view.reason}" if view.reason else ""
    )


def _engine_words(backend: str, view: BackendStatus | None) -> str:
    if view is None:
        return f"{backend} not asked"
    if view.state == UNKNOWN:
        return f"{backend} cannot say" + (f" ({view.reason})" if view.reason else "")
    says = {RUNNING: "running", PENDING: "pending", ENDED: "ended"}.get(view.state, view.state)
    return f"{backend} says {says}" + (f" ({view.reason})" if view.reason else "")


# --- the engine's view, shared by every lister --------------------------------------------


def engine_view(
    registry: Registry,
    run_id: str,
    backend: str,
    *,
    now: float | None = None,
    every_s: float = DESCRIBE_EVERY_S,
) -> BackendStatus | None:
    """The engine's view of the run, asked at most once per ``every_s`` by all listers.

    Its last word (``engine.json``) is used while younger than ``every_s``; else the engine is
    asked now and the answer recorded there for every other lister and display.

    Never raises: an engine that is missing here, unreachable or failing reads as
    ``unknown`` with the reason. ``None`` while a backend's own ``describe`` is loading the
    run (it must not ask itself).
    """
    if getattr(_describing, "active", False):
        return None
    t = time.time() if now is None else now
    recorded = read_engine_view(registry, run_id)
    if recorded is not None and recorded[1] is not None and 0 <= t - recorded[1] < every_s:
        return recorded[0]
    _describing.active = True
    try:
        from runner.backends import get_backend  # only for remote runs, only when due

        view = get_backend(backend).describe(registry, run_id)
        if view.state not in ENGINE_STATES:
            raise ValueError(f"engine state {view.state!r}")
    except Exception as exc:  # an engine's trouble is a reason, never a listing's crash
        view = BackendStatus(state=UNKNOWN, reason=f"{type(exc).__name__}: {exc}"[:200])
    finally:
        _describing.active = False
    with contextlib.suppress(OSError, ValueError):  # a read-only registry: asked again later
        record_engine_view(registry, run_id, view, now=t)
    return view


def remote_status(
    registry: Registry,
    spec: RunSpec,
    state: RunState | None,
    ticket: Ticket | None,
    *,
    now: float,
) -> tuple[Status, str] | None:
    """A remote run's status for :meth:`runner.registry.Registry.load`.

    ``None``: decide as for a local run (the run is still in our queue, or its supervisor
    turns out to be on this host, or its record is final).
    """
    run_dir = registry.run_dir(spec.id)
    backend = spec.placement.backend

    def engine() -> BackendStatus | None:
        return engine_view(registry, spec.id, backend, now=now)

    if ticket is not None and (state is None or state.attempt < ticket.attempt):
        if ticket.kind != ADMITTED or registry.supervisor_locked(spec.id):
            return None  # still in our queue, or its supervisor is starting right here
        intent = read_intent(registry, spec.id, ticket.attempt)
        return remote_ticket_status(ticket, intent, backend=backend, engine=engine)
    if state is None or not state.status.active:
        return None
    beat = read_heartbeat(run_dir)
    if on_this_host(state, beat, host=this_host(), boot=identity.boot_id()):
        return None
    return reconcile_remote(state, beat, now=now, backend=backend, engine=engine)
