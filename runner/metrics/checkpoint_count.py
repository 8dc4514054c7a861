"""How many checkpoints a run's own ``checkpoints/`` folder holds, counted when it changes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CHECKPOINT_RESCAN_S = 2.0


class FolderCount:
    """Counts the files in one folder when its mtime changed (or every few seconds).

    Args:
        folder: the run's ``checkpoints/`` folder (it need not exist).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0
        self._mtime: int | None = None
        self._scanned_at = -1e18

    def rescan_soon(self) -> None:
        """Count again at the next :meth:`scan` (a checkpoint was announced)."""
        self._scanned_at = -1e18

    def scan(self, now: float, *, force: bool) -> bool:
        """Count if due; return whether the count changed."""
        try:
            mtime = os.stat(self.folder).st_mtime_ns
        except OSError:
            mtime = None
        if not force and mtime == self._mtime and now - self._scanned_at < CHECKPOINT_RESCAN_S:
            return False
        self._mtime, self._scanned_at = mtime, now
        count = 0
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.folder):
                if not entry.name.startswith("."):  # ".name.tmp-PID": a save in progress
                    with contextlib.suppress(OSError):
                        count += entry.is_file()
        changed = count != self.count
        self.count = count
        return changed
