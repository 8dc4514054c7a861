"""What an admission round does when an admitted attempt ends: its retry policy.

:func:`after_end` re-queues an attempt that ended for a cause its policy retries, as the next
attempt of the same run from its latest checkpoint, after an exponential backoff
(:mod:`runner.retry` decides); it notes why retrying stopped, and stops the queued siblings of
a ``--fail-fast`` sweep whose run failed for good. It runs with the queue's lock held, before
the attempt's lease is dropped, so a crash anywhere loses no retry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from governor.reservations import Lease
from governor.round_inputs import metrics_tail
from runner import retry
from runner.model import ShapeError, Status
from runner.registry import Registry
from runner.tickets import Entry, Queue, Ticket, band_of


def may_retry(queue: Queue, run_id: str, lease: Lease) -> bool:
    """Whether a running attempt may be retried (or stop its sweep): its end must be seen."""
    try:
        t = queue.read_ticket(run_id)
    except (ShapeError, OSError, ValueError):
        return False
    if t is None or t.attempt != lease.attempt:
        return False
    if t.fail_fast:
        return True
    if not t.policy:
        return False
    return int(t.retry.get("n", 0)) < retry.RetryPolicy.from_json(t.policy).retries


def after_end(
    registry: Registry,
    queue: Queue,
    lease: Lease,
    now: float,
    fail_fast: Callable[[str, str], None],
) -> Status | None:
    """Apply the run's retry policy to an attempt that just ended (queue lock held).

    Returns how the attempt ended (``None``: retried already, or not over).
    """
    view = registry.load(lease.run_id)
    t = view.ticket
    if view.attempt != lease.attempt or not view.status.finished:
        return None  # retried already (a crash after the re-queue), or not over
    if t is None or t.attempt != lease.attempt or not (t.policy or t.fail_fast):
        return view.status
    policy = retry.RetryPolicy.from_json(t.policy)
    verdict = retry.decide(
        policy,
        view.status,
        view.reason,
        used=int(t.retry.get("n", 0)),
        early_before=int(t.retry.get("early", 0)),
        died_early=not retry.had_metric(metrics_tail(registry, lease.run_id), lease.attempt),
    )
    if not verdict.retry:
        if verdict.reason:
            stopped = {**t.retry, "stopped": verdict.reason, "after": verdict.cause}
            queue.write_ticket(replace(t, retry=stopped))
        if t.fail_fast and view.status is Status.FAILED and view.spec and view.spec.group:
            fail_fast(lease.run_id, view.spec.group)
        return view.status
    from runner.control.reruns import latest_checkpoint

    nxt = Ticket(
        run_id=lease.run_id,
        attempt=lease.attempt + 1,
        queued_at=now,
        priority=t.priority,
        timeout_s=t.timeout_s,
        resume_from=latest_checkpoint(registry, lease.run_id),
        policy=dict(t.policy),
        not_before=now + verdict.delay_s,
        reason=f"retry {verdict.number} after {verdict.cause}, in {verdict.delay_s:g}s (backoff)",
        retry={
            "n": verdict.number,
            "of": t.retry.get("of") or lease.attempt + policy.retries,
            "after": verdict.cause,
            "early": verdict.early,
        },
    )
    # The place in line first, then the ticket (see runner.tickets): a crash between
    # leaves a stale entry the next round drops, and the lease, so it decides again.
    queue.add(Entry(band_of(nxt.priority), int(now * 1e9), lease.run_id, nxt.attempt))
    queue.write_ticket(nxt)
    return view.status
