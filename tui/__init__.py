"""Backprop terminal UI and command line (the top layer: imports governor and runner).

* :mod:`tui.cli` — the ``backprop`` command, one module per command group.
* :mod:`tui.feed` — Textual-free: file events → immutable snapshots (the only reader of run
  files on the UI side).
* :mod:`tui.app` — the Textual app's wiring; :mod:`tui.bindings` names every action once;
  :mod:`tui.app_keys`, :mod:`tui.app_panes`, :mod:`tui.app_requests`, :mod:`tui.palette`;
  :mod:`tui.screens` and :mod:`tui.widgets` draw what the snapshots hold.
* :mod:`tui.actions` — what the app asks of the runner (the same functions the CLI calls);
  :mod:`tui.seams` wraps the internals of dependencies in one place.
"""
