"""Wake a waiting supervisor when other runs' supervisors exit, without polling.

Every supervisor holds its run's ``supervisor.lock`` for its whole life, so a blocking
shared ``flock`` on that file returns exactly when the run's supervisor has gone: its run
has ended (or was lost). A dependent's supervisor waits for its dependencies that way: one
small thread per dependency, blocked in the kernel, that writes a byte to the supervisor's
wake-up pipe and lets go of the lock at once. The threads cost no CPU while they wait; they
end with the process (also across the re-exec after admission).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterable

from runner.registry import SUPERVISOR_LOCK, Registry


class LockWatch:
    """Watches other runs' supervisor locks on behalf of one waiting supervisor.

    Args:
        registry: where the runs are.
        wake_fd: the write end of the waiting supervisor's wake-up pipe (non-blocking).
    """

    def __init__(self, registry: Registry, wake_fd: int) -> None:
        self.registry = registry
        self.wake_fd = wake_fd
        self._watching: set[str] = set()
        self._guard = threading.Lock()

    def arm(self, run_ids: Iterable[str]) -> bool:
        """Watch each run until its supervisor exits; return whether every one is watched.

        ``False`` means some run has no live supervisor right now (it is being started, or
        the wait is about to end): the caller should look again soon rather than sleep long.
        """
        armed = True
        for run_id in run_ids:
            with self._guard:
                if run_id in self._watching:
                    continue
            fd = self._open(run_id)
            if fd is None:
                armed = False
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held by a live supervisor: wait for it in a thread
                with self._guard:
                    self._watching.add(run_id)
                threading.Thread(
                    target=self._wait, args=(run_id, fd), name=f"lockwatch-{run_id}", daemon=True
                ).start()
                continue
            os.close(fd)  # nobody holds it: no supervisor to wait for
            armed = False
        return armed

    def _open(self, run_id: str) -> int | None:
        try:
            path = self.registry.run_dir(run_id) / SUPERVISOR_LOCK
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (OSError, ValueError):
            return None

    def _wait(self, run_id: str, fd: int) -> None:
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)  # releases the shared lock at once: a resume may need it
            with self._guard:
                self._watching.discard(run_id)
            with contextlib.suppress(OSError):
                os.write(self.wake_fd, b"w")
