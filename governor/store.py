"""The governor's shared state: one small JSON file changed under a short ``flock``.

``$BACKPROP_HOME/governor/state.json`` holds the token bucket, the leases (admitted runs and
their reservations) and the queue (waiting runs); ``governor/lock`` is the lock file;
``governor/learned.json`` the learned VRAM peaks. Admission rounds (the dispatcher's and a
submitting command's) read and change them in a :meth:`GovernorStore.transaction`: lock,
read, decide, write if changed, unlock.

The state is soft: a lease ends when its run folder says the attempt is over (see
:func:`governor.round_inputs.lease_alive`), and a damaged file reads as empty (after which
the next round rewrites it). It is replaced atomically but not fsynced: a power loss also
ends every run it describes.

With a shared governor folder (:mod:`governor.shared`), ``state.json`` and ``lock`` live there
instead, and the file keeps one section per owner (user and registry) under ``owners``: a
user's own section is read into :attr:`GovernorState.leases` / ``waiters`` as usual; every
other section is read entry by entry into :attr:`GovernorState.others`, which counts for
admission and is never acted on. The bucket is one for all. Learned VRAM peaks stay private.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from governor.bucket import BucketState
from governor.queue import Waiter
from governor.reservations import Lease
from governor.shared import (
    OWNER_RE,
    SHARED_FILE_MODE,
    SharedDirError,
    configured_dir,
    open_lock,
    owner_key,
    prepare,
    read_untrusted,
)
from runner import identity
from runner.durable import PRIVATE_FILE, dump_json, read_json, write_atomic
from runner.model import ID_RE, ProcessIdentity, ShapeError
from runner.privacy import warn_once

_E = TypeVar("_E", Lease, Waiter)

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
    # Other owners' sections of a shared state file: counted for admission, never acted on.
    others: dict[str, GovernorState] = field(default_factory=dict)

    def foreign_leases(self) -> list[Lease]:
        """Other owners' leases, renamed so they never match one of our runs or groups."""
        return [
            replace(lease, run_id=f"{owner}/{rid}", group=None)
            for owner, st in sorted(self.others.items())
            for rid, lease in sorted(st.leases.items())
        ]

    def foreign_waiters(self) -> list[Waiter]:
        """Other owners' queue entries (they count for the order of the queue)."""
        return [w for _, st in sorted(self.others.items()) for w in st.waiters.values()]

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
        leases, waiters, _ = _entries(d)
        return cls(bucket=_bucket(d.get("bucket"), None), leases=leases, waiters=waiters)

    @classmethod
    def from_shared(cls, d: Any, me: str, now: float) -> GovernorState:
        """Parse a shared state file as untrusted input; ``me`` is this owner's key.

        A wrong-shaped section or entry is dropped with a warning on stderr; a bucket stamped
        in the future counts from now (it would otherwise never refill).
        """
        if d is None:
            return cls()
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            warn_once("backprop: warning: ignored a shared governor state of unknown shape")
            return cls()
        state = cls(bucket=_bucket(d.get("bucket"), now))
        if d.get("bucket") is not None and state.bucket is None:
            warn_once("backprop: warning: ignored a malformed shared admission bucket")
        owners = d.get("owners")
        if not isinstance(owners, dict):
            warn_once("backprop: warning: ignored shared governor owners of unknown shape")
        for owner, section in owners.items() if isinstance(owners, dict) else ():
            if not isinstance(owner, str) or not OWNER_RE.fullmatch(owner):
                warn_once("backprop: warning: ignored a shared governor section of no valid owner")
                continue
            if not isinstance(section, dict):
                warn_once(f"backprop: warning: ignored owner {owner}'s shared governor section")
                continue
            leases, waiters, dropped = _entries(section)
            if dropped:
                warn_once(
                    f"backprop: warning: ignored {dropped} malformed shared governor "
                    f"entries of owner {owner}"
                )
            if owner == me:
                state.leases, state.waiters = leases, waiters
            else:
                state.others[owner] = cls(leases=leases, waiters=waiters)
        return state

    def to_shared_json(self, me: str) -> dict[str, Any]:
        """JSON form of a shared state file: the bucket and one section per owner."""
        sections = {o: st.to_json() for o, st in sorted(self.others.items())}
        mine = self.to_json()
        sections[me] = {"leases": mine["leases"], "waiters": mine["waiters"]}
        for section in sections.values():
            section.pop("schema", None)
            section.pop("bucket", None)
        return {"schema": SCHEMA, "bucket": mine["bucket"], "owners": sections}

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
        for other in self.others.values():  # liveness is only read: nothing is signalled
            other.prune(alive)
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


