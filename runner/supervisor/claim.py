"""Who may start an attempt: the run's supervisor lock and the admitted, unstarted ticket."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from runner.model import ShapeError
from runner.registry import SUPERVISOR_LOCK, Registry
from runner.tickets import ADMITTED, Queue, Ticket


def acquire_lock(run_dir: Path) -> int | None:
    """Take the run's supervisor lock for the life of this process (``None``: already held)."""
    try:
        fd = os.open(run_dir / SUPERVISOR_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:  # a read-only registry: flock needs no write access
        fd = os.open(run_dir / SUPERVISOR_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # A reader may hold a shared lock for a few microseconds while it checks.
        for _ in range(100):
            time.sleep(0.01)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                continue
        os.close(fd)
        return None
    return fd


def claim_attempt(registry: Registry, run_id: str, attempt: int) -> Ticket | str:
    """The admitted ticket of this attempt, or why this supervisor must not start it.

    Called with the run's lock held, so no other supervisor can be between its check and its
    first state write: a state of this attempt or later means another one started it.
    """
    try:
        state = registry.read_state(run_id)
    except (ShapeError, OSError) as exc:
        return f"state.json unreadable: {exc}"
    if state is not None and state.attempt >= attempt:
        return f"attempt {attempt} of run {run_id} was started already"
    try:
        ticket = Queue(registry.root).read_ticket(run_id)
    except (ShapeError, OSError) as exc:
        return f"ticket.json unreadable: {exc}"
    if ticket is None or ticket.attempt != attempt or ticket.kind != ADMITTED:
        return f"attempt {attempt} of run {run_id} is not admitted"
    return ticket
