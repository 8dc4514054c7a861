"""The seams in ``tui/seams.py`` work against the installed dependencies, for real.

Each wraps a private API (watchfiles' ``RustNotify``, plotext's theme table, plotext's
``_set_size``); an upgrade that moves or reshapes one fails here, by name.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tui import seams


def _wait_for(watcher: seams.FileWatcher, path: Path) -> set[str]:
    """Paths reported until ``path`` shows up (or a generous deadline passes)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while str(path) not in seen and time.monotonic() < deadline:
        got = watcher.wait(50, 10, 500, None)
        if isinstance(got, set):
            seen |= {p for _, p in got}
    return seen


def test_file_watcher_reports_a_write_in_a_watched_folder(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    with seams.FileWatcher([str(tmp_path)]) as watcher:
        assert watcher.wait(10, 10, 50, None) == "timeout"
        target.write_text("{}")
        assert str(target) in _wait_for(watcher, target)


def test_file_watcher_is_not_recursive(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with seams.FileWatcher([str(tmp_path)]) as watcher:
        (tmp_path / "sub" / "deep.txt").write_text("x")
        marker = tmp_path / "marker"
        marker.write_text("x")
        seen = _wait_for(watcher, marker)
    assert str(marker) in seen
    assert str(tmp_path / "sub" / "deep.txt") not in seen


def test_file_watcher_returns_stop_when_the_event_is_set(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    with seams.FileWatcher([str(tmp_path)]) as watcher:
        assert watcher.wait(10, 10, 10_000, stop) == "stop"


def test_file_watcher_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        seams.FileWatcher([str(tmp_path / "gone")])


def test_a_registered_plot_theme_is_usable_and_sized() -> None:
    from textual_plotext.plot import Plot

    seams.register_plot_theme("test-seam-theme", (10, 20, 30), (200, 210, 220))
    plot = Plot()
    plot.theme("test-seam-theme")
    seams.set_plot_size(plot, 40, 10)
    plot.plot([1, 2, 3], [3, 1, 2], marker="braille")
    out = plot.build()
    lines = out.splitlines()
    assert len(lines) == 10
    assert "48;2;10;20;30" in out  # the canvas drawn in the registered surface colour
    assert "38;2;200;210;220" in out  # the ticks in the registered foreground
