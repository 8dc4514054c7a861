"""What the feed knows about each run, and the snapshot built from what changed.

:class:`FeedReader` holds the runs' views, rows and tails, reads the files the producer
marked as changed, and assembles each :class:`~tui.feed.snapshot.Snapshot` by patching only
the rows that changed (the registry may hold ten thousand finished runs). The producer
(:mod:`tui.feed.producer`) decides when: it watches the files and paces the reads.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from types import MappingProxyType

from governor.probes import GpuSnapshot, HostInfo, probe_gpus, probe_host
from runner.backends.where import ENGINE, where
from runner.model import Status
from runner.registry import METRICS, OUTPUT, STATE, Registry, RunNotFound, RunView
from runner.textsafe import safe_label
from tui.feed.rows import primary_metric, row_from_view, with_digest
from tui.feed.snapshot import Interest, OutputView, RunRow, Snapshot
from tui.feed.tails import MetricDigest, MetricTail, OutputTail

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
FOLLOW_LINES = 2000
# Colours (SGR) for the run names in the follow-all view; our own, so safe.
_FOLLOW_COLOURS = ("36", "33", "35", "32", "34", "31")


def _safe_host(source: HostSource) -> HostInfo | None:
    try:
        return source()
    except Exception:  # a probe must never take the UI down
        return None


class FeedReader:
    """The runs' state and its reading; :class:`~tui.feed.producer.Producer` drives it.

    Args: see :class:`~tui.feed.producer.Producer`.
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
            folder = self.registry.runs_dir / run_id
            try:
                stamp = os.stat(folder / STATE).st_mtime_ns
            except OSError:
                stamp = 0
            row = self._rows.get(run_id)
            if row is not None and row.backend != "local":  # the engine may speak up later
                with contextlib.suppress(OSError):
                    stamp += os.stat(folder / ENGINE).st_mtime_ns
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
            remote = where(self.registry, run_id) if view.backend != "local" else None
            base = self._bases[run_id] = (view, row_from_view(view, where=remote), metric)
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
