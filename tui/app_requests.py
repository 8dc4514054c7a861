"""Requests to the runner: each request message becomes a call on the actions object.

The calls may block (a resume waits for its supervisor), so each runs in a worker thread and
ends in :class:`~tui.messages.ActionFinished`, shown as a notification.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

from tui.actions import ActionError
from tui.app_panes import PanesApp
from tui.messages import (
    ActionFinished,
    ForkRequested,
    PauseRequested,
    RerunRequested,
    ResumeRequested,
    StopRequested,
    SubmitRequested,
)

# What a request asks the runner for (the worker's description, and the error's prefix).
RequestKind = Literal["submit", "stop", "pause", "resume", "fork", "rerun"]


class RequestsApp(PanesApp):
    """The app's request handlers: one worker thread per call, a notification at the end."""

    def _dispatch(self, what: RequestKind, call: Callable[[], str]) -> None:
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
        if not self.watching:
            self._refresh_now()
