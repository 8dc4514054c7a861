"""The one background producer: file events in, immutable snapshots out.

A single thread watches the registry with watchfiles (the ``runs/`` folder itself plus the
folders of active runs and of runs the UI is looking at; never one watch per finished run),
tails ``output.log`` and ``metrics.jsonl`` by byte offset, probes the GPUs and the host, and
hands each new :class:`~tui.data.Snapshot` to ``post`` (the app's thread-safe
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

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from governor.probes import GpuSnapshot, HostInfo, probe_gpus, probe_host
from runner.model import ID_RE, Status
from runner.registry import METRICS, OUTPUT, STATE, Registry, RunNotFound, RunView
from runner.textsafe import safe_label
from tui.data import (
    Interest,
    MetricDigest,
    MetricTail,
    OutputTail,
    OutputView,
    RunRow,
    Snapshot,
    primary_metric,
    row_from_view,
    with_digest,
)

if TYPE_CHECKING:
    from tui.seams import FileWatcher

GpuSource = Callable[[], GpuSnapshot]
HostSource = Callable[[], "HostInfo | None"]

SPARK_WIDTH = 12
# A run's listing entry is re-read at most this often (summary.json is rewritten every
# second; the metric tail has the latest step and loss); a state.json change at once.
VIEW_EVERY_S = 2.0
# A busy run's output and metrics are read at most this often (the tree and the output pane
# move twice a second); runs nearly due are read in the same round.
BUSY_READ_S = 0.5
BUSY_SLACK_S = 0.25
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
FOLLOW_LINES = 2000
# File names that change a run's listing entry.
_VIEW_FILES = frozenset({"state.json", "spec.json", "summary.json"})
# Names of files being written or removed by others (atomic replace, trash, import).
_TEMP_PREFIXES = (".tmp-", ".trash-", ".import-")
# Colours (SGR) for the run names in the follow-all view; our own, so safe.
_FOLLOW_COLOURS = ("36", "33", "35", "32", "34", "31")


def _safe_host(source: HostSource) -> HostInfo | None:
    try:
        return source()
    except Exception:  # a probe must never take the UI down
        return None


class Producer:
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

    def __init__(
        self,
        registry: Registry,
        post: Callable[[Snapshot], object],
        *,
        gpu_source: GpuSource | None = None,
        host_source: HostSource | None = None,
        poll_s: float = 2.0,
        slow_poll_s: float = 15.0,
        gpu_every_s: float = 1.5,
        idle_probe_s: float = 10.0,
        min_emit_s: float = 0.1,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.post = post
        self.gpu_source = gpu_source or probe_gpus
        self.host_source = host_source or probe_host
        self.poll_s = poll_s
        self.slow_poll_s = slow_poll_s
        self.gpu_every_s = gpu_every_s
        self.idle_probe_s = idle_probe_s
        self.min_emit_s = min_emit_s
        self.monotonic = monotonic
        self._views: dict[str, RunView] = {}
        self._active: set[str] = set()  # ids of the views whose status is active
        self._rows: dict[str, RunRow] = {}
        # Per run: the view, its row without metrics, its primary metric (the view is re-read
        # seldom, the metrics often: only the metric fields of the row are redone then).
        self._bases: dict[str, tuple[RunView, RunRow, str]] = {}
        self._order: list[str] = []
        # The last snapshot's runs, and what changed since: a snapshot patches the rows that
        # changed instead of walking every registered run (``_delta`` None: rebuild them all).
        self._runs: list[RunRow] = []
        self._index: dict[str, int] = {}
        self._live: set[str] = set()
        self._delta: dict[str, RunRow] | None = None
        self._metric_tails: dict[str, MetricTail] = {}
        self._output_tails: dict[str, OutputTail] = {}
        self._digests: dict[str, tuple[int, MetricDigest]] = {}  # finished runs: (size, digest)
        self._state_stamps: dict[str, int] = {}
        self._follow: deque[str] = deque(maxlen=FOLLOW_LINES)
        self._follow_total = 0
        self._gpu = GpuSnapshot(error="probing")
        self._gpu_stopped = False
        self._host: HostInfo | None = None
        self._seq = 0
        self._interest = Interest()
        self._interest_lock = threading.Lock()
        self._interest_changed = True
        self._relist = False
        self._dirty_views: set[str] = set()
        self._dirty_metrics: set[str] = set()
        self._dirty_outputs: set[str] = set()
        self._view_loaded_at: dict[str, float] = {}
        self._batch = 0  # event batches seen
        # run id -> (last batch its files grew in, how many batches running they grew in)
        self._written_in: dict[str, tuple[int, int, float]] = {}  # batch, streak, when
        self._drained_at = -1e9
        self._busy: set[str] = set()  # runs whose files grew in BUSY_BATCHES batches running
        self._read_at: dict[str, float] = {}  # run id -> when its tails were last read
        self._changed = True
        self._last_emit = -1e9
        self._last_poll = self._last_slow = self._last_gpu = -1e9
        self._watched: tuple[tuple[str, ...], list[str]] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

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
        from tui.seams import FileWatcher

        while not self._stop.is_set():
            paths = self._watch_paths()
            try:
                with FileWatcher(paths) as watcher:
                    self._watch(watcher, paths)
            except ImportError:  # pragma: no cover - a dependency, but never fatal
                self._poll_forever()
                return
            except (OSError, RuntimeError):
                # A folder vanished under the watcher, or the watch limit is reached: poll
                # for a moment, then try watching again.
                self._stop.wait(0.5)
            self._emit(self.tick())

    def _watch(self, watcher: FileWatcher, paths: list[str]) -> None:
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
            elif name in _VIEW_FILES:
                self._dirty_views.add(run_id)
                if name == STATE:
                    self._view_loaded_at.pop(run_id, None)  # lifecycle: reload at once

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

    def _deferred(self, run_id: str, now: float) -> bool:
        """Whether reading a busy run's files waits (it was read less than BUSY_READ_S ago)."""
        return run_id in self._busy and now < self._read_at.get(run_id, -1e9) + BUSY_READ_S

    # --- state changes ------------------------------------------------------------------

    def _probe(self, now: float) -> None:
        self._last_gpu = now
        if not self._gpu_stopped:
            try:
                gpu = self.gpu_source()
            except Exception as exc:  # a probe must never take the UI down
                gpu = GpuSnapshot(error=f"probe failed: {exc}")
            if not gpu.gpus and gpu.error:
                self._gpu_stopped = True  # no driver: say so once, stop asking
            if gpu != self._gpu:
                self._gpu = gpu
                self._changed = True
        host = _safe_host(self.host_source)
        if host != self._host:
            self._host = host
            self._changed = True

    def _tailed_ids(self) -> set[str]:
        with self._interest_lock:
            focused = self._interest.focused
        return self._active | (focused & self._views.keys())

    def _apply_interest(self) -> None:
        with self._interest_lock:
            interest, self._interest_changed = self._interest, False
        self._changed = True  # the snapshot's series follow the focused runs
        tailed = self._tailed_ids()
        for run_id in tailed:
            if run_id not in self._metric_tails:
                folder = self.registry.runs_dir / run_id
                self._metric_tails[run_id] = MetricTail(folder / METRICS)
                self._output_tails[run_id] = OutputTail(folder / OUTPUT)
                self._dirty_metrics.add(run_id)
                self._dirty_outputs.add(run_id)
        for run_id in list(self._metric_tails):
            if run_id not in tailed:
                del self._metric_tails[run_id]
                self._output_tails.pop(run_id, None)
                self._changed = True
        for run_id in interest.visible & self._views.keys():
            if run_id not in tailed:
                self._dirty_metrics.add(run_id)  # a one-off read for the sparkline

    def _sync_ids(self) -> None:
        self._watched = None  # the runs folder itself may have appeared
        try:
            ids = set(self.registry.ids())
        except OSError:
            return
        known = set(self._views)
        for run_id in known - ids:
            self._forget(run_id)
        for run_id in ids - known:
            self._dirty_views.add(run_id)
            self._view_loaded_at.pop(run_id, None)

    def _forget(self, run_id: str) -> None:
        self._views.pop(run_id, None)
        self._active.discard(run_id)
        self._rows.pop(run_id, None)
        self._bases.pop(run_id, None)
        self._metric_tails.pop(run_id, None)
        self._output_tails.pop(run_id, None)
        self._digests.pop(run_id, None)
        self._written_in.pop(run_id, None)
        self._busy.discard(run_id)
        self._read_at.pop(run_id, None)
        self._state_stamps.pop(run_id, None)
        with contextlib.suppress(ValueError):
            self._order.remove(run_id)
        self._changed = True
        self._delta = None

    def _check_finished(self) -> None:
        """Catch changes made to finished runs from elsewhere (they are not watched)."""
        for run_id, view in self._views.items():
            if view.status.active:
                continue
            try:
                stamp = os.stat(self.registry.runs_dir / run_id / STATE).st_mtime_ns
            except OSError:
                stamp = 0
            if self._state_stamps.setdefault(run_id, stamp) != stamp:
                self._state_stamps[run_id] = stamp
                self._dirty_views.add(run_id)
                self._view_loaded_at.pop(run_id, None)

    def _process_dirty(self, now: float) -> None:
        rebuild: set[str] = set()
        for run_id in sorted(self._dirty_views):
            # summary.json is rewritten often; the metric tail already has the latest point,
            # so a run's listing entry is re-read at most every VIEW_EVERY_S.
            if now - self._view_loaded_at.get(run_id, -1e9) < VIEW_EVERY_S:
                continue
            self._dirty_views.discard(run_id)
            self._view_loaded_at[run_id] = now
            try:
                view = self.registry.load(run_id)
            except (RunNotFound, ValueError):
                self._forget(run_id)
                continue
            was_active = run_id in self._active
            self._views[run_id] = view
            if view.status.active:
                self._active.add(run_id)
            else:
                self._active.discard(run_id)
            if run_id not in self._order:
                self._insert(run_id)
            if view.status.active != was_active:
                self._interest_changed = True
            rebuild.add(run_id)
        if self._interest_changed:
            self._apply_interest()
        # A busy run (it writes in every batch of events) is read twice a second, all busy
        # runs in the same round (those nearly due join the one that is due); a run that
        # wrote after a quiet spell is read at once.
        due = [i for i in self._dirty_metrics | self._dirty_outputs if not self._deferred(i, now)]
        if due:
            late = now + BUSY_SLACK_S
            read = {
                i for i in self._dirty_metrics | self._dirty_outputs if not self._deferred(i, late)
            }
            for run_id in read:
                self._read_at[run_id] = now
        else:
            read = set()
        for run_id in sorted(self._dirty_metrics & read):
            self._dirty_metrics.discard(run_id)
            tail = self._metric_tails.get(run_id)
            if tail is not None:
                if tail.poll():
                    rebuild.add(run_id)
            elif run_id in self._views and self._read_digest(run_id):
                rebuild.add(run_id)
        for run_id in sorted(self._dirty_outputs & read):
            self._dirty_outputs.discard(run_id)
            out = self._output_tails.get(run_id)
            if out is not None and (new := out.poll()):
                self._changed = True
                live = self._views.get(run_id)
                if live is not None and live.status is Status.RUNNING:
                    self._add_follow(run_id, new)
        for run_id in rebuild:
            if run_id in self._views:
                self._rebuild(run_id)

    def _insert(self, run_id: str) -> None:
        key = (len(run_id), run_id)
        pos = 0
        while pos < len(self._order) and (len(self._order[pos]), self._order[pos]) > key:
            pos += 1
        self._order.insert(pos, run_id)
        self._delta = None

    def _read_digest(self, run_id: str) -> bool:
        """A finished run on screen: read its history once for the sparkline, keep the digest."""
        path = self.registry.runs_dir / run_id / METRICS
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1
        cached = self._digests.get(run_id)
        if cached is not None and cached[0] == size:
            return False
        digest = MetricDigest()
        if size > 0:
            tail = MetricTail(path)
            tail.poll()
            digest = tail.digest(primary_metric(self._views[run_id]), SPARK_WIDTH)
        self._digests[run_id] = (size, digest)
        return True

    def _rebuild(self, run_id: str) -> None:
        view = self._views[run_id]
        base = self._bases.get(run_id)
        if base is None or base[0] is not view:  # the view was re-read: build its row again
            metric = primary_metric(view)
            base = self._bases[run_id] = (view, row_from_view(view), metric)
            view.forget_decoded()  # the row has what the TUI shows
        _, row, metric = base
        tail = self._metric_tails.get(run_id)
        if tail is not None:
            row = with_digest(row, tail.digest(metric, SPARK_WIDTH), metric)
        elif (cached := self._digests.get(run_id)) is not None:
            row = with_digest(row, cached[1], metric)
        if row != self._rows.get(run_id):
            self._rows[run_id] = row
            self._changed = True
            if self._delta is not None:
                if run_id in self._index:
                    self._delta[run_id] = row
                else:  # a run listed without a row until now: its place is new
                    self._delta = None

    def _add_follow(self, run_id: str, lines: list[str]) -> None:
        view = self._views.get(run_id)
        name = safe_label(view.name, 24) if view else run_id
        colour = _FOLLOW_COLOURS[int(run_id) % len(_FOLLOW_COLOURS)]
        prefix = f"\x1b[{colour}m{name[:24]}\x1b[0m │ "
        self._follow.extend(prefix + line for line in lines)
        self._follow_total += len(lines)

    def _snapshot(self) -> Snapshot:
        self._seq += 1
        self._changed = False
        self._last_emit = self.monotonic()
        with self._interest_lock:
            focused = self._interest.focused
        outputs = {i: t.view() for i, t in self._output_tails.items()}
        series = {i: t.view() for i, t in self._metric_tails.items() if i in focused}
        delta, self._delta = self._delta, {}
        if delta is None:
            self._runs = [self._rows[i] for i in self._order if i in self._rows]
            self._index = {r.id: k for k, r in enumerate(self._runs)}
            self._live = {r.id for r in self._runs if r.status.active}
        else:
            for run_id, row in delta.items():
                self._runs[self._index[run_id]] = row
                if row.status.active:
                    self._live.add(run_id)
                else:
                    self._live.discard(run_id)
        live = sorted(self._live, key=self._index.__getitem__)
        return Snapshot(
            seq=self._seq,
            runs=tuple(self._runs),
            changed=None if delta is None else tuple(delta.values()),
            live=tuple(self._runs[self._index[i]] for i in live),
            gpu=self._gpu,
            host=self._host,
            outputs=MappingProxyType(outputs),
            series=MappingProxyType(series),
            follow=OutputView(tuple(self._follow), self._follow_total, 0),
            error=self.error,
        )


def frozen_output(lines: Iterable[str]) -> OutputView:
    """An :class:`OutputView` of fixed lines (tests and screenshots)."""
    items = tuple(lines)
    return OutputView(items, len(items), 0)
