"""What each key (and palette entry) does: the ``action_*`` methods of the app.

Each :data:`tui.bindings.ActionName` ``x`` is carried out by ``action_x`` here. An action that
changes a run asks first where it must (a dialog from :mod:`tui.screens`), then posts a
request message (``StopRequested``...) that :mod:`tui.app_requests` hands to the runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.model import Status
from tui import compare_view
from tui.app_panes import PanesApp
from tui.bindings import QUIT_NOTE, help_keys
from tui.feed.snapshot import RunRow
from tui.messages import (
    ForkRequested,
    NewRunRequest,
    PauseRequested,
    RerunRequested,
    ResumeRequested,
    StopRequested,
    SubmitRequested,
)
from tui.prefs import load_prefs, save_prefs

# The dialogs (tui.screens) are imported when first opened: their widgets are not needed for
# the first frame, which comes sooner without them.
if TYPE_CHECKING:
    from tui.screens.dialogs import ForkAnswer, ResumeAnswer


class KeyActionsApp(PanesApp):
    """The app's key actions: ask where needed, then post the request."""

    def _current(self, verb: str) -> RunRow | None:
        row = self.row(self.run_tree.current_run)
        if row is None:
            self.notify(f"Nothing to {verb}: put the cursor on a run.", severity="warning")
        return row

    def action_focus_tree(self) -> None:
        self.run_tree.focus()

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

    def action_compare(self) -> None:
        if not self.run_tree.selected:
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
        run_id = self.run_tree.current_run
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
        tree = self.run_tree
        before = tree.filter_text

        def live(text: str) -> None:
            tree.set_filter(text)

        def done(text: str | None) -> None:
            tree.set_filter(before if text is None else text)
            self._apply(self.snapshot)

        from tui.screens.dialogs import filter_dialog

        self.push_screen(filter_dialog(before, live), done)

    def action_help(self) -> None:
        keys = help_keys(self.readonly)
        from tui.screens.help import HelpScreen

        self.push_screen(HelpScreen(keys, QUIT_NOTE))

    async def action_quit(self) -> None:
        self.exit(0)
