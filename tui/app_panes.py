"""The app's data path down: snapshots in, each visible pane fed its part, the tick.

:class:`PanesApp` holds the app's state (the latest snapshot, the mode, what the producer
should read closely) and hands each widget what it draws; the key actions
(:mod:`tui.app_keys`) and the requests to the runner (:mod:`tui.app_requests`) build on it,
and :class:`tui.app.BackpropApp` wires them together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from rich.markup import escape
from textual.app import App
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import ContentSwitcher

from runner.model import Status
from runner.registry import Registry
from tui import compare_view, seed_view
from tui.actions import RunActions
from tui.alerts import FailureAlerts
from tui.bindings import CHANGING, hints
from tui.feed.producer import Producer
from tui.feed.snapshot import Interest, RunRow, Snapshot
from tui.messages import RunHighlighted, SelectionChanged, SnapshotReady, VisibleRunsChanged
from tui.widgets.gpu_footer import GpuFooter
from tui.widgets.output_grid import OutputGrid
from tui.widgets.output_pane import OutputLog
from tui.widgets.plot_pane import Curve, MetricPlot
from tui.widgets.run_tree import RunTree

PLOT_EVERY_S = 1.0
# Spinners turn and a waiting plot is drawn on this tick; the timer is paused when nothing
# moves (no active run, no plot waiting): idle costs nothing.
TICK_S = 0.5
DETAILS_EVERY_S = 1.0
# What the right-hand side shows: each is the id of a pane in the app's ContentSwitcher.
Mode = Literal["single", "grid", "follow", "compare"]


def set_title(widget: Widget, title: str, *, sub: bool = False) -> None:
    """Set a border (sub)title only when it changes: every assignment repaints the widget."""
    key = "_bp_subtitle" if sub else "_bp_title"
    if getattr(widget, key, None) != title:
        setattr(widget, key, title)
        if sub:
            widget.border_subtitle = title
        else:
            widget.border_title = title


class PanesApp(App[int]):
    """The state every part of the app shares, and the snapshot's way down to the widgets."""

    registry: Registry
    actions: RunActions
    clock: Callable[[], float]
    readonly: bool
    watching: bool
    prefs_path: Path | None
    snapshot: Snapshot
    mode: Mode
    metrics_chosen: tuple[str, ...]
    producer: Producer
    alerts: FailureAlerts
    _interest: Interest
    _plot_drawn_at: float
    _details_at: float
    _plot_dirty: bool
    _active: bool  # whether a run is active (spinners turn, durations move on)
    _ticker: Timer

    @property
    def run_tree(self) -> RunTree:
        return self.query_one(RunTree)

    # --- data in ------------------------------------------------------------------------------

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if self.is_running:  # not while shutting down: the widgets are being removed
            self._apply(message.snapshot)

    def _apply(self, snap: Snapshot) -> None:
        # Only what changed since the last snapshot is looked at (the registry may hold ten
        # thousand finished runs; a live one changes ten times a second).
        changed = snap.changes_since(self.snapshot)
        self.snapshot = snap
        tree = self.run_tree
        tree.empty_text = self._empty_text(snap)
        tree.update_rows(snap.runs, snap.gpu, changed)
        self.alerts.check(snap.runs, changed=changed)
        live = snap.live_rows
        running = sum(1 for r in live if r.status is Status.RUNNING)
        self._active = bool(live)
        title = f"Runs {len(snap.runs)}" + (f" · {running} running" if running else "")
        set_title(tree, title + (" · read-only" if self.readonly else ""))
        set_title(tree, f"filter: {escape(tree.filter_text)}" if tree.filter_text else "", sub=True)
        self.query_one(GpuFooter).update_data(
            snap.gpu, snap.host, self._gpu_rows(snap), self.hints()
        )
        self._plot_dirty = True
        self._feed_panes()
        self._ticker.resume()

    def _gpu_rows(self, snap: Snapshot) -> tuple[RunRow, ...]:
        """The rows the footer may name: the live runs, and any run NVML sees on a GPU."""
        seen = {p.run_id for g in snap.gpu.gpus for p in g.processes if p.run_id}
        rows = self.run_tree.rows
        ended = [r for i in seen if (r := rows.get(i)) is not None and not r.status.active]
        if not ended:
            return snap.live_rows
        return tuple(
            sorted((*snap.live_rows, *ended), key=lambda r: (len(r.id), r.id), reverse=True)
        )

    def _empty_text(self, snap: Snapshot) -> str:
        if snap.error:
            return snap.error
        if self.run_tree.filter_text:
            return "no run matches the filter (/ to change it)"
        if self.readonly:
            return f"no runs in {self.registry.root}"
        return "no runs yet: press r to start one"

    def row(self, run_id: str | None) -> RunRow | None:
        """The latest row of ``run_id``."""
        return self.run_tree.rows.get(run_id) if run_id else None

    def _feed_panes(self, *, force: bool = False) -> None:
        """Feed the visible panes: the output's new lines, the plot at most once a second.

        The producer paces the snapshots (a busy run's output comes twice a second).
        """
        self._feed_output()
        if (
            force
            or not self.watching
            or time.monotonic() - self._plot_drawn_at >= PLOT_EVERY_S - TICK_S / 2
        ):
            self._draw_plot()

    def _feed_output(self) -> None:
        snap, run_id = self.snapshot, self.run_tree.current_run
        if self.mode == "single":
            output = self.query_one("#output", OutputLog)
            row = self.row(run_id)
            set_title(output, f"Output · {escape(row.name)}" if row else "Output")
            placeholder = "no output yet" if run_id in snap.outputs else "reading output…"
            output.show(run_id, snap.outputs.get(run_id) if run_id else None, placeholder)
        elif self.mode == "grid":
            self.query_one(OutputGrid).show(self._grid_runs(), snap.outputs)
        elif self.mode == "follow":
            self.query_one("#follow", OutputLog).show("*", snap.follow, "no running run")

    def _draw_plot(self) -> None:
        self._plot_dirty = False
        self._plot_drawn_at = time.monotonic()
        snap = self.snapshot
        if self.mode == "single":
            run_id = self.run_tree.current_run
            row, series = self.row(run_id), snap.series.get(run_id or "")
            plot = self.query_one("#plot", MetricPlot)
            if row is None or series is None:
                set_title(plot, "Metrics")
                plot.show_curves([], empty="no metrics yet" if row else "no run selected")
                return
            names = [m for m in self.metrics_chosen if m in series.metrics] or [
                m for m in (row.primary_metric,) if m in series.metrics
            ]
            names = names or list(series.names[:1])
            curves = [Curve(m, *series.metrics[m]) for m in names]
            set_title(plot, f"{escape(', '.join(names) or 'metrics')} · {escape(row.name)}")
            plot.show_curves(curves, empty="no metrics yet")
        elif self.mode == "compare":
            rows = [r for i in sorted(self.run_tree.selected, reverse=True) if (r := self.row(i))]
            curves = seed_view.compare_curves(
                rows, snap.series, {r.id: r.primary_metric for r in rows}
            )
            self.query_one("#compare-plot", MetricPlot).show_curves(curves)
            compare_view.refresh_table(self, every_s=compare_view.REFRESH_EVERY_S)

    def _grid_runs(self) -> list[tuple[str, str]]:
        limit = 6 if self.size.height >= 40 else 4
        live = [r for r in self.snapshot.live_rows if r.status in (Status.RUNNING, Status.PAUSED)]
        marked = [r for r in live if r.id in self.run_tree.selected]
        return [(r.id, r.name) for r in (marked or live)[:limit]]

    def _tick(self) -> None:
        """Turn spinners, draw a plot that waited, move durations on; pause when nothing moves."""
        if not self.is_running:  # shutting down: the widgets are being removed
            return
        self.run_tree.tick()
        if self._plot_dirty:
            self._feed_panes()
        now = time.monotonic()
        if now - self._details_at >= DETAILS_EVERY_S:
            self._details_at = now
            self.run_tree.refresh_details(active_only=True)
        if not (self._active or self._plot_dirty):
            self._ticker.pause()

    def _update_interest(self) -> None:
        tree = self.run_tree
        focused = set(tree.selected)
        if tree.current_run:
            focused.add(tree.current_run)
        if self.mode == "grid":
            focused.update(run_id for run_id, _ in self._grid_runs())
        interest = Interest(tree.visible_ids(), frozenset(focused))
        if interest != self._interest:
            self._interest = interest
            self.producer.set_interest(interest)
            if not self.watching:
                self._refresh_now()

    def _refresh_now(self) -> None:
        """Without a producer thread (tests, screenshots): do the producer's work here."""
        snap = self.producer.tick(force=True)
        if snap is not None:
            self._apply(snap)

    def on_run_highlighted(self, message: RunHighlighted) -> None:
        self._update_interest()
        self._feed_panes(force=True)

    def on_selection_changed(self, message: SelectionChanged) -> None:
        self._update_interest()
        if self.mode == "compare":
            self._draw_plot()
            compare_view.refresh_table(self)

    def on_visible_runs_changed(self, message: VisibleRunsChanged) -> None:
        self._update_interest()

    def _set_mode(self, mode: Mode) -> None:
        self.mode = mode
        self.query_one(ContentSwitcher).current = mode
        self._update_interest()
        self._feed_panes(force=True)

    # --- what the keys may do -----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.readonly and action in CHANGING)

    def hints(self) -> str:
        """The key hints for the footer (only the keys that work here)."""
        return hints(self.readonly)

    def _refuse(self) -> bool:
        if self.readonly:
            self.notify("Read-only: nothing can be changed here.", severity="warning")
        return self.readonly
