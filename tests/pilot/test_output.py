"""The output pane in a running app: it follows new lines, also once its buffer is full."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.feed.snapshot import OutputView
from tui.widgets.output_pane import OutputLog


class OnePane(App[None]):
    """Just an output pane with a small buffer."""

    def compose(self) -> ComposeResult:
        yield OutputLog(max_lines=30, id="out")


def shown(app: App[None]) -> str:
    """The text on screen (as the terminal would show it)."""
    return app.export_screenshot().replace("&#160;", " ")


async def test_output_pane_keeps_following_once_its_buffer_is_full():
    app = OnePane()
    async with app.run_test(size=(40, 12)) as pilot:
        pane = app.query_one(OutputLog)
        lines = [f"line {i}" for i in range(40)]  # more than the buffer holds
        pane.show("run", OutputView(tuple(lines[-30:]), len(lines)))
        await pilot.pause()
        assert "line 39" in shown(app)
        for batch in range(3):  # every batch now drops old lines to make room
            lines += [f"line {i}" for i in range(len(lines), len(lines) + 5)]
            pane.show("run", OutputView(tuple(lines[-30:]), len(lines)))
            await pilot.pause()
            assert f"line {len(lines) - 1}" in shown(app), batch
        assert len(pane.lines) == 30


async def test_output_pane_writes_only_new_lines_and_starts_over_for_another_run():
    app = OnePane()
    async with app.run_test(size=(40, 12)) as pilot:
        pane = app.query_one(OutputLog)
        pane.show("a", OutputView(("one", "two"), 2))
        pane.show("a", OutputView(("one", "two", "three"), 3))
        await pilot.pause()
        assert list(pane.lines) == ["one", "two", "three"]
        pane.show("b", OutputView(("other",), 1))
        await pilot.pause()
        assert list(pane.lines) == ["other"]


async def test_footer_key_hints_fit_80_columns_whole(make_app):
    """At 80x24 the footer shows whole key hints only (it read "u resu…")."""
    from tui.widgets.gpu_footer import GpuFooter

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        footer = app.query_one(GpuFooter)
        hints = app.hints().split("  ")
        line = str(footer.render()).splitlines()[-1]
        assert len(line) <= 80 and "│ " in line
        shown = line.split("│ ", 1)[1].rstrip().split("  ")
        assert shown and shown == hints[: len(shown)], shown  # whole hints, in order
