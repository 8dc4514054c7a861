# over 400 lines: the durable queue (ticket, place in line and their one lock) is one protocol
"""The durable queue: a queued run is its spec, its ticket and an entry in ``queue/``.

Nothing waits in a process. Each run folder has a ``ticket.json`` describing its latest
attempt before a supervisor takes over: ``queued`` (with the reason it waits), ``admitted``
(where it goes, with the environment the placement sets) or ``cancelled`` (it ended without
ever running: stopped while queued, a sibling failed fast, a dependency failed). The place in
line is an empty file in ``$BACKPROP_HOME/queue/`` whose name sorts in queue order::

    {band:04d}-{t_ns:020d}-{run_id}-{attempt}

``band`` is 0 for a run the user started by hand (``backprop start``), else
``5000 - priority`` (higher priority first), and ``t_ns`` the submission time. Listing the
folder is the queue; renaming an entry moves it.

Every change to tickets and entries is made under ``queue/lock`` (a short ``flock``): the
entry first and the ticket second on the way in, the ticket first and the entry second on the
way out. So a crash between the two leaves at most an entry whose ticket does not say
``queued`` for that attempt, which the next admission round removes; never a ticket that says
``queued`` with no place in line (a run that would wait forever).
Anyone who changes the queue pokes ``queue/wake`` (a FIFO the dispatcher reads) so the
dispatcher reacts at once; a poke with no dispatcher costs one failed ``open``.

This module is storage only: who may start when is the governor's decision
(:mod:`governor.dispatcher`), and what a queued run reads as is :func:`ticket_status`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from runner.durable import read_json, write_json
from runner.model import (
    SCHEMA,
    ShapeError,
    Status,
    _get,
    _int,
    _num,
    _str_map,
    validate_run_id,
    validate_run_id_shape,
)

QUEUE_DIR = "queue"
TICKET = "ticket.json"
LOCK = "lock"
WAKE = "wake"
FORCED_BAND = 0
MAX_PRIORITY = 4999

QUEUED, ADMITTED, CANCELLED = "queued", "admitted", "cancelled"
_KINDS = frozenset({QUEUED, ADMITTED, CANCELLED})


@dataclass(frozen=True)
class Ticket:
    """The latest attempt of a run as the queue knows it (see the module docstring).

    Attributes:
        run_id: the run.
        attempt: the attempt this ticket is for.
        kind: ``queued``, ``admitted`` or ``cancelled``.
        queued_at: when it entered the queue.
        updated_at: when the ticket was last written.
        reason: why it waits, where it was admitted, or why it was cancelled.
        first_reason: the first reason it waited for (recorded as the ``queued`` event).
        rule: the admission rule behind ``reason``.
        priority: its priority (higher first).
        timeout_s: the attempt's time limit.
        resume_from: the checkpoint the attempt starts from.
        admitted_at: when it was admitted.
        boot_id: the boot it was admitted in (a reboot before the start makes it lost).
        env: environment the placement sets (``CUDA_VISIBLE_DEVICES``, framework settings).
        gpus: the GPUs it was placed on.
        forced: started by the user, limits bypassed.
        end_status: for ``cancelled``: the status the run ends with (``stopped``, ``failed``,
            or ``skipped``: a dependency can no longer be met).
        retry: retry bookkeeping: ``n`` (retries made), ``of`` (attempts allowed),
            ``after`` (the cause), ``early`` (deaths before a first metric in a row),
            ``stopped`` (why retrying stopped).
        policy: the run's retry policy (:class:`runner.retry.RetryPolicy` as JSON).
        not_before: a retry waits in line until then (its backoff).
        fail_fast: when this run fails for good, its queued siblings (same group) are stopped.
    """

    run_id: str
    attempt: int
    kind: str = QUEUED
    queued_at: float = 0.0
    updated_at: float = 0.0
    reason: str = "queued"
    first_reason: str = ""
    rule: str = ""
    priority: int = 0
    timeout_s: float | None = None
    resume_from: str | None = None
    admitted_at: float | None = None
    boot_id: str = ""
    env: dict[str, str] = field(default_factory=dict)
    gpus: tuple[int, ...] = ()
    forced: bool = False
    end_status: str = ""
    retry: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    not_before: float = 0.0
    fail_fast: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON form (with schema)."""
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "kind": self.kind,
            "queued_at": self.queued_at,
            "updated_at": self.updated_at,
            "reason": self.reason,
            "first_reason": self.first_reason,
            "rule": self.rule,
            "priority": self.priority,
            "timeout_s": self.timeout_s,
            "resume_from": self.resume_from,
            "admitted_at": self.admitted_at,
            "boot_id": self.boot_id,
            "env": dict(self.env),
            "gpus": list(self.gpus),
            "forced": self.forced,
            "end_status": self.end_status,
            "retry": dict(self.retry),
            "policy": dict(self.policy),
            "not_before": self.not_before,
            "fail_fast": self.fail_fast,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Ticket:
        """Parse strictly (raises :class:`ShapeError`)."""
        if not isinstance(raw, dict) or raw.get("schema") != SCHEMA:
            raise ShapeError("not a ticket")
        kind = _get(raw, "kind", str)
        if kind not in _KINDS:
            raise ShapeError(f"unknown ticket kind {kind!r}")
        attempt = _int(raw, "attempt")
        assert attempt is not None
        if attempt < 1:
            raise ShapeError("attempt must be >= 1")
        gpus = _get(raw, "gpus", list, optional=True) or []
        if not all(isinstance(g, int) and not isinstance(g, bool) for g in gpus):
            raise ShapeError("gpus must be integers")
        end = _get(raw, "end_status", str, optional=True) or ""
        if end and end not in (Status.STOPPED.value, Status.FAILED.value, Status.SKIPPED.value):
            raise ShapeError("a cancelled ticket ends stopped, failed or skipped")
        retry = _get(raw, "retry", dict, optional=True) or {}
        policy = _get(raw, "policy", dict, optional=True) or {}
        return cls(
            run_id=validate_run_id_shape(_get(raw, "run_id", str)),
            attempt=attempt,
            kind=kind,
            queued_at=_num(raw, "queued_at") or 0.0,
            updated_at=_num(raw, "updated_at", optional=True) or 0.0,
            reason=(_get(raw, "reason", str, optional=True) or "")[:500],
            first_reason=(_get(raw, "first_reason", str, optional=True) or "")[:500],
            rule=(_get(raw, "rule", str, optional=True) or "")[:100],
            priority=_int(raw, "priority", optional=True) or 0,
            timeout_s=_num(raw, "timeout_s", optional=True),
            resume_from=_get(raw, "resume_from", str, optional=True),
            admitted_at=_num(raw, "admitted_at", optional=True),
            boot_id=_get(raw, "boot_id", str, optional=True) or "",
            env=_str_map(raw, "env"),
            gpus=tuple(gpus),
            forced=bool(_get(raw, "forced", bool, optional=True)),
            end_status=end,
            retry={str(k): v for k, v in retry.items() if isinstance(v, (str, int, float))},
            policy=dict(policy),
            not_before=_num(raw, "not_before", optional=True) or 0.0,
            fail_fast=bool(_get(raw, "fail_fast", bool, optional=True)),
        )


