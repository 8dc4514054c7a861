"""The token bucket: pure arithmetic, and many processes drawing from the one on disk."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governor.bucket import BucketState, refill, try_take, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_refill_caps_at_capacity_and_ignores_a_clock_going_back() -> None:
    s = BucketState(1.0, 100.0)
    assert refill(s, 102.0, 4, 0.5) == BucketState(2.0, 102.0)
    assert refill(s, 200.0, 4, 0.5).tokens == 4.0
    assert refill(s, 50.0, 4, 0.5) == BucketState(1.0, 100.0)


def test_take_and_wait() -> None:
    ok, s = try_take(BucketState(1.0, 0.0), 0.0, 4, 1.0)
    assert ok and s.tokens == 0.0
    ok, s2 = try_take(s, 0.5, 4, 1.0)
    assert not ok and s2.tokens == 0.5
    assert wait_for(s2, 0.5, 4, 1.0) == pytest.approx(0.5)
    assert wait_for(s2, 0.5, 4, 0.0) == math.inf
    assert wait_for(s2, 0.5, 4, 1.0, n=5) == math.inf
    assert wait_for(BucketState(3.0, 0.0), 0.0, 4, 1.0) == 0.0


@given(
    st.lists(st.tuples(st.floats(0, 10), st.booleans()), max_size=60),
    st.integers(1, 8),
    st.floats(0, 5),
)
def test_tokens_taken_never_exceed_capacity_plus_refill(
    steps: list[tuple[float, bool]], capacity: int, rate: float
) -> None:
    s = BucketState.full(capacity, 0.0)
    now, taken = 0.0, 0
    for dt, take in steps:
        now += dt
        if take:
            ok, s = try_take(s, now, capacity, rate)
            taken += ok
        else:
            s = refill(s, now, capacity, rate)
        assert 0.0 <= s.tokens <= capacity
    assert taken <= capacity + rate * now + 1e-6