def _bucket(b: Any, now: float | None) -> BucketState | None:
    if not isinstance(b, dict):
        return None
    tokens: Any = b.get("tokens")
    t: Any = b.get("t")
    if not (_number(tokens) and _number(t)):
        return None
    tokens, t = float(tokens), float(t)
    if now is not None:  # untrusted: no negative or endless tokens, no stamp in the future
        if not (0.0 <= tokens < 1e9) or t != t:
            return None
        t = min(t, now)
    return BucketState(tokens=tokens, updated_at=t)


def _entries(d: dict[str, Any]) -> tuple[dict[str, Lease], dict[str, Waiter], int]:
    """Leases and waiters of one section, and how many entries were malformed."""
    leases, bad_leases = _valid(d.get("leases"), Lease.from_json)
    waiters, bad_waiters = _valid(d.get("waiters"), Waiter.from_json)
    return leases, waiters, bad_leases + bad_waiters


def _valid(raw: Any, parse: Callable[[Any], _E]) -> tuple[dict[str, _E], int]:
    """The entries of ``raw`` that parse and name their own key; and how many did not."""
    kept: dict[str, _E] = {}
    dropped = 0
    for run_id, item in _items(raw):
        try:
            entry: _E | None = parse(item)
        except Exception:  # untrusted input: any failure drops just this entry
            entry = None
        if entry is not None and entry.run_id == run_id:
            kept[run_id] = entry
        else:
            dropped += 1
    return kept, dropped


def _items(d: Any) -> list[tuple[str, Any]]:
    if not isinstance(d, dict):
        return []
    return [(k, v) for k, v in d.items() if isinstance(k, str) and ID_RE.fullmatch(k)]


class GovernorStore:
    """Access to the shared state under one registry root. Holds no open files.

    Args:
        home: the registry root (learned VRAM peaks, and the state unless shared).
        shared_dir: a governor folder shared with other users (see :mod:`governor.shared`).
    """

    def __init__(self, home: Path | str, shared_dir: Path | None = None) -> None:
        private = Path(home) / GOVERNOR_DIR
        self.shared_dir = shared_dir
        self.dir = shared_dir if shared_dir is not None else private
        self.owner = owner_key(Path(home)) if shared_dir is not None else ""
        self.state_path = self.dir / STATE_FILE
        self.lock_path = self.dir / LOCK_FILE
        self.learned_path = private / LEARNED_FILE
        self._prepared = False

    def read(self) -> GovernorState:
        """The state as last written (no lock: the file is replaced atomically)."""
        if self.shared_dir is not None:
            return GovernorState.from_shared(
                read_untrusted(self.state_path), self.owner, time.time()
            )
        try:
            raw = read_json(self.state_path)
        except (FileNotFoundError, ShapeError):
            return GovernorState()
        return GovernorState.from_json(raw)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the governor's lock (keep the section short)."""
        if self.shared_dir is not None:
            if not self._prepared:
                prepare(self.shared_dir)
                self._prepared = True
            fd = open_lock(self.lock_path)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _encode(self, state: GovernorState) -> bytes:
        if self.shared_dir is not None:
            return dump_json(state.to_shared_json(self.owner))
        return dump_json(state.to_json())

    def write(self, state: GovernorState) -> None:
        """Write ``state`` now, inside a :meth:`transaction` (a decision other files follow)."""
        mode = SHARED_FILE_MODE if self.shared_dir is not None else PRIVATE_FILE
        write_atomic(self.state_path, self._encode(state), durable=False, mode=mode)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[GovernorState]:
        """Lock, read, yield the state to change, write it back if it changed, unlock.

        An exception inside the block leaves the file as it was.
        """
        with self.locked():
            state = self.read()
            before = self._encode(state)
            yield state
            after = self._encode(state)
            if after != before:
                mode = SHARED_FILE_MODE if self.shared_dir is not None else PRIVATE_FILE
                write_atomic(self.state_path, after, durable=False, mode=mode)


def store_for(home: Path | str, shared_setting: str = "") -> GovernorStore:
    """The store a registry's supervisors use: the shared folder if one is configured and safe.

    An unsafe shared folder is reported once on stderr (a supervisor's goes to its log) and
    the private store is used, so a misconfiguration never strands a run.
    """
    shared = configured_dir(shared_setting)
    if shared is not None:
        try:
            return GovernorStore(home, prepare(shared))
        except SharedDirError as exc:
            warn_once(f"backprop: warning: {exc}; using the private governor state instead")
    return GovernorStore(home)
