"""The TUI's data on a network file system: polling, not inotify, and other processes' writes
arrive (issue 15).

``BACKPROP_POLL=1`` makes the registry count as shared storage (as NFS, Lustre… do when
detected), so the feed watches with :class:`tui.feed.poll_watcher.PollWatcher`. inotify is made
unusable here, and the producer's own fallback polls are pushed far out, so whatever reaches
its snapshots came through the polling watcher: a live run's new steps (written by its
supervisor) and a run submitted by another process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from governor.probes import GpuSnapshot
from runner.registry import Registry
from tests.conftest import ROOT, Cli, wait_until
from tui import seams
from tui.feed import poll_watcher
from tui.feed.producer import Producer
from tui.feed.snapshot import Snapshot

pytestmark = pytest.mark.slow

TRAINER = textwrap.dedent(
    """
    import time
    for step in range(100000):
        print(f"step {step} loss: {1 / (step + 1):.4f}", flush=True)
        time.sleep(0.1)
    """
)


def test_other_processes_writes_reach_the_feed_by_polling(
    cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKPROP_POLL", "1")
    watchers: list[Any] = []

    class CountingPollWatcher(poll_watcher.PollWatcher):
        def __init__(self, paths: list[str], **kw: Any) -> None:
            super().__init__(paths, **kw)
            watchers.append(self)

    class NoInotify:
        def __init__(self, paths: list[str]) -> None:
            raise AssertionError("inotify used on a network file system")

    monkeypatch.setattr(poll_watcher, "PollWatcher", CountingPollWatcher)
    monkeypatch.setattr(seams, "FileWatcher", NoInotify)
    live = cli.run_script(TRAINER, name="live")
    shown = cli.wait_status(live, "running")
    assert shown["host"] == os.uname().nodename  # every run records where it ran, local too
    reg = Registry(home)
    snaps: list[Snapshot] = []
    producer = Producer(
        reg,
        snaps.append,
        gpu_source=lambda: GpuSnapshot(error="none"),
        host_source=lambda: None,
        poll_s=1000,  # the producer's own re-reads never come: only the watcher's changes
        slow_poll_s=1000,
    )

    def row(run_id: str) -> Any:
        for snap in reversed(snaps[-3:]):
            for r in snap.runs:
                if r.id == run_id:
                    return r
        return None

    producer.start()
    try:
        wait_until(lambda: (r := row(live)) and (r.step or 0) >= 1, timeout=30, message="steps")
        first = row(live).step
        wait_until(lambda: (row(live).step or 0) >= first + 10, timeout=30, message="later steps")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        code = (
            "import sys; from runner.control.submission import SubmitOptions, submit;"
            "from runner.registry import Registry;"
            "print(submit(Registry(sys.argv[1]), ['true'], name='elsewhere',"
            " options=SubmitOptions(start=False)).id)"
        )
        new = subprocess.run(
            [sys.executable, "-c", code, str(home)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        wait_until(lambda: row(new) is not None, timeout=30, message="the new run in the feed")
    finally:
        producer.stop()
        cli("stop", "--force", live, check=False)
    assert sum(w.polls for w in watchers) > 0
    watched = {os.path.basename(p) for w in watchers for p in w._runs}
    assert live in watched and watched <= {live, new}  # live runs only: never the whole tree
