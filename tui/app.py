"""The Backprop TUI: wiring and message routing.

Data flows down: the producer thread posts :class:`~tui.messages.SnapshotReady`, the app hands
each widget its part. Intents flow up: keys, dialogs and the command palette become request
messages (``StopRequested``...), which the app passes to the actions object from a worker
thread. ``build_app`` is the one factory used by the CLI, the tests and the screenshot script.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.driver import Driver
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import ContentSwitcher

from runner.model import Status
from runner.registry import Registry
from tui import compare_view, palette_export, seed_view
from tui.actions import ActionError, LocalActions, RunActions
from tui.alerts import FailureAlerts, driver_class
from tui.data import Interest, RunRow, Snapshot, load_prefs, save_prefs
from tui.messages import (
    ActionFinished,
    ForkRequested,
    NewRunRequest,
    PauseRequested,
    RerunRequested,
    ResumeRequested,
    RunHighlighted,
    SelectionChanged,
    SnapshotReady,
    StopRequested,
    SubmitRequested,
    VisibleRunsChanged,
)
from tui.producer import GpuSource, HostSource, Producer
from tui.widgets.compare_table import CompareTable
from tui.widgets.gpu_footer import GpuFooter
from tui.widgets.output_grid import OutputGrid
from tui.widgets.output_pane import OutputLog
from tui.widgets.plot_pane import Curve, MetricPlot
from tui.widgets.run_tree import RunTree

# The dialogs (tui.screens) are imported when first opened: their widgets are not needed for
# the first frame, which comes sooner without them.
if TYPE_CHECKING:
    from tui.screens.dialogs import ForkAnswer, ResumeAnswer


@dataclass(frozen=True)
class Command:
    """One user action: its key, its name in the palette, and whether it changes anything."""

    action: str
    key: str
    title: str
    help: str
    changes: bool = False


COMMANDS = (
    Command("new_run", "r", "New run", "Start a run: script or command, limits, GPUs", True),
    Command("stop", "s", "Stop run", "Stop the run gracefully (asks first)", True),
    Command("force_stop", "S", "Force-stop run", "Kill the run at once (asks first)", True),
    Command("resume", "u", "Resume run", "New attempt from the latest checkpoint", True),
    Command("pause", "p", "Pause/continue run", "Pause a running run or continue it", True),
    Command("fork", "f", "Fork run", "New run from the checkpoint, changed arguments", True),
    Command("rerun", "R", "Run again", "Run the selected run's command again", True),
    Command("compare", "c", "Compare runs", "Overlay the loss curves of runs marked with Space"),
    Command("grid", "g", "Grid of outputs", "Several running runs' output side by side"),
    Command("follow_all", "a", "Follow all output", "Every running run's new output, interleaved"),
    Command("pick_metrics", "m", "Pick metrics", "Choose the metrics the plot shows"),
    Command("filter", "/", "Filter runs", "Show only runs matching a name, id or status"),
    Command("single", "escape", "Back to the run", "The selected run's output and plot"),
    Command("help", "?", "Help", "Every key"),
    Command("quit", "q", "Quit", "Close the TUI; runs keep running"),
)
CHANGING = frozenset(c.action for c in COMMANDS if c.changes)
KEY_NAMES = {"/": "slash", "?": "question_mark"}
PLOT_EVERY_S = 1.0
# Spinners turn and a waiting plot is drawn on this tick; the timer is paused when nothing
# moves (no active run, no plot waiting): idle costs nothing.
TICK_S = 0.5
DETAILS_EVERY_S = 1.0
QUIT_NOTE = "q quits the TUI only: every run keeps running under its own supervisor."


def set_title(widget: Widget, title: str, *, sub: bool = False) -> None:
    """Set a border (sub)title only when it changes: every assignment repaints the widget."""
    key = "_bp_subtitle" if sub else "_bp_title"
    if getattr(widget, key, None) != title:
        setattr(widget, key, title)
        if sub:
            widget.border_subtitle = title
        else:
            widget.border_title = title


class BackpropApp(App[int]):
    """Runs on the left, the selected run's output and plot on the right, GPUs at the bottom."""

    CSS_PATH = "app.tcss"
    TITLE = "Backprop"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        *(
            Binding(KEY_NAMES.get(c.key, c.key), c.action, c.title, show=False)
            for c in COMMANDS
            if c.action != "quit"
        ),
        Binding("q", "quit", "Quit", show=False),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("enter", "focus_tree", "Focus runs", show=False),
    ]

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
        self.watch = watch
        self.prefs_path = prefs_path
        self.snapshot = Snapshot(loading=True)
        self.mode = "single"
        self.metrics_chosen: tuple[str, ...] = ()
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

    @property
    def tree(self) -> RunTree:
        return self.query_one(RunTree)

    def on_mount(self) -> None:
        self.tree.border_title = "Runs"
        self.tree.empty_text = "loading runs…"
        self.query_one("#follow", OutputLog).border_title = "All running output"
        self.query_one("#grid", OutputGrid).border_title = "Running output"
        self.query_one("#compare-plot", MetricPlot).border_title = "Compare"
        self.tree.focus()
        self._ticker = self.set_interval(TICK_S, self._tick, pause=True)
        if self.watch:
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

    # --- data in ------------------------------------------------------------------------------

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        if self.is_running:  # not while shutting down: the widgets are being removed
            self._apply(message.snapshot)

    def _apply(self, snap: Snapshot) -> None:
        self.snapshot = snap
        tree = self.tree
        tree.empty_text = self._empty_text(snap)
        tree.update_rows(snap.runs, snap.gpu)
        self.alerts.check(snap.runs)
        running = sum(1 for r in snap.runs if r.status is Status.RUNNING)
        self._active = any(r.status.active for r in snap.runs)
        title = f"Runs {len(snap.runs)}" + (f" · {running} running" if running else "")
        set_title(tree, title + (" · read-only" if self.readonly else ""))
        set_title(tree, f"filter: {escape(tree.filter_text)}" if tree.filter_text else "", sub=True)
        self.query_one(GpuFooter).update_data(snap.gpu, snap.host, snap.runs, self.hints())
        self._plot_dirty = True
        self._feed_panes()
        self._ticker.resume()

    def _empty_text(self, snap: Snapshot) -> str:
        if snap.error:
            return snap.error
        if self.tree.filter_text:
            return "no run matches the filter (/ to change it)"
        if self.readonly:
            return f"no runs in {self.registry.root}"
        return "no runs yet: press r to start one"

    def row(self, run_id: str | None) -> RunRow | None:
        """The latest row of ``run_id``."""
        return self.tree.rows.get(run_id) if run_id else None

    def _feed_panes(self, *, force: bool = False) -> None:
        """Feed the visible panes: the output's new lines, the plot at most once a second.

        The producer paces the snapshots (a busy run's output comes twice a second).
        """
        self._feed_output()
        if (
            force
            or not self.watch
            or time.monotonic() - self._plot_drawn_at >= PLOT_EVERY_S - TICK_S / 2
        ):
            self._draw_plot()

    def _feed_output(self) -> None:
        snap, run_id = self.snapshot, self.tree.current_run
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
            run_id = self.tree.current_run
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
            rows = [r for i in sorted(self.tree.selected, reverse=True) if (r := self.row(i))]
            curves = seed_view.compare_curves(
                rows, snap.series, {r.id: r.primary_metric for r in rows}
            )
            self.query_one("#compare-plot", MetricPlot).show_curves(curves)
            compare_view.refresh_table(self, every_s=compare_view.REFRESH_EVERY_S)

    def _grid_runs(self) -> list[tuple[str, str]]:
        limit = 6 if self.size.height >= 40 else 4
        live = [r for r in self.snapshot.runs if r.status in (Status.RUNNING, Status.PAUSED)]
        marked = [r for r in live if r.id in self.tree.selected]
        return [(r.id, r.name) for r in (marked or live)[:limit]]

    def _tick(self) -> None:
        """Turn spinners, draw a plot that waited, move durations on; pause when nothing moves."""
        if not self.is_running:  # shutting down: the widgets are being removed
            return
        self.tree.tick()
        if self._plot_dirty:
            self._feed_panes()
        now = time.monotonic()
        if now - self._details_at >= DETAILS_EVERY_S:
            self._details_at = now
            self.tree.refresh_details(active_only=True)
        if not (self._active or self._plot_dirty):
            self._ticker.pause()

    def _update_interest(self) -> None:
        tree = self.tree
        focused = set(tree.selected)
        if tree.current_run:
            focused.add(tree.current_run)
        if self.mode == "grid":
            focused.update(run_id for run_id, _ in self._grid_runs())
        interest = Interest(tree.visible_ids(), frozenset(focused))
        if interest != self._interest:
            self._interest = interest
            self.producer.set_interest(interest)
            if not self.watch:
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

    # --- keys and palette ---------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (self.readonly and action in CHANGING)

    def hints(self) -> str:
        """The key hints for the footer (only the keys that work here)."""
        keys = [c for c in COMMANDS if not (self.readonly and c.changes)]
        order = ["help", "quit", "new_run", "stop", "pause", "resume", "fork", "compare"]
        shown = [c for name in order for c in keys if c.action == name]
        shown += [c for c in keys if c not in shown and c.action not in ("single", "force_stop")]
        labels = {
            "help": "help",
            "quit": "quit",
            "new_run": "new",
            "follow_all": "all",
            "pick_metrics": "metrics",
            "rerun": "rerun",
        }
        text = "  ".join(f"{c.key} {labels.get(c.action, c.action)}" for c in shown)
        return ("read-only  " if self.readonly else "") + text

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for c in COMMANDS:
            if self.check_action(c.action, ()):
                key = "Esc" if c.key == "escape" else c.key
                run = partial(self.run_action, c.action)
                yield SystemCommand(f"{c.title} ({key})", c.help, run)
        yield from palette_export.commands(self)
        yield from (
            cmd for cmd in super().get_system_commands(screen) if cmd.title not in ("Quit",)
        )

    def _current(self, verb: str) -> RunRow | None:
        row = self.row(self.tree.current_run)
        if row is None:
            self.notify(f"Nothing to {verb}: put the cursor on a run.", severity="warning")
        return row

    def _refuse(self) -> bool:
        if self.readonly:
            self.notify("Read-only: nothing can be changed here.", severity="warning")
        return self.readonly

    def action_focus_tree(self) -> None:
        self.tree.focus()

    def action_new_run(self) -> None:
        if self._refuse():
            return
        last = load_prefs(self.prefs_path).get("new_run", {})

        def done(request: NewRunRequest | None) -> None:
            if request is not None:
                save_prefs(self.prefs_path, {"new_run": vars(request)})
                self.post_message(SubmitRequested(request))

        from tui.screens.dialogs import new_run_dialog

        self.push_screen(new_run_dialog(last if isinstance(last, dict) else {}), done)

    def _stop(self, force: bool) -> None:
        if self._refuse() or (row := self._current("stop")) is None:
            return
        if not row.status.active and row.status is not Status.LOST:
            self.notify(f"{row.name} is {row.status.value}: nothing to stop.", severity="warning")
            return
        if force:
            question = f"Force-stop {row.name}?"
            detail = "SIGKILL to the whole run now: no chance to save a checkpoint."
        else:
            question = f"Stop {row.name}?"
            detail = "SIGINT (the script can checkpoint), then SIGTERM, then SIGKILL."
        run_id = row.id

        def done(yes: bool | None) -> None:
            if yes:
                self.post_message(StopRequested(run_id, force))

        from tui.screens.confirm import ConfirmDialog

        self.push_screen(ConfirmDialog(question, detail), done)

    def action_stop(self) -> None:
        self._stop(force=False)

    def action_force_stop(self) -> None:
        self._stop(force=True)

    def action_pause(self) -> None:
        if self._refuse() or (row := self._current("pause")) is None:
            return
        if row.status is Status.RUNNING:
            self.post_message(PauseRequested(row.id, resume=False))
        elif row.status is Status.PAUSED:
            self.post_message(PauseRequested(row.id, resume=True))
        else:
            self.notify(f"{row.name} is {row.status.value}: only running runs pause.")

    def action_resume(self) -> None:
        if self._refuse() or (row := self._current("resume")) is None:
            return
        if not row.status.finished:
            self.notify(f"{row.name} is {row.status.value}: only ended runs resume.")
            return
        run_id = row.id

        def done(answer: ResumeAnswer | None) -> None:
            if answer is not None:
                self.post_message(ResumeRequested(run_id, answer.timeout_s))

        from tui.screens.dialogs import resume_dialog

        self.push_screen(resume_dialog(row.name, row.timeout_s), done)

    def action_fork(self) -> None:
        if self._refuse() or (row := self._current("fork")) is None:
            return
        run_id = row.id

        def done(answer: ForkAnswer | None) -> None:
            if answer is not None:
                self.post_message(
                    ForkRequested(run_id, answer.changes, answer.name, answer.timeout_s)
                )

        from tui.screens.dialogs import fork_dialog

        self.push_screen(fork_dialog(row.name), done)

    def action_rerun(self) -> None:
        if self._refuse() or (row := self._current("run again")) is None:
            return
        self.post_message(RerunRequested(row.id))

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        self.query_one(ContentSwitcher).current = mode
        self._update_interest()
        self._feed_panes(force=True)

    def action_compare(self) -> None:
        if not self.tree.selected:
            self.notify("Mark runs with Space first, then press c.", severity="warning")
        self._set_mode("compare")
        compare_view.refresh_table(self)

    def action_grid(self) -> None:
        self._set_mode("grid")

    def action_follow_all(self) -> None:
        self._set_mode("follow")

    def action_single(self) -> None:
        self._set_mode("single")

    def action_pick_metrics(self) -> None:
        run_id = self.tree.current_run
        series = self.snapshot.series.get(run_id or "")
        if series is None or not series.names:
            self.notify("This run has no metrics yet.", severity="warning")
            return
        row = self.row(run_id)
        chosen = [m for m in self.metrics_chosen if m in series.metrics] or (
            [row.primary_metric] if row else []
        )

        def done(names: tuple[str, ...] | None) -> None:
            if names is not None:
                self.metrics_chosen = names
                self._draw_plot()

        from tui.screens.metrics import MetricPicker

        self.push_screen(MetricPicker(series.names, chosen), done)

    def action_filter(self) -> None:
        tree = self.tree
        before = tree.filter_text

        def live(text: str) -> None:
            tree.set_filter(text)

        def done(text: str | None) -> None:
            tree.set_filter(before if text is None else text)
            self._apply(self.snapshot)

        from tui.screens.dialogs import filter_dialog

        self.push_screen(filter_dialog(before, live), done)

    def action_help(self) -> None:
        keys = [
            ("↑ ↓ PgUp PgDn", "move in the run list"),
            ("Enter  → ←", "expand / collapse a run's details or a group"),
            ("Space", "mark a run (for compare and grid)"),
            ("Tab", "next pane"),
        ]
        keys += [
            ("Esc" if c.key == "escape" else c.key, c.help)
            for c in COMMANDS
            if self.check_action(c.action, ())
        ]
        keys.append(("Ctrl+P", "command palette: every action by name"))
        from tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(keys, QUIT_NOTE))

    async def action_quit(self) -> None:
        self.exit(0)

    # --- requests to the runner ---------------------------------------------------------------

    def _dispatch(self, what: str, call: Callable[[], str]) -> None:
        if self._refuse():
            return

        def work() -> None:
            try:
                result, ok = call(), True
            except ActionError as exc:
                result, ok = str(exc), False
            except Exception as exc:  # the UI must survive a bug in an action
                result, ok = f"{what} failed: {exc}", False
            self.post_message(ActionFinished(result, ok))

        self.run_worker(work, thread=True, group="actions", description=what)

    def on_submit_requested(self, message: SubmitRequested) -> None:
        self._dispatch("submit", partial(self.actions.submit, message.request))

    def on_stop_requested(self, message: StopRequested) -> None:
        self._dispatch("stop", partial(self.actions.stop, message.run_id, force=message.force))

    def on_pause_requested(self, message: PauseRequested) -> None:
        fn = self.actions.cont if message.resume else self.actions.pause
        self._dispatch("pause", partial(fn, message.run_id))

    def on_resume_requested(self, message: ResumeRequested) -> None:
        self._dispatch(
            "resume", partial(self.actions.resume, message.run_id, timeout_s=message.timeout_s)
        )

    def on_fork_requested(self, message: ForkRequested) -> None:
        self._dispatch(
            "fork",
            partial(
                self.actions.fork,
                message.run_id,
                message.changes,
                name=message.name,
                timeout_s=message.timeout_s,
            ),
        )

    def on_rerun_requested(self, message: RerunRequested) -> None:
        self._dispatch("rerun", partial(self.actions.rerun, message.run_id))

    def on_action_finished(self, message: ActionFinished) -> None:
        self.notify(message.description, severity="information" if message.ok else "error")
        self.producer.poke()
        if not self.watch:
            self._refresh_now()


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
