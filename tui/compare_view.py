"""The compare view's table, computed off the UI thread from the run folders.

The TUI's compare view (key ``c``) shows the same differing fields as ``backprop compare``:
:func:`refresh_table` reads the marked runs' records in a worker thread and hands the result
to the :class:`~tui.widgets.compare_table.CompareTable`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from runner.compare import compare_runs
from runner.config import ConfigError, load_config
from runner.notify_rules import terminal_signals as _signals
from runner.registry import Registry
from tui.widgets.compare_table import CompareTable

if TYPE_CHECKING:
    from tui.app_panes import PanesApp


def terminal_signals(registry: Registry) -> tuple[str, ...]:
    """How the open TUI signals a failure (``[notify] terminal``; all three by default)."""
    try:
        return _signals(load_config(registry.root))
    except (ConfigError, OSError):
        return ("bell", "osc9", "osc777")


def compute(registry: Registry, run_ids: list[str]) -> tuple[dict[str, Any] | None, str]:
    """The comparison of ``run_ids`` or the reason there is none."""
    if len(run_ids) < 2:
        return None, "mark two or more runs with Space to see what differs"
    try:
        return compare_runs(registry, run_ids), ""
    except (OSError, ValueError) as exc:
        return None, f"cannot compare: {exc}"


REFRESH_EVERY_S = 5.0


def refresh_table(app: PanesApp, *, every_s: float = 0.0) -> None:
    """Recompute the table for the marked runs (synchronously when the app does not watch).

    ``every_s``: skip it when the last refresh is more recent (the periodic redraw passes
    :data:`REFRESH_EVERY_S` so that running runs' results stay current).
    """
    table = app.query_one("#compare-table", CompareTable)
    now = time.monotonic()
    if every_s and now - table.refreshed_at < every_s:
        return
    table.refreshed_at = now
    run_ids = sorted(app.run_tree.selected, reverse=True)
    if not app.watching:  # tests and screenshots: deterministic, in this thread
        table.show(*compute(app.registry, run_ids))
        return

    def work() -> None:
        result = compute(app.registry, run_ids)
        app.call_from_thread(table.show, *result)

    app.run_worker(work, thread=True, group="compare", exclusive=True, description="compare")
