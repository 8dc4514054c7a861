"""The ``backprop`` command line, one module per command group (it never imports textual).

``entry`` (main: dispatch, exit codes), ``parser`` (the argparse tree), ``context`` (what a
command gets), ``conventions`` (exit codes, usage errors, --version), ``completion``
(argcomplete); commands: ``run`` (run and its options), ``control`` (stop, pause, continue,
start, rm, resume, fork, rerun), ``show`` (ls, show, inspect), ``logs``, ``pipeline``
(--after, wait, ls filters), ``queue``, ``export`` (export-metrics, plot), ``compare``,
``bundle`` (export, import), ``reingest``, ``init``, ``status``, ``ui`` (tui, demo);
``render`` holds the human tables, ``backends`` where runs run (``ls --backend``, ``show``'s
backend lines, ``status``'s reachability).
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``backprop`` console script (see :func:`tui.cli.entry.main`).

    Imported lazily so that ``import tui.cli.export`` (the TUI's palette) stays light.
    """
    from tui.cli.entry import main as run_main

    return run_main(argv)