@dataclass(frozen=True, order=True)
class Entry:
    """One place in line: the file name in ``queue/`` parsed."""

    band: int
    t_ns: int
    run_id: str
    attempt: int

    @property
    def name(self) -> str:
        """The entry's file name."""
        return f"{self.band:04d}-{self.t_ns:020d}-{self.run_id}-{self.attempt}"

    @property
    def forced(self) -> bool:
        """Started by the user: limits bypassed."""
        return self.band == FORCED_BAND

    @classmethod
    def parse(cls, name: str) -> Entry | None:
        """An entry from a file name, ``None`` for anything else."""
        parts = name.split("-")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            return None
        try:
            run_id = validate_run_id(parts[2])
        except ValueError:
            return None
        return cls(int(parts[0]), int(parts[1]), run_id, int(parts[3]))


def band_of(priority: int) -> int:
    """The entry band of a priority (higher priority sorts first; band 0 is "forced")."""
    return 5000 - max(-MAX_PRIORITY, min(MAX_PRIORITY, priority))


class Queue:
    """The queue folder of one registry root. Holds no open files."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.dir = self.root / QUEUE_DIR
        self.lock_path = self.dir / LOCK
        self.wake_path = self.dir / WAKE
        self._cache: tuple[int, list[Entry]] | None = None
        self._ensured = False

    def ticket_path(self, run_id: str) -> Path:
        """The ticket of a run."""
        return self.root / "runs" / validate_run_id(run_id) / TICKET

    def ensure(self) -> None:
        """Create the folder and the wake-up FIFO (once per instance)."""
        if self._ensured:
            return
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            os.mkfifo(self.wake_path, 0o600)
        self._ensured = True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the queue's lock (short sections only)."""
        self.ensure()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # --- tickets -------------------------------------------------------------------------

    def read_ticket(self, run_id: str) -> Ticket | None:
        """The run's ticket (``None`` without one; :class:`ShapeError` if damaged)."""
        try:
            raw = read_json(self.ticket_path(run_id))
        except FileNotFoundError:
            return None
        ticket = Ticket.from_json(raw)
        if ticket.run_id != run_id:
            raise ShapeError(f"ticket.json names run {ticket.run_id}, not {run_id}")
        return ticket

    def write_ticket(self, ticket: Ticket, *, durable: bool = True) -> None:
        """Replace the run's ticket (hold :meth:`locked`)."""
        stamped = replace(ticket, updated_at=time.time())
        write_json(self.ticket_path(ticket.run_id), stamped.to_json(), durable=durable)

    # --- entries -------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry, first in line first (re-read only when the folder changed)."""
        try:
            mtime = os.stat(self.dir).st_mtime_ns
        except FileNotFoundError:
            return []
        if self._cache is not None and self._cache[0] == mtime:
            return list(self._cache[1])
        found = sorted(e for e in map(Entry.parse, os.listdir(self.dir)) if e is not None)
        # A folder changed twice within one timestamp tick must not keep a stale listing.
        if time.time_ns() - mtime > 50_000_000:
            self._cache = (mtime, found)
        return list(found)

    def add(self, entry: Entry, *, sync: bool = True) -> None:
        """Create an entry (hold :meth:`locked`; write the ``queued`` ticket right after)."""
        fd = os.open(self.dir / entry.name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.close(fd)
        if sync:
            _fsync_dir(self.dir)

    def remove(self, entry: Entry) -> None:
        """Remove an entry (missing is fine)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / entry.name)

    def move(self, entry: Entry, to: Entry) -> None:
        """Give an entry another place in line."""
        os.rename(self.dir / entry.name, self.dir / to.name)

    def find(self, run_id: str) -> list[Entry]:
        """The entries of one run (normally at most one)."""
        return [e for e in self.entries() if e.run_id == run_id]

    # --- waking the dispatcher -----------------------------------------------------------

    def poke(self) -> bool:
        """Wake the dispatcher if one listens (never blocks). Returns whether one did."""
        try:
            fd = os.open(self.wake_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # ENXIO: nobody reads; ENOENT: no queue yet
            if exc.errno not in (errno.ENXIO, errno.ENOENT):
                raise
            return False
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                return False
            with contextlib.suppress(BlockingIOError):
                os.write(fd, b"!")
            return True
        finally:
            os.close(fd)


def enqueue(queue: Queue, ticket: Ticket, *, durable: bool = True, lock: bool = True) -> Entry:
    """Put one attempt of a run in line: the ticket, then the entry (see the module notes).

    ``durable=False`` leaves syncing to the caller (a batch ends with :func:`sync_tree`);
    ``lock=False``: the caller holds :meth:`Queue.locked` (a batch takes it once).
    """
    entry = Entry(
        band_of(ticket.priority), int(ticket.queued_at * 1e9), ticket.run_id, ticket.attempt
    )
    with queue.locked() if lock else contextlib.nullcontext():
        queue.add(entry, sync=durable)
        queue.write_ticket(replace(ticket, kind=QUEUED), durable=durable)
    return entry


def move_to_top(queue: Queue, run_id: str) -> bool:
    """Put a queued run first in line (first of its priority band and every band after).

    Returns whether it was queued. Hold nothing: this takes the queue's lock.
    """
    with queue.locked():
        entries = queue.entries()
        mine = [e for e in entries if e.run_id == run_id]
        if not mine:
            return False
        others = [e for e in entries if e.run_id != run_id and not e.forced]
        head = min(others, default=None)
        entry = mine[0]
        if head is not None and head < entry:
            band = min(head.band, entry.band)
            t = min(e.t_ns for e in others if e.band == band) - 1 if head.band == band else 0
            queue.move(entry, Entry(band, max(0, t), entry.run_id, entry.attempt))
    queue.poke()
    return True


def ticket_status(
    ticket: Ticket, *, now: float, current_boot: str, supervisor_locked: bool, grace_s: float
) -> tuple[Status, str]:
    """What a run whose latest attempt has not reached its supervisor reads as (pure).

    Args:
        ticket: the run's ticket.
        now: the current time.
        current_boot: this boot's id.
        supervisor_locked: whether a supervisor holds the run's lock now.
        grace_s: how long an admitted run may take to reach its supervisor.
    """
    if ticket.kind == QUEUED:
        return Status.QUEUED, ticket.reason or "queued"
    if ticket.kind == CANCELLED:
        return Status(ticket.end_status or Status.STOPPED.value), ticket.reason
    if supervisor_locked:
        return Status.STARTING, "supervisor starting"
    if ticket.boot_id and ticket.boot_id != current_boot:
        return Status.LOST, "host rebooted before the run started"
    if now - (ticket.admitted_at or ticket.updated_at) < grace_s:
        return Status.STARTING, ticket.reason or "admitted"
    return Status.LOST, "admitted, but its supervisor never started"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_LIBC: Any = None


def sync_tree(path: Path) -> None:
    """Make everything written under ``path`` durable at once (``syncfs``, else ``sync``).

    A batch of submissions writes with ``durable=False`` and ends here: one flush instead of
    two ``fsync`` per run (4 ms each on this machine).
    """
    global _LIBC
    if _LIBC is None:
        import ctypes  # only a submitting command flushes

        _LIBC = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if getattr(_LIBC, "syncfs", None) is None or _LIBC.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)
