"""The feed's polling watcher for network file systems: targeted, never recursive (issue 15)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tui.feed.poll_watcher import ADDED, DELETED, MODIFIED, RUN_FILES, PollWatcher


def _registry(tmp_path: Path, runs: int) -> tuple[Path, list[Path]]:
    runs_dir = tmp_path / "runs"
    folders = []
    for i in range(1, runs + 1):
        folder = runs_dir / f"{i:06d}"
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "state.json").write_text("{}")
        folders.append(folder)
    return runs_dir, folders


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_changes_to_live_runs_files_and_new_runs_are_reported(tmp_path: Path) -> None:
    runs_dir, (live, _quiet) = _registry(tmp_path, 2)
    clock = Clock()
    w = PollWatcher([str(runs_dir), str(live)], poll_s=1.0, list_s=3.0, monotonic=clock)
    assert w.check(clock()) == set()  # nothing due, nothing changed
    (live / "metrics.jsonl").write_text('{"step": 1}\n')
    os.utime(live / "state.json", ns=(1, 1))
    (live / "checkpoints" / "ckpt.pt").write_bytes(b"x")  # not a file the feed acts on
    clock.t = 1.0
    assert w.check(clock()) == {
        (ADDED, str(live / "metrics.jsonl")),
        (MODIFIED, str(live / "state.json")),
    }
    (runs_dir / "000003").mkdir()
    (live / "state.json").unlink()
    clock.t = 2.0
    assert w.check(clock()) == {(DELETED, str(live / "state.json"))}  # listing not due
    clock.t = 3.0
    assert w.check(clock()) == {(ADDED, str(runs_dir / "000003"))}


def test_a_poll_stats_only_the_named_files_of_the_watched_runs(tmp_path: Path) -> None:
    runs_dir, folders = _registry(tmp_path, 50)
    w = PollWatcher([str(runs_dir), str(folders[0]), str(folders[1])])
    assert len(w._stamps) == 2 * len(RUN_FILES)  # 48 finished runs cost nothing
    assert w.poll() == set()


def test_stop_ends_a_long_wait_at_once(tmp_path: Path) -> None:
    runs_dir, _ = _registry(tmp_path, 1)
    w = PollWatcher([str(runs_dir)], poll_s=60, list_s=60)
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert w.wait(100, 10, 0, stop) == "stop"
    (runs_dir / "000002").mkdir()
    found = PollWatcher([str(runs_dir)], poll_s=0.01, list_s=0.01)
    (runs_dir / "000003").mkdir()
    assert found.wait(100, 10, 5000, None) == {(ADDED, str(runs_dir / "000003"))}
    w.close()
    assert w.wait(0, 1, 0, None) == "stop"
