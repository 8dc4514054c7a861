"""A rebuildable cache of finished runs' listing entries (``$BACKPROP_HOME/index.cache``).

One line per run: ``id, folder mtime, state mtime, status, reason, json`` separated by tabs
(the reason JSON-encoded, so it holds no tab), after a
header holding a digest of the body, so a damaged or edited cache is discarded whole. Entries
keep the encoded JSON, so ``ls --json`` can emit cached runs without decoding and re-encoding
them. An entry is trusted only while the run folder's and ``state.json``'s modification times
are unchanged and were already older than :data:`runner.registry.CACHE_SETTLE_S` when cached
(two changes within one timestamp tick would otherwise look like none). Active, lost and
corrupt runs are never cached. Deleting the file loses nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from runner.durable import write_atomic
from runner.model import SCHEMA, Status

if TYPE_CHECKING:
    from runner.registry import Registry, RunView

_HEADER = "backprop-listing-cache"
MAX_CACHE_BYTES = 512 * 1024 * 1024


class ListingCache:
    """Load once, answer per run, save once if anything changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, tuple[int, int, str, str, str]] = {}
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
            parts = line.split("\t", 5)
            if len(parts) != 6:
                continue
            run_id, d, s, status, reason, data = parts
            try:
                self._entries[run_id] = (int(d), int(s), status, reason, data)
            except ValueError:
                continue

    @staticmethod
    def _stamp(registry: Registry, run_id: str) -> tuple[int, int] | None:
        folder = os.path.join(registry.runs_dir, run_id)
        try:
            d = os.stat(folder).st_mtime_ns
            s = os.stat(os.path.join(folder, "state.json")).st_mtime_ns
        except OSError:
            return None
        return d, s

    def get(self, registry: Registry, run_id: str, now: float) -> RunView | None:
        """A cached view if the entry is still valid, else ``None``."""
        from runner.registry import RunView

        entry = self._entries.get(run_id)
        if entry is None:
            return None
        if self._stamp(registry, run_id) != entry[:2]:
            return None
        try:
            status = Status(entry[2])
            reason = json.loads(entry[3])
        except ValueError:
            return None
        return RunView(id=run_id, status=status, reason=str(reason), raw=entry[4])

    def put(self, registry: Registry, run_id: str, view: RunView, now: float) -> None:
        """Remember a finished run's entry if its files have settled."""
        from runner.registry import CACHE_SETTLE_S

        if view.status.active or view.status in (Status.CORRUPT, Status.LOST):
            self._drop(run_id)
            return
        stamp = self._stamp(registry, run_id)
        if stamp is None or now - max(stamp) / 1e9 < CACHE_SETTLE_S:
            self._drop(run_id)
            return
        data = json.dumps(view.to_json(), separators=(",", ":"), default=str)
        reason = json.dumps(view.reason)
        self._entries[run_id] = (stamp[0], stamp[1], view.status.value, reason, data)
        self._dirty = True

    def _drop(self, run_id: str) -> None:
        if self._entries.pop(run_id, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the cache if it changed (atomic, not fsynced: it is only a cache)."""
        if not self._dirty:
            return
        body = "".join(
            f"{k}\t{d}\t{s}\t{st}\t{why}\t{data}\n"
            for k, (d, s, st, why, data) in self._entries.items()
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
