"""The Backprop TUI: wiring and message routing.

Data flows down: the producer thread posts :class:`~tui.messages.SnapshotReady`, the app hands
each widget its part. Intents flow up: keys, dialogs and the command palette become request
messages (``StopRequested``...), which the app passes to the actions object from a worker
thread. ``build_app`` is the one factory used by the CLI, the tests and the screenshot script.
"""

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from textual.app import ComposeResult, SystemCommand
from textual.containers import Horizontal, Vertical
from textual.driver import Driver
from textual.screen import Screen
from textual.widgets import ContentSwitcher

from runner.registry import Registry
from tui import compare_view, palette
from tui.actions import LocalActions, RunActions
from tui.alerts import FailureAlerts, driver_class
from tui.app_keys import KeyActionsApp
from tui.app_panes import TICK_S
from tui.app_requests import RequestsApp
from tui.bindings import BINDINGS as KEY_BINDINGS
from tui.feed.producer import Producer
from tui.feed.reader import GpuSource, HostSource
from tui.feed.snapshot import Interest, Snapshot
from tui.messages import SnapshotReady
from tui.widgets.compare_table import CompareTable
from tui.widgets.gpu_footer import GpuFooter
from tui.widgets.output_grid import OutputGrid
from tui.widgets.output_pane import OutputLog
from tui.widgets.plot_pane import MetricPlot
from tui.widgets.run_tree import RunTree


class BackpropApp(KeyActionsApp, RequestsApp):
    """Runs on the left, the selected run's output and plot on the right, GPUs at the bottom."""

    CSS_PATH = "app.tcss"
    TITLE = "Backprop"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [*KEY_BINDINGS]

    def __init__(
        self,
        registry: Registry,
        *,
        actions: RunActions,
        producer_factory: Callable[[Callable[[Snapshot], object]], Producer],
        clock: Callable[[], float] = time.time,
        readonly: bool = False,
        watch: bool = True,
        prefs_path: Path | None = None,
    ) -> None:
        super().__init__()
        self.registry = registry
        self.actions = actions
        self.clock = clock
        self.readonly = readonly
        self.watching = watch
        self.prefs_path = prefs_path
        self.snapshot = Snapshot(loading=True)
        self.mode = "single"
        self.metrics_chosen = ()
        self.producer = producer_factory(lambda snap: self.post_message(SnapshotReady(snap)))
        self._interest = Interest()
        self._plot_drawn_at = self._details_at = -1e9
        self._plot_dirty = False
        self._active = False  # whether a run is active (spinners turn, durations move on)
        self.alerts = FailureAlerts(self.bell, compare_view.terminal_signals(registry))

    # --- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield RunTree(clock=self.clock, id="tree")
            with ContentSwitcher(initial="single", id="panes"):
                with Vertical(id="single"):
                    yield OutputLog(id="output")
                    yield MetricPlot(id="plot")
                yield OutputGrid(id="grid")
                yield OutputLog(id="follow")
                with Vertical(id="compare"):
                    yield MetricPlot(id="compare-plot", empty="mark runs with Space, then press c")
                    yield CompareTable(id="compare-table")
        yield GpuFooter(id="footer")

    def on_mount(self) -> None:
        self.run_tree.border_title = "Runs"
        self.run_tree.empty_text = "loading runs…"
        self.query_one("#follow", OutputLog).border_title = "All running output"
        self.query_one("#grid", OutputGrid).border_title = "Running output"
        self.query_one("#compare-plot", MetricPlot).border_title = "Compare"
        self.run_tree.focus()
        self._ticker = self.set_interval(TICK_S, self._tick, pause=True)
        if self.watching:
            # After the first frame: listing thousands of runs holds the GIL much of the time
            # and would hold the first frame back.
            self.call_after_refresh(self.producer.start)
        else:
            self._apply(self.producer.scan())

    def get_driver_class(self) -> type[Driver]:
        # The platform's driver, made to hand itself to driver_ready (for the alerts' OSC 9).
        return driver_class(super().get_driver_class())

    def driver_ready(self, driver: Driver) -> None:
        """The terminal driver exists: failure alerts can write their escape sequences."""
        self.alerts.write = driver.write

    def on_unmount(self) -> None:
        self.producer.stop()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        return palette.system_commands(self, super().get_system_commands(screen))


def build_app(
    registry: Registry,
    *,
    actions: RunActions | None = None,
    gpu_source: GpuSource | None = None,
    host_source: HostSource | None = None,
    clock: Callable[[], float] | None = None,
    readonly: bool = False,
    watch: bool = True,
    prefs_path: Path | None = None,
) -> BackpropApp:
    """The app, wired: the CLI passes a registry, tests and screenshots pass fakes too.

    ``watch=False`` reads the registry synchronously (on mount and after each change the UI
    asks for) instead of starting the producer thread.
    """

    def producer(post: Callable[[Snapshot], object]) -> Producer:
        return Producer(registry, post, gpu_source=gpu_source, host_source=host_source)

    return BackpropApp(
        registry,
        actions=actions or LocalActions(registry),
        producer_factory=producer,
        clock=clock or time.time,
        readonly=readonly,
        watch=watch,
        prefs_path=prefs_path if prefs_path is not None else registry.root / "tui.json",
    )


def run_app(registry: Registry, readonly: bool = False) -> int:
    """Run the TUI in this terminal; on exit, say that the runs keep running."""
    app = build_app(registry, readonly=readonly)
    code = app.run()
    active = [r for r in app.snapshot.runs if r.status.active]
    if active:
        print(
            f"Backprop closed. {len(active)} run{'s' if len(active) != 1 else ''} "
            "keep running under their supervisors; run `backprop` to see them again."
        )
    else:
        print("Backprop closed.")
    return int(code or 0)
