"""Pilot tests: every key and palette action sends the right request to the runner."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.command import CommandList, CommandPalette
from textual.message import Message

from tests.pilot.conftest import goto, settle, until
from tui.messages import (
    NewRunRequest,
    PauseRequested,
    StopRequested,
    SubmitRequested,
)
from tui.screens.confirm import ConfirmDialog
from tui.screens.form import FormDialog

SIZE = (120, 36)
RUNNING, PAUSED, TIMEBOXED, COMPLETED, FAILED = "000008", "000010", "000003", "000001", "000004"


def recorder() -> tuple[list[Message], Any]:
    seen: list[Message] = []
    return seen, seen.append


async def test_stop_asks_first_then_stops_gracefully(make_app, fake_actions):
    seen, hook = recorder()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await goto(pilot, RUNNING)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmDialog)
        assert fake_actions.calls == []
        await pilot.press("y")
        await settle(pilot)
    assert fake_actions.calls == [("stop", RUNNING, False)]
    assert any(isinstance(m, StopRequested) and m.run_id == RUNNING for m in seen)


async def test_stop_declined_sends_nothing(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, RUNNING)
        await pilot.press("s", "n")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
        await pilot.press("S", "escape")
        await settle(pilot)
    assert fake_actions.calls == []


async def test_force_stop_confirmed_with_enter(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, RUNNING)
        await pilot.press("S")
        assert isinstance(app.screen, ConfirmDialog)
        assert "Force" in app.screen.question
        await pilot.press("enter")
        await settle(pilot)
    assert fake_actions.calls == [("stop", RUNNING, True)]


async def test_stop_of_a_finished_run_is_refused_without_asking(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, COMPLETED)
        await pilot.press("s")
        assert not isinstance(app.screen, ConfirmDialog)
    assert fake_actions.calls == []


async def test_pause_and_continue(make_app, fake_actions):
    seen, hook = recorder()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await goto(pilot, RUNNING)
        await pilot.press("p")
        await settle(pilot)
        await goto(pilot, PAUSED)
        await pilot.press("p")
        await settle(pilot)
    assert fake_actions.calls == [("pause", RUNNING), ("cont", PAUSED)]
    assert [m.resume for m in seen if isinstance(m, PauseRequested)] == [False, True]


async def test_resume_asks_for_the_new_time_limit(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, TIMEBOXED)
        await pilot.press("u")
        assert isinstance(app.screen, FormDialog)
        assert app.screen.values() == {"timeout": "30m"}  # the previous limit, as typed
        await pilot.press("ctrl+u", *"1h", "enter")
        await settle(pilot)
    assert fake_actions.calls == [("resume", TIMEBOXED, 3600.0)]


async def test_resume_rejects_a_bad_limit_and_stays_open(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, TIMEBOXED)
        await pilot.press("u", "ctrl+u", *"soon", "enter")
        assert isinstance(app.screen, FormDialog)
        assert "time limit" in str(app.screen.query_one(".dialog-error").render())
        await pilot.press("escape")
        await settle(pilot)
    assert fake_actions.calls == []


async def test_fork_with_changed_arguments(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, COMPLETED)
        await pilot.press("f", *"--lr 1e-4", "tab", *"mnist-lr", "tab", *"20m", "enter")
        await settle(pilot)
    assert fake_actions.calls == [("fork", COMPLETED, ("--lr", "1e-4"), "mnist-lr", 1200.0)]


async def test_rerun(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, FAILED)
        await pilot.press("R")
        await settle(pilot)
    assert fake_actions.calls == [("rerun", FAILED)]


async def test_new_run_dialog_submits_and_remembers(make_app, fake_actions):
    seen, hook = recorder()
    app = make_app()
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await pilot.press("r")
        assert isinstance(app.screen, FormDialog)
        await pilot.press(*"/bin/echo", "tab", *"--lr 0.1", "tab", *"my-run")
        await pilot.press("tab", *"10m", "tab", "1", "tab", *"8G", "enter")
        await settle(pilot)
        expected = NewRunRequest("/bin/echo", "--lr 0.1", "my-run", "10m", "1", "8G")
        assert fake_actions.calls == [("submit", expected)]
        assert any(isinstance(m, SubmitRequested) for m in seen)
        await pilot.press("r")  # the dialog remembers the last values
        assert app.screen.values()["args"] == "--lr 0.1"
        assert app.screen.values()["vram"] == "8G"
        await pilot.press("escape")
        await settle(pilot)
    assert len(fake_actions.calls) == 1


async def test_tab_moves_between_fields_when_keys_arrive_together(make_app, fake_actions):
    """Under tmux, a paste or a slow link, the keys come in one read: each Tab must still
    move to the next field before the keys after it are typed."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        assert isinstance(app.screen, FormDialog)
        typed = [*"train.py", "tab", *"--lr 1", "tab", *"mine", "shift+tab", "shift+tab", "x"]
        for key in typed:  # posted at once, as the driver does with one read of input
            char = {"tab": "\t", "shift+tab": None}.get(key, key)
            app.post_message(events.Key(key, char))
        await settle(pilot)
        values = app.screen.values()
        assert (values["target"], values["args"], values["name"]) == ("train.pyx", "--lr 1", "mine")
        await pilot.press("enter")
        await settle(pilot)
    assert fake_actions.calls == [("submit", NewRunRequest("train.pyx", "--lr 1", "mine"))]


