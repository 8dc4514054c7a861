"""A token bucket as pure functions of its state and the time.

Every admission takes one token; tokens come back at ``rate`` per second up to ``capacity``.
The state is two numbers, kept in the governor's shared state file (see
:mod:`governor.store`) so that every supervisor on the machine draws from the same bucket.
Times are wall-clock seconds (they must mean the same in every process); a clock that went
backwards adds nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BucketState:
    """Tokens held at a moment (``updated_at``, wall-clock seconds)."""

    tokens: float
    updated_at: float

    @classmethod
    def full(cls, capacity: int, now: float) -> BucketState:
        """A bucket holding ``capacity`` tokens."""
        return cls(tokens=float(capacity), updated_at=now)


def refill(state: BucketState, now: float, capacity: int, rate: float) -> BucketState:
    """The bucket at ``now``: tokens added since ``updated_at``, capped at ``capacity``."""
    elapsed = max(0.0, now - state.updated_at)
    tokens = min(float(capacity), max(0.0, state.tokens) + elapsed * rate)
    return BucketState(tokens=tokens, updated_at=max(now, state.updated_at))


def try_take(
    state: BucketState, now: float, capacity: int, rate: float, n: float = 1.0
) -> tuple[bool, BucketState]:
    """Take ``n`` tokens if there are that many. Returns (taken, the state after)."""
    current = refill(state, now, capacity, rate)
    if current.tokens + 1e-9 >= n:
        return True, BucketState(tokens=max(0.0, current.tokens - n), updated_at=current.updated_at)
    return False, current


def wait_for(state: BucketState, now: float, capacity: int, rate: float, n: float = 1.0) -> float:
    """Seconds until ``n`` tokens are available (``inf`` if they never will be)."""
    current = refill(state, now, capacity, rate)
    missing = n - current.tokens
    if missing <= 1e-9:
        return 0.0
    if rate <= 0 or n > capacity:
        return math.inf
    return missing / rate
