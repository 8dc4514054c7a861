"""The one background producer: file events in, immutable snapshots out.

A single thread watches the registry with watchfiles (the ``runs/`` folder itself plus the
folders of active runs and of runs the UI is looking at; never one watch per finished run),
tails ``output.log`` and ``metrics.jsonl`` by byte offset, probes the GPUs and the host, and
hands each new :class:`~tui.feed.snapshot.Snapshot` to ``post`` (the app's thread-safe
``post_message``). A slow poll backs the watcher up: it catches supervisors that died without
writing anything, runs resumed from elsewhere, and file systems where events never arrive.
Widgets never read files; this module never touches a widget.

Cost: file events only mark what changed. A run whose files grow in batch after batch of
events is busy: its files are read twice a second (all busy runs in the same round, so the
tree and the output pane move together); a change to a quiet run is read at once. Snapshots
go out at most once per ``min_emit_s``. While files keep changing the thread wakes ten times
a second; with no active run it sleeps until the slow poll, seconds away.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from runner.backends.where import ENGINE, INTENT_NAME
from runner.model import ID_RE
from runner.registry import METRICS, OUTPUT, SUMMARY, Registry
from tui.feed.reader import BUSY_READ_S, VIEW_EVERY_S, FeedReader
from tui.feed.snapshot import Interest, Snapshot

if TYPE_CHECKING:
    from tui.feed.poll_watcher import PollWatcher
    from tui.seams import FileWatcher

# A run is busy once its files grew in this many batches of events running (batches come
# ten times a second at most while files change), each at most BUSY_GAP_S after the one
# before: a run that writes every few tenths of a second, with nothing else happening in
# between, is news every time, never busy.
BUSY_BATCHES = 3
BUSY_GAP_S = 0.15
# watchfiles wakes every "step" to look for events: often while runs write (latency), seldom
# when nothing runs (each wake-up costs; 5 ms steps alone were 1 % of a core).
ACTIVE_STEP_MS = 10
IDLE_STEP_MS = 100
DEBOUNCE_MS = 100
DRAIN_STEP_MS = 2  # taking the events gathered while the thread slept
# File names that change a run's listing entry.
_VIEW_FILES = frozenset({"state.json", "spec.json", "summary.json", ENGINE})
# Names of files being written or removed by others (atomic replace, trash, import).
_TEMP_PREFIXES = (".tmp-", ".trash-", ".import-")


def watcher_for(registry: Registry) -> type[FileWatcher] | type[PollWatcher]:
    """The feed's watcher: inotify, or targeted polling on a network file system.

    inotify never hears of another host's writes (see :mod:`runner.netfs`).
    """
    from runner.netfs import on_network_fs

    if on_network_fs(registry.root):
        from tui.feed.poll_watcher import PollWatcher

        return PollWatcher
    from tui.seams import FileWatcher

    return FileWatcher


class Producer(FeedReader):
    """Turns the registry into snapshots. ``scan`` is synchronous; ``start`` runs a thread.

    Args:
        registry: the registry to show.
        post: called with each new snapshot (from the producer thread once started).
        gpu_source: returns the GPUs now (default: NVML through ``governor.probes``).
        host_source: returns the host now (default: psutil through ``governor.probes``).
        poll_s: how often active runs are re-read even without events (supervisor deaths
            write nothing).
        slow_poll_s: how often finished runs are checked for a change made elsewhere, and
            the run list re-read (between, runs come and go as events on the runs folder).
        gpu_every_s: GPU and host refresh period while a run is active.
        idle_probe_s: GPU and host refresh period while no run is active.
        min_emit_s: at most one snapshot per this many seconds.
    """

    # --- control (any thread) -------------------------------------------------------------

    def set_interest(self, interest: Interest) -> None:
        """Tell the producer which runs the UI shows (thread-safe; takes effect at once)."""
        with self._interest_lock:
            if interest == self._interest:
                return
            self._interest = interest
            self._interest_changed = True
        self._wake.set()

    def poke(self) -> None:
        """Re-read the active runs now (after an action, for example)."""
        self._last_poll = -1e9
        self._relist = True
        self._wake.set()

    def start(self) -> None:
        """Run the watch loop in a daemon thread (after one synchronous scan)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="backprop-producer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and wait for it (briefly)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # --- the loop (producer thread) ---------------------------------------------------------

    def scan(self) -> Snapshot:
        """List every run, read what the UI needs, probe the machine; return a snapshot."""
        now = self.monotonic()
        try:
            views = self.registry.list_runs()
            self.error = None
        except OSError as exc:
            views, self.error = [], f"cannot read {self.registry.runs_dir}: {exc.strerror}"
        self._views = {v.id: v for v in views}
        self._active = {v.id for v in views if v.status.active}
        self._order = [v.id for v in views]
        self._rows.clear()
        self._delta = None
        self._probe(now)
        self._last_poll = self._last_slow = now
        self._apply_interest()
        self._process_dirty(now)
        for run_id in self._order:
            if run_id not in self._rows:
                self._rebuild(run_id)
        self._changed = True
        return self._snapshot()

    def tick(self, *, force: bool = False) -> Snapshot | None:
        """Do whatever is due; return a snapshot if something changed (and one is due).

        Files marked by events are read only when a snapshot is due: at most once per
        ``min_emit_s``, unless ``force``.
        """
        now = self.monotonic()
        if now - self._last_poll >= (self.poll_s if self._active else self.slow_poll_s):
            self._last_poll = now
            for run_id in self._tailed_ids():
                self._dirty_metrics.add(run_id)
                self._dirty_outputs.add(run_id)
            self._dirty_views.update(self._active)
        if now - self._last_slow >= self.slow_poll_s:
            self._last_slow = now
            # New and removed runs arrive as events on the watched runs folder; listing it
            # (10,000 names: ~20 ms) only catches a missed event, so not every ``poll_s``.
            self._relist = True
            self._check_finished()
        if now - self._last_gpu >= (self.gpu_every_s if self._active else self.idle_probe_s):
            self._probe(now)
        if not force and now - self._last_emit < self.min_emit_s:
            return None  # the watch loop comes back when it is due (see ``next_due``)
        if self._relist:
            self._relist = False
            self._sync_ids()
        if self._interest_changed:
            self._apply_interest()
        self._process_dirty(now)
        if self._changed:
            return self._snapshot()
        return None

    def next_due(self, now: float) -> float:
        """When ``tick`` next has something to do (a ``monotonic`` time, maybe in the past)."""
        due = min(
            self._last_poll + (self.poll_s if self._active else self.slow_poll_s),
            self._last_slow + self.slow_poll_s,
            self._last_gpu + (self.gpu_every_s if self._active else self.idle_probe_s),
        )
        emit_at = self._last_emit + self.min_emit_s
        if self._changed or self._relist or self._interest_changed:
            due = min(due, emit_at)
        for run_id in self._dirty_metrics | self._dirty_outputs:
            read_at = self._read_at.get(run_id, -1e9) + BUSY_READ_S if run_id in self._busy else 0
            due = min(due, max(emit_at, read_at))
        if self._dirty_views:
            loaded = min(self._view_loaded_at.get(i, -1e9) for i in self._dirty_views)
            due = min(due, max(emit_at, loaded + VIEW_EVERY_S))
        return due

    def _run(self) -> None:
        self._emit(self.scan())
        watcher_class = watcher_for(self.registry)
        while not self._stop.is_set():
            paths = self._watch_paths()
            try:
                with watcher_class(paths) as watcher:
                    self._watch(watcher, paths)
            except ImportError:  # pragma: no cover - a dependency, but never fatal
                self._poll_forever()
                return
            except (OSError, RuntimeError):
                # A folder vanished under the watcher, or the watch limit is reached: poll
                # for a moment, then try watching again.
                self._stop.wait(0.5)
            self._emit(self.tick())

    def _watch(self, watcher: FileWatcher | PollWatcher, paths: list[str]) -> None:
        """Wait for events or for the next due time, then tick; return when paths change.

        While files keep changing ("hot"), the thread sleeps ``min_emit_s`` (or until
        something is due) and then takes every event gathered meanwhile in one short wait:
        ten wake-ups a second however much is written. After a quiet spell it blocks in the
        watcher until the first event, which is then handled at once.
        """
        hot = False
        while not self._stop.is_set():
            self._wake.clear()  # flags set before this are seen by ``next_due``
            now = self.monotonic()
            if hot:
                pause = min(self._drained_at + self.min_emit_s, self.next_due(now)) - now
                if pause > 0:
                    self._wake.wait(pause)
                changes = watcher.wait(DEBOUNCE_MS, DRAIN_STEP_MS, DRAIN_STEP_MS, None)
            else:
                wait_ms = max(1, int((self.next_due(now) - now) * 1000))  # 0 means forever
                step_ms = ACTIVE_STEP_MS if self._active else IDLE_STEP_MS
                changes = watcher.wait(DEBOUNCE_MS, step_ms, wait_ms, self._wake)
            self._drained_at = self.monotonic()
            hot = isinstance(changes, set)
            if isinstance(changes, set):
                self.handle_changes(path for _, path in changes)
            self._emit(self.tick())
            if self._watch_paths() != paths:
                return

    def _poll_forever(self) -> None:
        while not self._stop.wait(0.25):
            self._relist = True
            for run_id in self._tailed_ids():
                self._dirty_metrics.add(run_id)
                self._dirty_outputs.add(run_id)
            self._emit(self.tick())

    def _emit(self, snapshot: Snapshot | None) -> None:
        if snapshot is not None and not self._stop.is_set():
            self.post(snapshot)

    def _watch_paths(self) -> list[str]:
        """What to watch; recomputed (with a ``stat`` per folder) only when it may change."""
        ids = tuple(sorted(self._tailed_ids()))
        if self._watched is not None and self._watched[0] == ids:
            return self._watched[1]
        paths = []
        if self.registry.runs_dir.is_dir():
            paths.append(str(self.registry.runs_dir))
        elif self.registry.root.is_dir():
            paths.append(str(self.registry.root))
        for run_id in ids:
            folder = self.registry.runs_dir / run_id
            if folder.is_dir():
                paths.append(str(folder))
        self._watched = (ids, paths or [str(Path.cwd())])
        return self._watched[1]

    def handle_changes(self, paths: Iterable[str]) -> None:
        """Mark what a batch of file events touched (names from watchfiles)."""
        self._batch += 1
        runs_dir = str(self.registry.runs_dir)
        for path in paths:
            parent, name = os.path.split(path)
            if name.startswith(_TEMP_PREFIXES):
                continue
            if parent == runs_dir or name == "runs":
                self._relist = True
                continue
            grand, run_id = os.path.split(parent)
            if grand != runs_dir or not ID_RE.fullmatch(run_id):
                continue
            if name == OUTPUT:
                self._dirty_outputs.add(run_id)
                self._written(run_id)
            elif name == METRICS:
                self._dirty_metrics.add(run_id)
                self._written(run_id)
            elif name in _VIEW_FILES or INTENT_NAME.match(name):
                self._dirty_views.add(run_id)
                if name != SUMMARY:  # lifecycle, submission, the engine's word: reload at once
                    self._view_loaded_at.pop(run_id, None)

    def _written(self, run_id: str) -> None:
        """A run's output or metrics grew: busy once they grew in BUSY_BATCHES batches running."""
        now = self.monotonic()
        last, streak, at = self._written_in.get(run_id, (-1, 0, -1e9))
        if last != self._batch:
            running = last == self._batch - 1 and now - at <= BUSY_GAP_S
            streak = streak + 1 if running else 1
            self._written_in[run_id] = (self._batch, streak, now)
            if streak >= BUSY_BATCHES:
                self._busy.add(run_id)
            else:
                self._busy.discard(run_id)
