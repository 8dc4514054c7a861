"""Handing runs to an engine that queues itself (Slurm, Ray) instead of admitting them here.

Our governor schedules this machine only. A run whose placement names an engine skips
admission and GPU placement: once its dependencies allow (the start gate), the round records
it as handed over (a lease without resources, so it counts against no local limit, then the
``admitted`` ticket, then its entry leaves the queue: the order every crash recovery relies
on) and the caller submits it through its backend; the engine decides when and where, and the
trainer sees the engine's ``CUDA_VISIBLE_DEVICES`` untouched.

The lease stays while the engine holds the attempt (pending or running, as the run folder and
the engine say: :mod:`runner.remote_status`), so its end is seen and the retry policy applies:
a lost or preempted attempt is queued again as a new attempt and handed over again. An
attempt handed over whose submission never returned (no engine id in its intent record) is
submitted again under the same deterministic key (the backend reconciles, never duplicates);
one the engine has is never submitted twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from governor.reservations import Lease
from governor.store import GovernorState, GovernorStore
from runner import identity
from runner.backends import Backend, backend_for
from runner.backends.intent import read_intent
from runner.model import RunSpec
from runner.registry import Registry
from runner.tickets import ADMITTED, Entry, Queue, Ticket

LOCAL = "local"


def hands_over(spec: RunSpec) -> bool:
    """Whether the run goes to an engine that queues itself (any placement but local)."""
    return not spec.placement.is_local


def local_only(leases: Iterable[Lease]) -> list[Lease]:
    """The leases that hold this machine's resources (handed-over runs hold none here)."""
    return [lease for lease in leases if lease.backend == LOCAL]


def needs_submit(registry: Registry, run_id: str, attempt: int) -> bool:
    """Whether a handed-over attempt must be submitted (again): the engine has no id for it."""
    intent = read_intent(registry, run_id, attempt)
    return intent is None or intent.handle is None


def backend_to_start(registry: Registry, run_id: str, local: Backend) -> Backend:
    """The backend that starts an admitted attempt: ``local`` unless its spec names an engine."""
    try:
        spec = registry.read_spec(run_id)
    except (OSError, ValueError):
        return local  # the supervisor itself refuses a run it cannot read
    return local if spec.placement.is_local else backend_for(registry, run_id)


def hand_over(
    store: GovernorStore,
    queue: Queue,
    st: GovernorState,
    entry: Entry,
    ticket: Ticket,
    spec: RunSpec,
    now: float,
    gate_env: dict[str, str],
) -> None:
    """Record a queued attempt as handed to its engine (queue lock and state transaction held).

    Lease (no resources), then ticket, then entry, as for a local admission; the caller then
    submits it through the backend.
    """
    backend = spec.placement.backend
    st.leases[entry.run_id] = Lease(
        run_id=entry.run_id,
        name=spec.name,
        group=spec.group,
        admitted_at=now,
        forced=entry.forced,
        attempt=entry.attempt,
        backend=backend,
    )
    store.write(st)
    queue.write_ticket(
        replace(
            ticket,
            kind=ADMITTED,
            reason=f"handed to {backend}",
            rule="ok",
            admitted_at=now,
            boot_id=identity.boot_id(),
            env=dict(gate_env),  # the engine's CUDA_VISIBLE_DEVICES stays untouched
            gpus=(),
            forced=entry.forced,
        )
    )
    queue.remove(entry)
