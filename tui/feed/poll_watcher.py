"""The feed's watcher for a registry on a network file system: targeted polling, no inotify.

inotify never hears of a write another NFS client made (FIELD_NOTES.md), and watchfiles'
polling mode stats every entry of every watched folder (``runs/`` with 10,000 runs:
10,000 ``stat`` a poll). :class:`PollWatcher` has :class:`tui.seams.FileWatcher`'s interface
and costs what the feed needs instead:

* each watched run folder (the live runs and the ones on screen): a ``stat`` of each of its
  few files that change what the TUI shows (:data:`RUN_FILES`) every :data:`POLL_S`;
* each other watched folder (``runs/`` itself): a listing every :data:`LIST_S`, for runs that
  appear or vanish.

A change is reported as watchfiles does, ``(change, path)`` with 1 added, 2 modified,
3 deleted. Folders are never walked: finished runs are the feed's slow poll's business.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from runner.model import ID_RE

if TYPE_CHECKING:
    from tui.seams import StopEvent, WatchResult

ADDED, MODIFIED, DELETED = 1, 2, 3
POLL_S = 1.0  # live runs' files are looked at this often
LIST_S = 3.0  # the runs folder is listed this often (new runs from other hosts)
# The files of a run folder whose change the feed acts on.
RUN_FILES = (
    "state.json",
    "spec.json",
    "summary.json",
    "metrics.jsonl",
    "output.log",
    "gpu.json",
)

Stamp = tuple[int, int]  # (mtime_ns, size)


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _listing(path: str) -> frozenset[str] | None:
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return None


class PollWatcher:
    """Polls ``paths`` cheaply (see the module docstring); same interface as ``FileWatcher``.

    Args:
        paths: run folders (named like run ids) and other folders to list.
        poll_s: how often run folders' files are stat'ed.
        list_s: how often other folders are listed.
        monotonic: the clock (tests).
    """

    def __init__(
        self,
        paths: list[str],
        *,
        poll_s: float = POLL_S,
        list_s: float = LIST_S,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.poll_s = poll_s
        self.list_s = list_s
        self._clock = monotonic or time.monotonic
        self._runs: list[str] = []
        self._lists: list[str] = []
        for path in paths:
            (self._runs if ID_RE.fullmatch(os.path.basename(path)) else self._lists).append(path)
        self._stamps = {f: _stamp(f) for f in self._files()}
        self._names = {d: _listing(d) for d in self._lists}
        now = self._clock()
        self._poll_at = now + poll_s
        self._list_at = now + list_s
        self.polls = 0  # how many times files were looked at (tests, benchmarks)
        self._closed = threading.Event()

    def _files(self) -> list[str]:
        return [os.path.join(d, name) for d in self._runs for name in RUN_FILES]

    def poll(self, *, files: bool = True, listings: bool = True) -> set[tuple[int, str]]:
        """Look now; return what changed since the last look."""
        self.polls += 1
        changes: set[tuple[int, str]] = set()
        if files:
            for path, before in self._stamps.items():
                now = _stamp(path)
                if now != before:
                    self._stamps[path] = now
                    kind = ADDED if before is None else DELETED if now is None else MODIFIED
                    changes.add((kind, path))
        if listings:
            for folder, listed in self._names.items():
                names = _listing(folder)
                if names == listed:
                    continue
                self._names[folder] = names
                old: frozenset[str] = listed or frozenset()
                new: frozenset[str] = names or frozenset()
                changes.update((ADDED, os.path.join(folder, n)) for n in new - old)
                changes.update((DELETED, os.path.join(folder, n)) for n in old - new)
        return changes

    def check(self, now: float) -> set[tuple[int, str]]:
        """Do the polls due at ``now``; return what they found changed."""
        files, listings = now >= self._poll_at, now >= self._list_at
        if files:
            self._poll_at = now + self.poll_s
        if listings:
            self._list_at = now + self.list_s
        if not (files or listings):
            return set()
        return self.poll(files=files, listings=listings)

    def wait(
        self, debounce_ms: int, step_ms: int, timeout_ms: int, stop: StopEvent | None
    ) -> WatchResult:
        """Wait up to ``timeout_ms`` (0: forever) for a change; ``stop`` ends the wait early.

        Changes are only looked for when a poll is due, however often this is called, so a
        caller draining with 2 ms waits costs nothing. ``debounce_ms`` is not needed: a poll
        gathers everything that changed since the last.
        """
        start = self._clock()
        end = start + timeout_ms / 1000 if timeout_ms > 0 else None
        step = max(step_ms, 1) / 1000
        while not self._closed.is_set():
            now = self._clock()
            changes = self.check(now)
            if changes:
                return changes
            if stop is not None and stop.is_set():
                return "stop"
            now = self._clock()
            if end is not None and now >= end:
                return "timeout"
            due = min(self._poll_at, self._list_at, end if end is not None else float("inf"))
            pause = max(due - now, 0.001)
            waiter = getattr(stop, "wait", None)
            if waiter is not None:
                waiter(pause)  # a threading.Event: wakes at once when set
            else:
                time.sleep(min(pause, step))
        return "stop"

    def close(self) -> None:
        """Stop waiting."""
        self._closed.set()

    def __enter__(self) -> PollWatcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
