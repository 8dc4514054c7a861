"""A rebuildable cache of finished runs' listing entries (``$BACKPROP_HOME/index.json``).

An entry is trusted only while its run folder's and its ``state.json``'s modification times
are unchanged and were already older than :data:`runner.registry.CACHE_SETTLE_S` when cached
(two changes within one timestamp tick would otherwise look like none). Active and corrupt runs
are never cached. Deleting the file loses nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.durable import read_json, write_json
from runner.model import SCHEMA, ShapeError, Status

if TYPE_CHECKING:
    from runner.registry import Registry, RunView


class ListingCache:
    """Load once, answer per run, save once if anything changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, Any] = {}
        self._dirty = False
        try:
            raw = read_json(path)
        except (FileNotFoundError, ShapeError):
            return
        if isinstance(raw, dict) and raw.get("schema") == SCHEMA:
            entries = raw.get("runs")
            if isinstance(entries, dict):
                self._entries = entries

    @staticmethod
    def _stamp(registry: Registry, run_id: str) -> list[int] | None:
        folder = registry.run_dir(run_id)
        try:
            d = os.stat(folder).st_mtime_ns
            s = os.stat(folder / "state.json").st_mtime_ns
        except OSError:
            return None
        return [d, s]

    def get(self, registry: Registry, run_id: str, now: float) -> RunView | None:
        """A cached view if the entry is still valid, else ``None``."""
        from runner.registry import RunView

        entry = self._entries.get(run_id)
        if not isinstance(entry, dict):
            return None
        stamp = self._stamp(registry, run_id)
        if stamp is None or entry.get("stamp") != stamp:
            return None
        data = entry.get("json")
        if not isinstance(data, dict):
            return None
        try:
            status = Status(str(data.get("status")))
        except ValueError:
            return None
        return RunView(id=run_id, status=status, reason=str(data.get("reason", "")), cached=data)

    def put(self, registry: Registry, run_id: str, view: RunView, now: float) -> None:
        """Remember a finished run's entry if its files have settled."""
        if view.status.active or view.status is Status.CORRUPT or view.status is Status.LOST:
            self._drop(run_id)
            return
        stamp = self._stamp(registry, run_id)
        if stamp is None or now - max(stamp) / 1e9 < registry_settle():
            self._drop(run_id)
            return
        self._entries[run_id] = {"stamp": stamp, "json": view.to_json()}
        self._dirty = True

    def _drop(self, run_id: str) -> None:
        if self._entries.pop(run_id, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the cache if it changed (atomic, not fsynced: it is only a cache)."""
        if not self._dirty:
            return
        try:
            write_json(self.path, {"schema": SCHEMA, "runs": self._entries}, durable=False)
        except OSError:
            pass  # a read-only registry still lists; it just lists slower
        self._dirty = False


def registry_settle() -> float:
    """The settle window (read from the registry module so tests can shorten it)."""
    from runner import registry

    return registry.CACHE_SETTLE_S
