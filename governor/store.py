"""The governor's shared state: one small JSON file changed under a short ``flock``.

``$BACKPROP_HOME/governor/state.json`` holds the token bucket, the leases (admitted runs and
their reservations) and the queue (waiting runs); ``governor/lock`` is the lock file;
``governor/learned.json`` the learned VRAM peaks. Admission rounds (the dispatcher's and a
submitting command's) read and change them in a :meth:`GovernorStore.transaction`: lock,
read, decide, write if changed, unlock.

The state is soft: a lease ends when its run folder says the attempt is over (see
:func:`governor.admit_round.lease_alive`), and a damaged file reads as empty (after which
the next round rewrites it). It is replaced atomically but not fsynced: a power loss also
ends every run it describes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from governor.bucket import BucketState
from governor.queue import Waiter
from governor.reservations import Lease
from runner import identity
from runner.durable import dump_json, read_json, write_atomic
from runner.model import ID_RE, ProcessIdentity, ShapeError

SCHEMA = 1
GOVERNOR_DIR = "governor"
STATE_FILE = "state.json"
LOCK_FILE = "lock"
LEARNED_FILE = "learned.json"


@dataclass
class GovernorState:
    """The shared state, as read (mutable inside a transaction)."""

    bucket: BucketState | None = None
    leases: dict[str, Lease] = field(default_factory=dict)
    waiters: dict[str, Waiter] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON form (deterministic)."""
        return {
            "schema": SCHEMA,
            "bucket": (
                {"tokens": self.bucket.tokens, "t": self.bucket.updated_at}
                if self.bucket is not None
                else None
            ),
            "leases": {k: v.to_json() for k, v in sorted(self.leases.items())},
            "waiters": {k: v.to_json() for k, v in sorted(self.waiters.items())},
        }

    @classmethod
    def from_json(cls, d: Any) -> GovernorState:
        """Parse leniently: a wrong-shaped entry is dropped, a wrong-shaped file is empty."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            return cls()
        bucket = None
        b = d.get("bucket")
        if isinstance(b, dict):
            tokens: Any = b.get("tokens")
            t: Any = b.get("t")
            if _number(tokens) and _number(t):
                bucket = BucketState(tokens=float(tokens), updated_at=float(t))
        leases: dict[str, Lease] = {}
        for run_id, raw in _items(d.get("leases")):
            with contextlib.suppress(ShapeError, TypeError, ValueError):
                lease = Lease.from_json(raw)
                if lease.run_id == run_id:
                    leases[run_id] = lease
        waiters: dict[str, Waiter] = {}
        for run_id, raw in _items(d.get("waiters")):
            with contextlib.suppress(ShapeError, TypeError, ValueError):
                waiter = Waiter.from_json(raw)
                if waiter.run_id == run_id:
                    waiters[run_id] = waiter
        return cls(bucket=bucket, leases=leases, waiters=waiters)

    def prune(self, alive: Callable[[ProcessIdentity | None], bool]) -> list[str]:
        """Drop waiters whose supervisor is gone and leases whose run is gone entirely.

        A lease survives while its supervisor or its trainer lives (a trainer left running
        by a dead supervisor still occupies its GPU). Returns the run ids dropped.
        """
        dropped = [rid for rid, w in self.waiters.items() if not alive(w.supervisor)]
        for rid in dropped:
            del self.waiters[rid]
        gone = [
            rid
            for rid, lease in self.leases.items()
            if not alive(lease.supervisor) and not alive(lease.trainer)
        ]
        for rid in gone:
            del self.leases[rid]
        return dropped + gone


def process_alive(ident: ProcessIdentity | None) -> bool:
    """Whether ``ident`` names a live process: :func:`runner.identity.matches` in one read.

    Queued supervisors check every queue entry on every poll, so this reads
    ``/proc/PID/stat`` once for both the start time and the zombie state.
    """
    if ident is None or ident.pid <= 1 or ident.boot_id != identity.boot_id():
        return False
    try:
        with open(f"/proc/{ident.pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    fields = raw[raw.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return False
    try:
        return int(fields[19]) == ident.start_ticks
    except ValueError:
        return False


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _items(d: Any) -> list[tuple[str, Any]]:
    if not isinstance(d, dict):
        return []
    return [(k, v) for k, v in d.items() if isinstance(k, str) and ID_RE.fullmatch(k)]


class GovernorStore:
    """Access to the shared state under one registry root. Holds no open files."""

    def __init__(self, home: Path | str) -> None:
        self.dir = Path(home) / GOVERNOR_DIR
        self.state_path = self.dir / STATE_FILE
        self.lock_path = self.dir / LOCK_FILE
        self.learned_path = self.dir / LEARNED_FILE

    def read(self) -> GovernorState:
        """The state as last written (no lock: the file is replaced atomically)."""
        try:
            raw = read_json(self.state_path)
        except (FileNotFoundError, ShapeError):
            return GovernorState()
        return GovernorState.from_json(raw)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the governor's lock (keep the section short)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def write(self, state: GovernorState) -> None:
        """Write ``state`` now, inside a :meth:`transaction` (a decision other files follow)."""
        write_atomic(self.state_path, dump_json(state.to_json()), durable=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[GovernorState]:
        """Lock, read, yield the state to change, write it back if it changed, unlock.

        An exception inside the block leaves the file as it was.
        """
        with self.locked():
            state = self.read()
            before = dump_json(state.to_json())
            yield state
            after = dump_json(state.to_json())
            if after != before:
                write_atomic(self.state_path, after, durable=False)
