"""A remote run's sign of life: the supervisor touches ``heartbeat`` in its run folder.

A run whose supervisor runs on another host (a Slurm job, a Ray job) cannot be checked by
pid from here: its recorded process identity is another kernel's. Its supervisor therefore
writes ``heartbeat`` once (host, pid, boot id, attempt, interval) and then only updates the
file's modification time every :data:`HEARTBEAT_S` seconds (``utime``: no data written, no
``fsync``; on NFS the server's clock stamps it). Whoever lists the run compares that time with
its own clock: older than :data:`STALE_BEATS` intervals is *stale*, and the listing then asks
the engine (:mod:`runner.remote_status`). Local runs write no heartbeat: their pids are the
truth.

The interval is recorded in the file, so readers follow the writer's interval; tests shorten
it with ``BACKPROP_HEARTBEAT_S``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runner import envnames
from runner.durable import read_json, write_json

HEARTBEAT = "heartbeat"
HEARTBEAT_S = 5.0  # how often a remote supervisor shows it is alive
STALE_BEATS = 3  # silent this many intervals: stale (ask the engine)
HUNG_BEATS = 12  # silent this long while the engine says running (or cannot say): lost
MIN_INTERVAL_S, MAX_INTERVAL_S = 0.1, 300.0
HEARTBEAT_ENV = envnames.HEARTBEAT_S


def this_host() -> str:
    """This machine's host name (the kernel's node name: per UTS namespace, like ``hostname``)."""
    return os.uname().nodename


def interval_s() -> float:
    """The heartbeat interval this process uses (``BACKPROP_HEARTBEAT_S`` shortens it in tests)."""
    raw = os.environ.get(HEARTBEAT_ENV)
    try:
        value = float(raw) if raw else HEARTBEAT_S
    except ValueError:
        value = HEARTBEAT_S
    return min(max(value, MIN_INTERVAL_S), MAX_INTERVAL_S)


@dataclass(frozen=True)
class Heartbeat:
    """What a run folder's ``heartbeat`` says.

    Attributes:
        host: the supervisor's host.
        pid: the supervisor's pid there.
        boot_id: that host's boot id.
        attempt: the attempt it supervises.
        every_s: its interval.
        at: the file's modification time (the last beat).
    """

    host: str
    pid: int
    boot_id: str
    attempt: int
    every_s: float
    at: float

    def age(self, now: float) -> float:
        """Seconds since the last beat (never negative: a clock ahead of ours reads as 0)."""
        return max(0.0, now - self.at)

    def stale(self, now: float) -> bool:
        """Silent for more than :data:`STALE_BEATS` intervals."""
        return self.age(now) > STALE_BEATS * self.every_s

    def hung(self, now: float) -> bool:
        """Silent for more than :data:`HUNG_BEATS` intervals: no engine answer keeps it alive."""
        return self.age(now) > HUNG_BEATS * self.every_s


def read_heartbeat(run_dir: Path) -> Heartbeat | None:
    """The run's heartbeat, or ``None`` when there is none or it is unreadable."""
    path = run_dir / HEARTBEAT
    try:
        raw = read_json(path)
        at = os.stat(path).st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    try:
        every = float(raw["every_s"])
        return Heartbeat(
            host=str(raw["host"])[:200],
            pid=int(raw["pid"]),
            boot_id=str(raw.get("boot_id") or "")[:100],
            attempt=int(raw["attempt"]),
            every_s=min(max(every, MIN_INTERVAL_S), MAX_INTERVAL_S),
            at=at,
        )
    except (KeyError, TypeError, ValueError):
        return None


class HeartbeatWriter:
    """The supervisor's side: write the heartbeat once, then touch it every interval.

    A write error (full disk, read-only registry, a storage hiccup) is remembered in
    :attr:`error` and tried again at the next beat; it never ends supervision.
    """

    def __init__(self, run_dir: Path, *, attempt: int, boot_id: str, every_s: float | None = None):
        self.path = run_dir / HEARTBEAT
        self.attempt = attempt
        self.boot_id = boot_id
        self.every_s = every_s if every_s is not None else interval_s()
        self.host = this_host()
        self._written = False
        self._last = -1e18
        self.error: str | None = None

    def beat(self, now: float) -> None:
        """Show this supervisor is alive, when an interval has passed since the last beat."""
        if now - self._last < self.every_s:
            return
        self._last = now
        try:
            if not self._written:
                record = {
                    "host": self.host,
                    "pid": os.getpid(),
                    "boot_id": self.boot_id,
                    "attempt": self.attempt,
                    "every_s": self.every_s,
                }
                write_json(self.path, record, durable=False, mode=0o644)
                self._written = True
            else:
                os.utime(self.path, None)  # None: the file system's own clock (the NFS server's)
            self.error = None
        except OSError as exc:
            self.error = f"heartbeat: {exc.strerror or exc}"
            if isinstance(exc, FileNotFoundError):
                self._written = False  # removed under us: write it whole next time
