"""A rebuildable cache of finished runs' listing entries (``$BACKPROP_HOME/index.cache``).

One line per run: ``id, stamp, status, reason, json`` separated by tabs (the reason
JSON-encoded, so it holds no tab), after a header holding a digest of the body, so a damaged
or edited cache is discarded whole. Entries keep the encoded JSON, so ``ls --json`` can emit
cached runs without decoding and re-encoding them.

The stamp is the inode, size, modification and change time of every file a listing entry is
read from (``spec.json``, ``state.json``, ``summary.json``). An entry is
trusted only while all of them are unchanged, and only if they had already settled for
``settle_s`` when it was cached (two changes within one timestamp tick would otherwise look
like none). So a ``spec.json`` emptied in place, a file replaced by another of the same size,
or a timestamp set back with ``touch -d`` (the change time moves regardless) all make the run
be read again, and a damaged run lists as ``corrupt``, as ``show`` says. Active, lost and
corrupt runs are never cached. Deleting the file loses nothing.

This module knows nothing of the registry (the registry asks it, never the other way round).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from runner.durable import write_atomic
from runner.model import SCHEMA, Status

_HEADER = "backprop-listing-cache-v3"  # v3: entries carry the backend
MAX_CACHE_BYTES = 512 * 1024 * 1024
# The files of a run folder a listing entry is built from.
STAMPED = ("spec.json", "state.json", "summary.json")
_REQUIRED = ("spec.json", "state.json")


@dataclass(frozen=True)
class CachedEntry:
    """A finished run as it was listed: status, reason and the encoded ``to_json()``."""

    status: Status
    reason: str
    raw: str


def stamp_of(folder: str) -> tuple[str, int] | None:
    """The run folder's files' identity and times as text, and the newest change time (ns).

    ``None`` when its ``spec.json`` or ``state.json`` cannot be read.
    """
    parts: list[str] = []
    newest = 0
    for name in STAMPED:
        try:
            st = os.stat(f"{folder}/{name}")  # plain strings: this runs per run per listing
        except FileNotFoundError:
            if name in _REQUIRED:
                return None
            parts.append("-")
            continue
        except OSError:
            return None
        parts.append(f"{st.st_ino}.{st.st_size}.{st.st_mtime_ns}.{st.st_ctime_ns}")
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return ",".join(parts), newest


class ListingCache:
    """Load once, answer per run, save once if anything changed.

    Args:
        path: the cache file.
        settle_s: how long a run's files must have been unchanged before it is cached.
    """

    def __init__(self, path: Path, settle_s: float) -> None:
        self.path = path
        self.settle_s = settle_s
        self._entries: dict[str, tuple[str, str, str, str]] = {}
        self._dirty = False
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_CACHE_BYTES + 1)
        except OSError:
            return
        head, _, body = raw.partition(b"\n")
        expected = f"{_HEADER} {SCHEMA} ".encode()
        if not head.startswith(expected) or len(raw) > MAX_CACHE_BYTES:
            return
        if head[len(expected) :].decode("ascii", "replace") != _digest(body):
            return
        for line in body.decode("utf-8", "replace").splitlines():
            parts = line.split("\t", 4)
            if len(parts) == 5:
                run_id, stamp, status, reason, data = parts
                self._entries[run_id] = (stamp, status, reason, data)

    def get(self, folder: str, run_id: str) -> CachedEntry | None:
        """The cached entry of ``run_id`` (folder ``folder``) if its files are unchanged."""
        entry = self._entries.get(run_id)
        if entry is None:
            return None
        now = stamp_of(folder)
        if now is None or now[0] != entry[0]:
            return None
        try:
            status = Status(entry[1])
            reason = json.loads(entry[2])
        except ValueError:
            return None
        return CachedEntry(status=status, reason=str(reason), raw=entry[3])

    def put(
        self, folder: str, run_id: str, status: Status, reason: str, raw: str, now: float
    ) -> None:
        """Remember a finished run's entry if its files have settled (else forget it)."""
        if status.active or status in (Status.CORRUPT, Status.LOST):
            self._drop(run_id)
            return
        stamp = stamp_of(folder)
        if stamp is None or now - stamp[1] / 1e9 < self.settle_s:
            self._drop(run_id)
            return
        self._entries[run_id] = (stamp[0], status.value, json.dumps(reason), raw)
        self._dirty = True

    def _drop(self, run_id: str) -> None:
        if self._entries.pop(run_id, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the cache if it changed (atomic, not fsynced: it is only a cache)."""
        if not self._dirty:
            return
        body = "".join(
            f"{k}\t{stamp}\t{st}\t{why}\t{data}\n"
            for k, (stamp, st, why, data) in self._entries.items()
        ).encode()
        try:
            write_atomic(
                self.path, f"{_HEADER} {SCHEMA} {_digest(body)}\n".encode() + body, durable=False
            )
        except OSError:
            pass  # a read-only registry still lists; it just lists slower
        self._dirty = False


def _digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=16).hexdigest()
