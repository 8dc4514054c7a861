"""A supervisor's records that survive write errors: the newest state and queued events.

A full disk, a quota, a registry remounted read-only or a failing device make every write
of the supervisor raise ``OSError``. None of that may end the supervision of a live trainer,
so the supervisor writes through a :class:`RecordKeeper`: it keeps the newest state and the
events not yet written in memory, writes them when it can (retrying with a growing pause,
never more often than the supervisor polls) and names the cause (``disk full: ...``,
``registry read-only: ...``) so the run's reason can say it.

A small reserve file is allocated when the keeper starts. When the disk is full at the end of
a run, the reserve is given back so that the exit can still be recorded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.durable import append_jsonl, write_json
from runner.registry import EVENTS, STATE

RESERVE = ".reserve"
RESERVE_BYTES = 64 * 1024
FIRST_RETRY_S = 0.2
MAX_RETRY_S = 10.0
MAX_PENDING_EVENTS = 10_000

_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "registry read-only",
    errno.EIO: "I/O error",
    errno.EFBIG: "file too large",
    errno.EACCES: "registry not writable",
    errno.EPERM: "registry not writable",
    errno.ENOENT: "run folder gone",
}


_FULL = (_CAUSES[errno.ENOSPC], _CAUSES[errno.EDQUOT])


def describe_write_error(exc: OSError, what: str) -> str:
    """A one-line cause for a failed write, e.g. ``disk full: state.json (No space left...)``."""
    cause = _CAUSES.get(exc.errno or 0, "write error")
    detail = exc.strerror or type(exc).__name__
    return f"{cause}: {what} ({detail})"


class RecordKeeper:
    """Writes a run's ``state.json`` and ``events.jsonl``, surviving write errors.

    Args:
        run_dir: the run's folder.
        clock: a monotonic clock for the retry schedule.
    """

    def __init__(self, run_dir: Path, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.run_dir = Path(run_dir)
        self.clock = clock
        self._state: dict[str, Any] | None = None
        self._events: list[dict[str, Any]] = []
        self.events_dropped = 0
        self.error: str | None = None  # the cause while writes fail
        self.first_error: str | None = None  # the first cause seen in this supervisor's life
        self.last_error: str | None = None  # the latest cause (kept after recovery)
        self.failures = 0
        self._retry_at = 0.0
        self._backoff = FIRST_RETRY_S
        self._gone = False

    # --- the reserve ----------------------------------------------------------------------

    def make_reserve(self) -> bool:
        """Allocate the reserve file (best effort); True if it exists now."""
        path = self.run_dir / RESERVE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def make_room(self, error: str | None) -> bool:
        """Give back the reserve if ``error`` says the disk is full (the run is ending)."""
        return error is not None and error.startswith(_FULL) and self.release_reserve()

    def release_reserve(self) -> bool:
        """Give the reserve back to the file system (to record an exit on a full disk)."""
        try:
            os.unlink(self.run_dir / RESERVE)
            return True
        except OSError:
            return False

    # --- writing --------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether something is still waiting to be written."""
        return self._state is not None or bool(self._events)

    @property
    def gone(self) -> bool:
        """Whether the run folder vanished (nothing will ever be writable again)."""
        return self._gone

    def put_state(self, doc: dict[str, Any]) -> bool:
        """Make ``doc`` the newest state and try to write it now. Returns if written."""
        self._state = doc
        return self.flush()

    def put_event(self, entry: dict[str, Any]) -> bool:
        """Queue one lifecycle event and try to write it now. Returns if written."""
        if len(self._events) >= MAX_PENDING_EVENTS:
            self._events.pop(0)
            self.events_dropped += 1
        self._events.append(entry)
        return self.flush()

    def flush(self, *, force: bool = False) -> bool:
        """Write what is pending unless (without ``force``) a retry is not due yet.

        Events go first (in order), then the newest state. Never raises ``OSError``.

        Returns:
            True when nothing is pending any more.
        """
        if not self.pending:
            return True
        if not force and self.clock() < self._retry_at:
            return False  # while writes fail, new records wait for the schedule too
        try:
            if self._events:
                append_jsonl(self.run_dir / EVENTS, self._events)
                self._events = []
            if self._state is not None:
                write_json(self.run_dir / STATE, self._state)
                self._state = None
        except OSError as exc:
            self._failed(exc)
            return False
        self.error = None
        self._backoff = FIRST_RETRY_S
        self._retry_at = 0.0
        return True

    def flush_final(self) -> bool:
        """Write what is pending now, giving back the reserve if the disk is full."""
        if self.flush(force=True) or self._gone:
            return not self.pending
        self.make_room(self.error)
        return self.flush(force=True)

    def drain(self, wait: Callable[[float], None]) -> str | None:
        """Write what is pending, waiting (with ``wait``) as long as it takes.

        On a full disk the reserve is given back first; on a read-only registry this retries
        with a growing pause until it is writable again or the run folder is gone.

        Returns:
            The error that delayed the records, or ``None`` if they were written at once.
        """
        delayed = self.last_error if self.pending else None  # pending: a write failed
        if self.flush_final():
            return delayed
        delayed = self.last_error
        while not self._gone and not self.flush():
            wait(max(self.wait_s(), 0.05))
        return delayed

    def wait_s(self) -> float:
        """How long until the next retry is due (0 when nothing is pending)."""
        if not self.pending:
            return 0.0
        return max(0.0, self._retry_at - self.clock())

    def _failed(self, exc: OSError) -> None:
        what = f"{STATE} / {EVENTS}"
        self.error = self.last_error = describe_write_error(exc, what)
        if self.first_error is None:
            self.first_error = self.error
        self.failures += 1
        if exc.errno == errno.ENOENT and not self.run_dir.exists():
            self._gone = True
        self._retry_at = self.clock() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_RETRY_S)

    def close(self) -> None:
        """Remove the reserve once the records are written (nothing else to release)."""
        if not self.pending:
            with contextlib.suppress(OSError):
                os.unlink(self.run_dir / RESERVE)
