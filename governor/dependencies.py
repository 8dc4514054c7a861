"""Whether a run's dependencies let it start: a pure decision, like :func:`governor.policy.admit`.

A run submitted with ``--after A`` may start once A has *completed*; with ``--after-any A``,
once A has *ended*, however. Until then it waits, and it says for what ("waiting for 000123
(running)"). A dependency that can no longer be met (``--after`` a run that failed, was
stopped, timed out, was lost, was skipped itself, is corrupt or was removed) ends the
dependent without running it: the answer is :class:`Never`, with a reason naming the
dependency, and the caller records the run as ``skipped``.

The dispatcher's admission round asks this through
:func:`governor.dependency_gate.dependency_gate` before the governor's policy, with the states
it has read. Nothing here reads a file or the clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runner.model import Dependency, Status

# A reason quoted from a dependency is cut to this many characters (reasons nest down a chain).
MAX_QUOTED_REASON = 120


@dataclass(frozen=True)
class DependencyState:
    """What is known of one dependency now.

    Attributes:
        status: its reconciled status (``None``: the run does not exist, e.g. it was removed).
        reason: its reason, quoted when it ends a dependent.
    """

    status: Status | None
    reason: str = ""


@dataclass(frozen=True)
class Ready:
    """Every dependency is satisfied: the run may ask for admission."""


@dataclass(frozen=True)
class Wait:
    """At least one dependency has not ended yet.

    Attributes:
        reason: e.g. ``waiting for 000123 (running)``.
        waiting_for: the ids of the dependencies not ended yet, in the order given.
    """

    reason: str
    waiting_for: tuple[str, ...]


@dataclass(frozen=True)
class Never:
    """A dependency ended without satisfying its condition: the run must not run.

    Attributes:
        reason: e.g. ``dependency 000123 failed: exit 1``.
        dependency: the id of that dependency.
    """

    reason: str
    dependency: str


DependencyDecision = Ready | Wait | Never


def satisfied(kind: str, status: Status) -> bool | None:
    """Whether a dependency of ``kind`` in ``status`` is met (``None``: not decided yet)."""
    if status.active:
        return None
    if status is Status.COMPLETED:
        return True
    if status is Status.CORRUPT:
        return False  # its end cannot be known: never guess that it ended well or at all
    return kind == "any"


def decide(
    after: Sequence[Dependency], states: Mapping[str, DependencyState]
) -> DependencyDecision:
    """Decide from the dependencies' current states whether the run may start (pure).

    Args:
        after: the run's dependencies, as its spec lists them.
        states: the current state of each (a missing key reads as a removed run).

    Returns:
        :class:`Ready`, :class:`Wait` (with what it waits for) or :class:`Never` (with the
        first dependency, in the order given, that can no longer be met).
    """
    waiting: list[tuple[str, Status]] = []
    for dep in after:
        state = states.get(dep.run_id, DependencyState(None))
        if state.status is None:
            return Never(f"dependency {dep.run_id} no longer exists", dep.run_id)
        met = satisfied(dep.kind, state.status)
        if met is None:
            waiting.append((dep.run_id, state.status))
        elif not met:
            return Never(_ended_reason(dep.run_id, state), dep.run_id)
    if not waiting:
        return Ready()
    first, status = waiting[0]
    more = f" and {len(waiting) - 1} more" if len(waiting) > 1 else ""
    return Wait(f"waiting for {first} ({status.value}){more}", tuple(i for i, _ in waiting))


def _ended_reason(run_id: str, state: DependencyState) -> str:
    assert state.status is not None
    reason = state.reason.strip()
    if len(reason) > MAX_QUOTED_REASON:
        reason = reason[: MAX_QUOTED_REASON - 1] + "…"
    return f"dependency {run_id} {state.status.value}" + (f": {reason}" if reason else "")
