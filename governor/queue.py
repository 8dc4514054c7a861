"""The old per-supervisor queue entry, kept only so older state files still parse.

Queued runs no longer wait in processes: the queue is the ``queue/`` folder and each run's
ticket (:mod:`runner.tickets`), and the dispatcher decides (:mod:`governor.admit_round`).
State files written before then may hold ``waiters``; they are read (strictly) and dropped
by the next admission round.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from governor.requests import Request
from runner.model import ProcessIdentity, ShapeError


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
