"""What a run whose supervisor is on another host reads as: heartbeat first, then the engine.

Invariant 4 ("reality wins over records") checks a recorded pid against this kernel. A run
placed on an engine (Slurm, Ray) is supervised on a compute node, so from the login node its
pid means nothing. There the listing decides from:

1. the run folder: a finished state is the truth, as everywhere;
2. the supervisor's heartbeat (:mod:`runner.heartbeat`): fresh means the record holds;
3. only when the heartbeat is stale, or the attempt has not reached its supervisor yet, the
   engine's own view (:meth:`runner.backends.base.Backend.describe`), asked at most once per
   :data:`DESCRIBE_EVERY_S` per run by all listers together (a small cache file per run under
   ``engine-cache/``), never per run per listing tick.

A stale run the engine says has ended is ``lost`` at once; one the engine says runs, or about
which it cannot say, stays as recorded (the reason says how long it has been silent) until
:data:`runner.heartbeat.HUNG_BEATS` intervals have passed, then it is ``lost``: never
``running`` forever. An attempt the engine still holds pending is ``queued`` with the
engine's reason.

When the supervisor turns out to be on this very host (same host name and boot id, as on a
one-node cluster), :func:`on_this_host` says so and the caller checks pids as for a local run.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

from runner import identity
from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN, BackendStatus
from runner.backends.intent import Intent, read_intent
from runner.durable import read_json, write_json
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
ENGINE_CACHE = "engine-cache"

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
    if hung:
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
    """The engine's view of the run, from a cache younger than ``every_s`` or asked now.

    Never raises: an engine that is missing here, unreachable or failing reads as
    ``unknown`` with the reason. ``None`` while a backend's own ``describe`` is loading the
    run (it must not ask itself).
    """
    if getattr(_describing, "active", False):
        return None
    t = time.time() if now is None else now
    path = registry.root / ENGINE_CACHE / f"{registry.run_dir(run_id).name}.json"
    cached = _read_cache(path)
    if cached is not None and 0 <= t - cached[0] < every_s:
        return cached[1]
    _describing.active = True
    try:
        from runner.backends import get_backend  # only for remote runs, only when due

        view = get_backend(backend).describe(registry, run_id)
    except Exception as exc:  # an engine's trouble is a reason, never a listing's crash
        view = BackendStatus(state=UNKNOWN, reason=f"{type(exc).__name__}: {exc}"[:200])
    finally:
        _describing.active = False
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, exist_ok=True)
        record = {
            "at": t,
            "state": view.state,
            "reason": view.reason[:300],
            "handle": view.handle[:200],
            "host": view.host[:200],
        }
        write_json(path, record, durable=False)  # a cache: rebuilt by asking again
    return view


def _read_cache(path: os.PathLike[str]) -> tuple[float, BackendStatus] | None:
    try:
        raw = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    try:
        state = str(raw["state"])
        if state not in (PENDING, RUNNING, ENDED, UNKNOWN):
            return None
        view = BackendStatus(
            state=state,
            reason=str(raw.get("reason") or "")[:300],
            handle=str(raw.get("handle") or "")[:200],
            host=str(raw.get("host") or "")[:200],
        )
        return float(raw["at"]), view
    except (KeyError, TypeError, ValueError):
        return None


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
