"""The command palette: every action by name, then the exports, then Textual's own entries.

The export entries write the marked runs' metrics as CSV or their curves as PNG to the
folder the TUI was started in; the work runs in a worker thread and ends in a notification
naming the file (or the error).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from runner.control.errors import LifecycleError
from tui.bindings import COMMANDS, key_label

if TYPE_CHECKING:
    from tui.app_panes import PanesApp


def chosen_runs(app: PanesApp) -> list[str]:
    """The marked runs, else the run under the cursor."""
    tree = app.run_tree
    ids = sorted(tree.selected) or ([tree.current_run] if tree.current_run else [])
    return [i for i in ids if i]


def file_name(run_ids: list[str], suffix: str) -> Path:
    """``backprop-000001-000002.csv`` in the current folder (a count beyond four runs)."""
    label = "-".join(run_ids) if len(run_ids) <= 4 else f"{run_ids[0]}-and-{len(run_ids) - 1}"
    return Path.cwd() / f"backprop-{label}.{suffix}"


def export(app: PanesApp, kind: str) -> None:
    """Write the chosen runs' metrics (``csv``) or curves (``png``) in a worker thread."""
    run_ids = chosen_runs(app)
    if not run_ids:
        app.notify("Nothing to export: mark runs with Space or put the cursor on one.")
        return

    def work() -> None:
        from tui.cli.export import export_to_file, plot_to_file

        out = file_name(run_ids, kind)
        try:
            if kind == "csv":
                count = export_to_file(app.registry, run_ids, out, "csv")
                text, ok = f"wrote {count} rows to {out}", True
            else:
                curves, metric = plot_to_file(app.registry, run_ids, out)
                text, ok = f"drew {curves} curve(s) of {metric} to {out}", True
        except (LifecycleError, OSError, ValueError) as exc:
            text, ok = f"export failed: {exc}", False
        app.call_from_thread(app.notify, text, severity="information" if ok else "error")

    app.run_worker(work, thread=True, group="export", description=f"export {kind}")


def commands(app: PanesApp) -> Iterator[SystemCommand]:
    """The palette entries."""
    yield SystemCommand(
        "Export metrics to CSV",
        "The marked runs' metrics (or the current run's), one row per step, in this folder",
        partial(export, app, "csv"),
    )
    yield SystemCommand(
        "Plot curves to PNG",
        "The marked runs' primary metric as an image in this folder (needs matplotlib)",
        partial(export, app, "png"),
    )


def system_commands(
    app: PanesApp, textual_commands: Iterable[SystemCommand]
) -> Iterator[SystemCommand]:
    """Every command that works here (by name, with its key), the exports, Textual's own."""
    for c in COMMANDS:
        if app.check_action(c.action, ()):
            run = partial(app.run_action, c.action)
            yield SystemCommand(f"{c.title} ({key_label(c)})", c.help, run)
    yield from commands(app)
    yield from (cmd for cmd in textual_commands if cmd.title not in ("Quit",))
