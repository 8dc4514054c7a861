"""The queue: runs waiting for admission, kept in the governor's shared state file.

There is no queue daemon. Each queued run's own supervisor registers its run here on its
first request and asks again every ``poll_interval`` (runs deep in the queue ask less often);
FIFO fairness comes from every supervisor reading the same ordered list under one lock.

Order is submission order: the spec's ``created_at`` for a first attempt, the first request
for a resume. A run submitted earlier whose supervisor has not asked yet (supervisors start
in parallel) is found in the registry and counted as queued ahead of us, so a fast supervisor
cannot overtake a slow one. A waiter whose supervisor is gone (killed, crashed, machine
rebooted) is dropped the next time anyone looks, so it never blocks the queue.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from governor.requests import Request
from runner.model import ProcessIdentity, RunSpec, ShapeError, Status
from runner.registry import STARTUP_GRACE_S, Registry

# How far back (in submissions) to look for earlier runs whose supervisor has not asked yet.
MAX_PREDECESSOR_SCAN = 256


@dataclass(frozen=True)
class Waiter:
    """A run waiting for admission.

    Attributes:
        request: what it asks for.
        since: when it first asked (wall clock).
        order_t: its place in line (submission time; see the module docstring).
        attempt: the attempt waiting.
        supervisor: the supervisor asking (a dead one drops the waiter).
        reason: why it waits, as last shown.
        rule: the rule behind the reason (see :class:`governor.policy.Decision`).
    """

    request: Request
    since: float
    order_t: float
    attempt: int = 1
    supervisor: ProcessIdentity | None = None
    reason: str = ""
    rule: str = ""

    @property
    def run_id(self) -> str:
        """The waiting run."""
        return self.request.run_id

    @property
    def key(self) -> tuple[float, int, str]:
        """Sort key: submission time, then run id (ids are allocated in order)."""
        return order_key(self.order_t, self.run_id)

    def to_json(self) -> dict[str, Any]:
        """JSON form for the state file."""
        return {
            "request": self.request.to_json(),
            "since": self.since,
            "order_t": self.order_t,
            "attempt": self.attempt,
            "supervisor": self.supervisor.to_json() if self.supervisor else None,
            "reason": self.reason,
            "rule": self.rule,
        }

    @classmethod
    def from_json(cls, d: Any) -> Waiter:
        """Parse strictly (raises :class:`ShapeError`)."""
        if not isinstance(d, dict):
            raise ShapeError("waiter is not an object")
        since, order_t, attempt = d.get("since"), d.get("order_t"), d.get("attempt", 1)
        numbers = (since, order_t)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise ShapeError("waiter times must be numbers")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise ShapeError("waiter attempt must be >= 1")
        reason, rule = d.get("reason", ""), d.get("rule", "")
        if not isinstance(reason, str) or not isinstance(rule, str):
            raise ShapeError("waiter reason must be a string")
        sup = d.get("supervisor")
        return cls(
            request=Request.from_json(d.get("request")),
            since=float(since),  # type: ignore[arg-type]
            order_t=float(order_t),  # type: ignore[arg-type]
            attempt=attempt,
            supervisor=ProcessIdentity.from_json(sup) if sup is not None else None,
            reason=reason[:500],
            rule=rule[:100],
        )


def order_key(order_t: float, run_id: str) -> tuple[float, int, str]:
    """The queue's sort key."""
    return (order_t, len(run_id), run_id)


def ordered(waiters: Iterable[Waiter]) -> list[Waiter]:
    """Waiters in queue order, first in line first."""
    return sorted(waiters, key=lambda w: w.key)


def pending_predecessors(
    registry: Registry,
    spec: RunSpec,
    known: set[str],
    *,
    request_of: Callable[[RunSpec], Request],
) -> list[tuple[Request, float]]:
    """Runs submitted shortly before ``spec`` whose supervisor has not asked yet.

    Looks only at runs created within the startup grace before ``spec`` (older ones have
    asked by now or are lost) that are still ``starting`` and not ``known`` to the governor.

    Returns:
        ``(request, created_at)`` for each, oldest first.
    """
    mine = order_key(spec.created_at, spec.id)
    found: list[tuple[Request, float]] = []
    ids = registry.ids()
    try:
        pos = ids.index(spec.id)
    except ValueError:
        return []
    for run_id in reversed(ids[max(0, pos - MAX_PREDECESSOR_SCAN) : pos]):
        if run_id in known:
            continue
        try:
            other = registry.read_spec(run_id)
        except (FileNotFoundError, ShapeError, OSError, ValueError):
            continue
        if other.created_at < spec.created_at - STARTUP_GRACE_S:
            break
        if order_key(other.created_at, other.id) >= mine:
            continue
        with contextlib.suppress(Exception):
            view = registry.load(run_id)
            if view.status is Status.STARTING and (view.state is None or view.state.attempt == 1):
                found.append((request_of(other), other.created_at))
    found.sort(key=lambda rc: order_key(rc[1], rc[0].run_id))
    return found
