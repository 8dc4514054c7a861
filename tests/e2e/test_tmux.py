"""The real app in a real terminal: the console script under tmux, real runs, real keys."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from runner.control import run_actions
from runner.model import Status
from runner.registry import Registry

pytestmark = [
    pytest.mark.usefixtures("deterministic_env"),  # colour on, UTC (tests/conftest.py)
    pytest.mark.tmux,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

TRAINER = """\
import json, math, sys, time
try:
    for i in range(1, 1_000_000):
        print(json.dumps({"step": i, "loss": round(2.0 * math.exp(-i / 80) + 0.1, 4)}), flush=True)
        time.sleep(0.1)
except KeyboardInterrupt:
    print("interrupted: saving a checkpoint", flush=True)
"""
BACKPROP = shutil.which("backprop") or f"{sys.executable} -m tui.cli"


class Tmux:
    """One private tmux server (its own socket), killed at the end."""

    def __init__(self, home: Path) -> None:
        self.socket = f"backprop-test-{uuid.uuid4().hex[:8]}"
        self.home = home

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout

    def open(self, session: str, size: tuple[int, int], command: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TMUX", "COLORTERM")}
        shell = f"{command}; echo EXIT=$?; sleep 600"
        subprocess.run(
            [
                "tmux",
                "-L",
                self.socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                session,
                "-x",
                str(size[0]),
                "-y",
                str(size[1]),
                shell,
            ],
            check=True,
            env=env,
            timeout=10,
        )

    def screen(self, session: str) -> str:
        return self.tmux("capture-pane", "-p", "-t", session)

    def keys(self, session: str, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", session, key)

    def type(self, session: str, text: str) -> None:
        self.tmux("send-keys", "-t", session, "-l", text)

    def wait(self, session: str, found: Callable[[str], object], what: str, timeout: float = 20):
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen(session)
            result = found(screen)
            if result:
                return result
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def wait_until(check: Callable[[], object], what: str, timeout: float = 20) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def row_numbers(screen: str, name: str) -> tuple[int, float] | None:
    """Step and loss from the tree line of run ``name``."""
    for line in screen.splitlines():
        m = re.search(re.escape(name) + r"[^│]*?\s(\d+)\s+(\d+\.\d+)\s*│", line)
        if m:
            return int(m.group(1)), float(m.group(2))
    return None


def leftovers(home: Path) -> list[str]:
    """Processes of ours that are not a run's supervisor or trainer, nor the dispatcher.

    The dispatcher is the registry's, not the TUI's: detached like a supervisor, it leaves by
    itself once the queue has been empty for ``dispatcher_idle`` (tests/e2e/test_dispatcher*).
    """
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        ours = (
            "runner.supervisor.main" in cmd or "governor.dispatcher" in cmd or cmd.endswith(".py")
        )
        if str(home) in cmd and not ours:
            found.append(f"{proc.pid}: {cmd}")
    return found


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Tmux, Registry, Path]]:
    home = tmp_path / "home"
    registry = Registry(home)
    registry.ensure()
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    tmux = Tmux(home)
    try:
        yield tmux, registry, script
    finally:
        tmux.kill()
        for view in registry.list_runs(use_cache=False):
            if view.status.active:
                run_actions.stop(registry, view.id, force=True)


def test_launch_stop_quit_and_reattach(world: tuple[Tmux, Registry, Path]) -> None:
    tmux, registry, script = world
    home = registry.root
    background = subprocess.run(
        [*BACKPROP.split(), "--home", str(home), "run", "--name", "background", str(script)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert "submitted" in background.stdout

    # 80x24: `backprop` alone opens the TUI.
    tmux.open("small", (80, 24), f"{BACKPROP} --home {home}")
    tmux.wait("small", lambda s: "Runs 1" in s and row_numbers(s, "background"), "the run list")

    # A run launched from the dialog appears and shows step and loss.
    tmux.keys("small", "r")
    tmux.wait("small", lambda s: "New run" in s, "the new-run dialog")
    launched = script.with_name("from_tui.py")  # its default name: from_tui
    launched.write_text(TRAINER)
    tmux.type("small", str(launched))
    tmux.wait("small", lambda s: "from_tui.py" in s, "the script path in the dialog")
    tmux.keys("small", "Enter")
    tmux.wait("small", lambda s: "submitted run" in s, "the submission to be confirmed")
    first = tmux.wait("small", lambda s: row_numbers(s, "from_tui"), "step and loss of from_tui")
    assert first[0] >= 1 and first[1] > 0

    # s stops it gracefully (after asking).
    tmux.keys("small", "Home", "s")
    tmux.wait("small", lambda s: "Stop from_tui?" in s, "the stop question")
    tmux.keys("small", "y")
    new_id = next(v.id for v in registry.list_runs() if v.name == "from_tui")
    wait_until(lambda: registry.load(new_id).status is Status.STOPPED, "from_tui stopped")
    tmux.wait("small", lambda s: re.search(r"■ from_tui", s), "the stopped icon")
    log = (registry.run_dir(new_id) / "output.log").read_text()
    assert "interrupted: saving a checkpoint" in log  # SIGINT reached the script

    # q quits, says the other run keeps running, and it does.
    tmux.keys("small", "q")
    screen = tmux.wait("small", lambda s: "EXIT=0" in s and s, "the TUI to exit")
    assert "keep running" in screen
    bg_id = next(v.id for v in registry.list_runs() if v.name == "background")
    assert registry.load(bg_id).status is Status.RUNNING

    # Reopening (200x50, `backprop tui`) shows it live: its step moves on screen.
    tmux.open("big", (200, 50), f"{BACKPROP} --home {home} tui")
    before = tmux.wait("big", lambda s: row_numbers(s, "background"), "the background run")
    tmux.wait(
        "big",
        lambda s: (now := row_numbers(s, "background")) and now[0] > before[0],
        "the background run's step to move",
    )
    tmux.keys("big", "q")
    tmux.wait("big", lambda s: "EXIT=0" in s, "the second TUI to exit")
    tmux.kill()

    # Nothing of the TUI is left: only the runs' supervisors and trainers.
    wait_until(lambda: not leftovers(home), f"no leftover processes: {leftovers(home)}", 10)
    assert registry.load(bg_id).status is Status.RUNNING
