"""The retry policy, pure: causes, budget, backoff, crash loop, and what the tree says."""

from __future__ import annotations

import pytest

from runner.config import Config, ConfigError
from runner.model import Status
from runner.retry import RetryPolicy, cause_of, decide, describe, had_metric

POLICY = RetryPolicy(retries=3, backoff_s=10.0, backoff_max_s=25.0)


@pytest.mark.parametrize(
    ("status", "reason", "cause"),
    [
        (Status.LOST, "host rebooted", "lost"),
        (Status.FAILED, "out of memory (CUDA out of memory); exit 1", "oom"),
        (
            Status.FAILED,
            "killed by SIGKILL (not by Backprop: possibly the out-of-memory killer)",
            "oom",
        ),
        (Status.FAILED, "exit 2", "failed"),
        (Status.STOPPED, "supervisor received SIGTERM; exit 0", "preempted"),
        (Status.STOPPED, "stopped by user; exit 0", None),
        (Status.TIMEBOXED, "time limit reached; exit 0", None),
        (Status.COMPLETED, "exit 0", None),
    ],
)
def test_causes(status: Status, reason: str, cause: str | None) -> None:
    assert cause_of(status, reason) == cause


def test_budget_backoff_and_default_causes() -> None:
    delays = [
        decide(POLICY, Status.LOST, "x", used=n, early_before=0, died_early=False).delay_s
        for n in range(3)
    ]
    assert delays == [10.0, 20.0, 25.0]  # doubling, capped
    spent = decide(POLICY, Status.LOST, "x", used=3, early_before=0, died_early=False)
    assert not spent.retry and spent.reason == "no retries left (3 used)"
    plain = decide(POLICY, Status.FAILED, "exit 1", used=0, early_before=0, died_early=False)
    assert not plain.retry and plain.reason == ""  # a plain failure only when asked
    user = decide(
        POLICY, Status.STOPPED, "stopped by user", used=0, early_before=0, died_early=False
    )
    assert not user.retry


def test_crash_loop_needs_three_early_deaths_in_a_row() -> None:
    p = RetryPolicy(retries=9, retry_on=("failed",))
    assert decide(p, Status.FAILED, "exit 3", used=1, early_before=1, died_early=True).retry
    v = decide(p, Status.FAILED, "exit 3", used=2, early_before=2, died_early=True)
    assert not v.retry and v.reason.startswith("crash loop: 3 attempts in a row")
    assert decide(p, Status.FAILED, "exit 3", used=2, early_before=2, died_early=False).retry


def test_had_metric_reads_the_last_point_of_the_tail() -> None:
    tail = b'{"a":1,"s":3,"t":1,"v":{"loss":1}}\n{"a":2,"s":1,"t":2,"e":"checkpoint"}\n{"a":2'
    assert had_metric(tail, 1) and not had_metric(tail, 2) and not had_metric(b"", 1)


def test_config_and_validation() -> None:
    p = RetryPolicy.from_config(Config(raw={"retry": {"retries": 2, "retry_on": ["oom"]}}))
    assert (p.retries, p.retry_on, p.backoff_s) == (2, ("oom",), 10.0)
    with pytest.raises(ConfigError, match="retry_on"):
        RetryPolicy.build(1, "lost,sunspots")
    with pytest.raises(ConfigError, match="unknown keys"):
        RetryPolicy.from_config(Config(raw={"retry": {"tries": 2}}))
    assert RetryPolicy.from_json({"retries": "many"}) == RetryPolicy()


def test_describe() -> None:
    assert describe(1, {}) == "attempt 1"
    assert describe(3, {"n": 2, "of": 4, "after": "oom"}) == "attempt 3 of 4, retry after OOM"
    text = describe(3, {"n": 2, "of": 10, "after": "failed", "stopped": "crash loop: ..."})
    assert text == "attempt 3 of 10, retry after failed; crash loop: ..."