async def test_new_run_dialog_names_the_bad_field(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r", *"train.py", "tab", "tab", "tab", "tab", *"two", "enter")
        assert isinstance(app.screen, FormDialog)
        assert "GPUs" in str(app.screen.query_one(".dialog-error").render())
    assert fake_actions.calls == []


def _palette_highlights(app: Any, text: str) -> bool:
    """Whether the command palette is open with its highlighted command starting ``text``."""
    if not isinstance(app.screen, CommandPalette):
        return False
    commands = app.screen.query_one(CommandList)
    index = commands.highlighted
    if index is None or index >= commands.option_count:
        return False
    return str(commands.get_option_at_index(index).prompt).startswith(text)


async def test_palette_runs_the_same_actions(make_app, fake_actions):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, RUNNING)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Force-stop")
        await until(pilot, lambda: _palette_highlights(app, "Force-stop"))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await settle(pilot)
    assert fake_actions.calls == [("stop", RUNNING, True)]


async def test_palette_lists_every_action(make_app):
    app = make_app()
    async with app.run_test(size=SIZE):
        titles = [c.title for c in app.get_system_commands(app.screen)]
    for wanted in (
        "New run (r)",
        "Stop run (s)",
        "Force-stop run (S)",
        "Resume run (u)",
        "Pause/continue run (p)",
        "Fork run (f)",
        "Run again (R)",
        "Compare runs (c)",
        "Filter runs (/)",
        "Help (?)",
        "Quit (q)",
    ):
        assert wanted in titles


async def test_readonly_hides_and_refuses_every_change(make_app, fake_actions):
    app = make_app(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, RUNNING)
        for key in ("r", "s", "S", "p", "f", "R"):
            await pilot.press(key)
            assert not isinstance(app.screen, (ConfirmDialog, FormDialog)), key
        await goto(pilot, TIMEBOXED)
        await pilot.press("u")
        assert not isinstance(app.screen, FormDialog)
        titles = " ".join(c.title for c in app.get_system_commands(app.screen))
        for gone in ("New run", "Stop", "Resume", "Pause", "Fork", "Run again"):
            assert gone not in titles
        assert "Compare" in titles
        hints = app.hints()
        assert "read-only" in hints and "s stop" not in hints and "r new" not in hints
        # Even a request that reaches the app some other way is refused.
        app.post_message(StopRequested(RUNNING))
        await settle(pilot)
        assert "read-only" in app.run_tree.border_title
    assert fake_actions.calls == []


async def test_filter_by_name_and_status(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        tree = app.run_tree
        await pilot.press("slash", *"resnet")
        await pilot.pause()
        shown = {ln.key for ln in tree.lines if ln.kind == "run"}
        assert shown == {"000002", "000003", "000004"}
        await pilot.press("enter")
        assert tree.filter_text == "resnet"
        await pilot.press("slash", "ctrl+u", *"status:failed", "enter")
        assert {ln.key for ln in tree.lines if ln.kind == "run"} == {FAILED}
        await pilot.press("slash", "ctrl+u", *"gpt", "escape")  # Esc undoes the edit
        assert tree.filter_text == "status:failed"
        await pilot.press("slash", "ctrl+u", "enter")
        assert len([ln for ln in tree.lines if ln.kind == "run"]) == 11


async def test_space_marks_runs_and_compare_overlays_them(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, RUNNING)
        await pilot.press("space")
        assert app.run_tree.current_run != RUNNING  # Space moves on, like a file manager
        await goto(pilot, COMPLETED)
        await pilot.press("space")
        assert app.run_tree.selected == {RUNNING, COMPLETED}
        await pilot.press("c")
        await pilot.pause()
        assert app.mode == "compare"
        plot = app.query_one("#compare-plot")
        assert {c.label for c in plot.curves} == {"gpt2-small", "mnist-baseline"}
        await goto(pilot, RUNNING)
        await pilot.press("space")  # unmark
        await pilot.pause()
        assert app.run_tree.selected == {COMPLETED}
        await pilot.press("escape")
        assert app.mode == "single"


async def test_enter_expands_details_and_tab_cycles_panes(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, FAILED)
        await pilot.press("enter")
        tree = app.run_tree
        details = [ln for ln in tree.lines if ln.kind == "detail" and ln.key == FAILED]
        assert len(details) == 13
        row = tree.rows[FAILED]
        assert "out of GPU memory" in tree.detail_value(row, "status")
        assert tree.detail_value(row, "exit") == "code 1"
        await pilot.press("enter")
        assert not [ln for ln in tree.lines if ln.kind == "detail"]
        focused = []
        for _ in range(3):
            await pilot.press("tab")
            focused.append(app.focused.id if app.focused else None)
        assert focused == ["output", "plot", "tree"]


async def test_grid_and_follow_all_views(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("g")
        await pilot.pause()
        grid = app.query_one("#grid")
        assert set(grid.panes) == {RUNNING, "000009", PAUSED}
        await pilot.press("a")
        await pilot.pause()
        follow = app.query_one("#follow")
        assert any("gpt2-small" in line for line in follow.lines)
        assert any("vit-tiny" in line for line in follow.lines)


async def test_q_quits_and_ctrl_q_too(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_value == 0
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_value == 0


async def test_tab_moves_the_focus_before_the_keys_that_came_with_it(make_app):
    """Tab then Down in one read: Down belongs to the output pane, not to the run list."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await goto(pilot, FAILED)
        for key, char in (("tab", "\t"), ("down", None), ("down", None)):
            app.post_message(events.Key(key, char))  # at once, as one read of input delivers them
        await settle(pilot)
        assert app.focused is not None and app.focused.id == "output"
        assert app.run_tree.current_run == FAILED
        for key, char in (("shift+tab", None), ("down", None)):
            app.post_message(events.Key(key, char))
        await settle(pilot)
        assert app.focused is app.run_tree
        assert app.run_tree.current_run != FAILED  # this Down was the run list's
