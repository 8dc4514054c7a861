"""Automatic retries: which ends come back by themselves, when, and when to give up.

A run submitted with ``--retries N`` (or ``retries`` in ``[retry]`` of ``backprop.toml``, for
single runs and sweeps alike) is queued again after an end whose cause is in ``retry_on``:

* ``lost``: the supervisor vanished (killed, the machine rebooted);
* ``oom``: failed out of memory (the output said so, or the kernel's OOM killer struck);
* ``preempted``: the supervisor was told to stop from outside (SIGTERM/SIGINT not sent by
  ``backprop stop``: a shutdown, a scheduler's preemption);
* ``failed``: any other non-zero exit (only when asked: a bug fails the same way each time).

A user's stop, ``timeboxed`` and ``completed`` are never retried. Each retry is a new attempt
of the same run from its latest checkpoint (exactly what ``backprop resume`` does), queued
after an exponential backoff (``backoff`` doubling per retry, capped at ``backoff_max``). A
crash loop stops retrying: :data:`CRASH_LOOP` attempts in a row that die before their first
metric. :func:`decide` is the whole policy, pure; whoever observes the end (the dispatcher, or
any command after a reboot) acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.config import Config, ConfigError, parse_duration, register_defaults
from runner.model import Status

CAUSES = ("failed", "lost", "oom", "preempted")
DEFAULT_ON = ("lost", "oom", "preempted")
CRASH_LOOP = 3

register_defaults(
    "retry",
    [
        ("retries", 0, "retry a run this many times after an end named in retry_on"),
        ("retry_on", list(DEFAULT_ON), "among failed, lost, oom, preempted"),
        ("backoff", "10s", "wait before the first retry; doubles with each retry"),
        ("backoff_max", "10m", "the longest wait between retries"),
    ],
)


@dataclass(frozen=True)
class RetryPolicy:
    """How a run is retried (carried from attempt to attempt in its ticket)."""

    retries: int = 0
    retry_on: tuple[str, ...] = DEFAULT_ON
    backoff_s: float = 10.0
    backoff_max_s: float = 600.0

    def to_json(self) -> dict[str, Any]:
        """The JSON form (in the ticket)."""
        return {
            "retries": self.retries,
            "retry_on": list(self.retry_on),
            "backoff_s": self.backoff_s,
            "backoff_max_s": self.backoff_max_s,
        }

    @classmethod
    def from_json(cls, d: Any) -> RetryPolicy:
        """Parse leniently: anything odd means no retries."""
        if not isinstance(d, dict):
            return cls()
        try:
            return cls.build(
                d.get("retries", 0),
                d.get("retry_on", list(DEFAULT_ON)),
                float(d.get("backoff_s", 10.0)),
                float(d.get("backoff_max_s", 600.0)),
            )
        except (ConfigError, TypeError, ValueError):
            return cls()

    @classmethod
    def build(
        cls, retries: Any, retry_on: Any, backoff_s: float = 10.0, backoff_max_s: float = 600.0
    ) -> RetryPolicy:
        """Validate (raises :class:`ConfigError` with a one-line message)."""
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
            raise ConfigError("retries must be a whole number from 0 to 100")
        if isinstance(retry_on, str):
            retry_on = [c.strip() for c in retry_on.split(",") if c.strip()]
        if not isinstance(retry_on, (list, tuple)) or not all(c in CAUSES for c in retry_on):
            raise ConfigError(f"retry_on takes some of {', '.join(CAUSES)}: {retry_on!r}")
        if backoff_s < 0 or backoff_max_s < 0:
            raise ConfigError("retry backoff must be >= 0")
        return cls(int(retries), tuple(dict.fromkeys(retry_on)), backoff_s, backoff_max_s)

    @classmethod
    def from_config(cls, config: Config) -> RetryPolicy:
        """The ``[retry]`` section (raises :class:`ConfigError`)."""
        d = config.section("retry")
        unknown = set(d) - {"retries", "retry_on", "backoff", "backoff_max"}
        if unknown:
            raise ConfigError(f"[retry] has unknown keys: {', '.join(sorted(unknown))}")
        try:
            return cls.build(
                d.get("retries", 0),
                d.get("retry_on", list(DEFAULT_ON)),
                parse_duration(d.get("backoff", "10s")),
                parse_duration(d.get("backoff_max", "10m")),
            )
        except ConfigError as exc:
            raise ConfigError(f"[retry] {exc}") from None


def cause_of(status: Status, reason: str) -> str | None:
    """The retry cause of an end, or ``None`` for ends never retried (pure)."""
    if status is Status.LOST:
        return "lost"
    if status is Status.STOPPED:
        # A stop the supervisor received as a signal from outside Backprop (a shutdown, a
        # scheduler) is a preemption; a stop the user asked for is final.
        return "preempted" if reason.startswith("supervisor received SIG") else None
    if status is Status.FAILED:
        return "oom" if "out of memory" in reason or "out-of-memory" in reason else "failed"
    return None


@dataclass(frozen=True)
class Verdict:
    """What to do after an attempt ended.

    Attributes:
        retry: queue another attempt.
        delay_s: after this long.
        cause: the cause (``oom``...), when retryable.
        number: which retry this is (1 for the first).
        early: attempts in a row that died before their first metric, this one included.
        reason: why not, when a retryable end is not retried (shown with the run).
    """

    retry: bool
    delay_s: float = 0.0
    cause: str = ""
    number: int = 0
    early: int = 0
    reason: str = ""


def decide(
    policy: RetryPolicy,
    status: Status,
    reason: str,
    *,
    used: int,
    early_before: int,
    died_early: bool,
) -> Verdict:
    """Whether and when to retry an ended attempt (pure).

    Args:
        policy: the run's retry policy.
        status: how the attempt ended.
        reason: the end's reason.
        used: retries already made.
        early_before: attempts in a row before this one that died before their first metric.
        died_early: this attempt died before its first metric.
    """
    cause = cause_of(status, reason)
    early = early_before + 1 if died_early else 0
    if cause is None or cause not in policy.retry_on or policy.retries == 0:
        return Verdict(False, cause=cause or "", early=early)
    if used >= policy.retries:
        return Verdict(
            False, cause=cause, early=early, reason=f"no retries left ({policy.retries} used)"
        )
    if early >= CRASH_LOOP:
        return Verdict(
            False,
            cause=cause,
            early=early,
            reason=f"crash loop: {early} attempts in a row died before their first metric; "
            "not retrying",
        )
    delay = min(policy.backoff_max_s, policy.backoff_s * (2**used))
    return Verdict(True, delay_s=delay, cause=cause, number=used + 1, early=early)


def had_metric(metrics_tail: bytes, attempt: int) -> bool:
    """Whether the last metric point in the tail of ``metrics.jsonl`` is from ``attempt``.

    Points are appended in order, so the last one belongs to the latest attempt that logged
    any: an attempt that logged none finds an older one (or nothing) there.
    """
    import json

    for line in reversed(metrics_tail.split(b"\n")):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "v" in rec and isinstance(rec.get("a"), int):
            return bool(rec["a"] == attempt)
    return False


def describe(attempt: int, retry: dict[str, Any]) -> str:
    """``attempt 3 of 4, retry after OOM`` (what the tree and ``show`` say)."""
    if not retry:
        return f"attempt {attempt}"
    total = retry.get("of")
    cause = (
        str(retry.get("after", "")).upper() if retry.get("after") == "oom" else retry.get("after")
    )
    text = f"attempt {attempt}" + (f" of {total}" if total else "")
    if retry.get("n"):
        text += f", retry after {cause}" if cause else ", retry"
    if retry.get("stopped"):
        text += f"; {retry['stopped']}"
    return text
