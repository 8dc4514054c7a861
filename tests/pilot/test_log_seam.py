"""The Textual ``Log`` internals that ``OutputLog`` overrides are still there, as it expects.

``tui/widgets/output_pane.py`` is the one module allowed to touch them (see
``tests/unit/test_private_api.py``). An upgrade of Textual that renames or reshapes one fails
here, by name, instead of silently falling back to Log's slow paths or breaking the pane.
"""

from __future__ import annotations

import inspect

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Log

from tui.widgets.output_pane import OutputLog

EXPECTED = {
    "_update_size": "(self, updates: 'int', lines: 'list[str]') -> 'None'",
    "_process_line": "(line: 'str') -> 'str'",
    "_render_line": "(self, y: 'int', scroll_x: 'int', width: 'int') -> 'Strip'",
    "_render_line_strip": "(self, y: 'int', rich_style: 'Style') -> 'Strip'",
    "_prune_max_lines": "(self) -> 'None'",
    "_update_maximum_width": "(self, updates: 'int', size: 'int') -> 'None'",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_log_keeps_the_private_method_output_log_overrides(name: str) -> None:
    assert str(inspect.signature(getattr(Log, name))) == EXPECTED[name]


class _OneLog(App[None]):
    def compose(self) -> ComposeResult:
        yield OutputLog()


async def test_log_keeps_the_line_store_and_strip_cache() -> None:
    async with _OneLog().run_test() as pilot:
        log = pilot.app.query_one(OutputLog)
        log.write_lines(["one", "two"])
        await pilot.pause()
        assert log._lines == ["one", "two"]
        cache = log._render_line_cache
        assert cache.get(0) is not None  # the visible lines were rendered through the cache
        cache.discard(0)
        assert cache.get(0) is None
