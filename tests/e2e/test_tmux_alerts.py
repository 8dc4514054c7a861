"""The real app under tmux signals a failure: bell and OSC 9, read from the pane's output."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.e2e.test_tmux import BACKPROP, pytestmark, wait_until, world  # noqa: F401

FAILS_ON_FLAG = """\
import os, sys, time
print("loss: 1.0", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
sys.exit(3)
"""


def test_a_failure_rings_and_sends_osc9_through_tmux(world, tmp_path: Path) -> None:  # noqa: F811
    tmux, registry, _ = world
    home = registry.root
    script = tmp_path / "fails.py"
    script.write_text(FAILS_ON_FLAG)
    flag = tmp_path / "fail-now"
    out = subprocess.run(
        [*BACKPROP.split(), "--home", str(home), "run", "--json", "--name", "doomed",
         str(script), str(flag)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert '"id"' in out.stdout
    tmux.open("alerts", (100, 30), f"{BACKPROP} --home {home}")
    tmux.wait("alerts", lambda s: "doomed" in s, "the run in the list")
    stream = tmp_path / "pane.out"
    tmux.tmux("pipe-pane", "-t", "alerts", f"cat >> {stream}")
    flag.touch()
    tmux.wait("alerts", lambda s: "✗ doomed" in s, "the failed run")
    data = wait_until(
        lambda: stream.exists() and b"]9;Backprop: run" in (d := stream.read_bytes()) and d,
        "OSC 9 in the pane's output",
    )
    assert isinstance(data, bytes)
    run_id = next(v.id for v in registry.list_runs() if v.name == "doomed")
    assert f"]9;Backprop: run {run_id} (doomed) failed".encode() in data
    assert b"\x1bPtmux;" in data  # wrapped for tmux's passthrough ($TMUX is set in the pane)
    # The bell: a BEL of its own, not only the terminator of an escape sequence.
    bare = re.sub(rb"\x1bPtmux;.*?\x1b\\", b"", data, flags=re.S)
    bare = re.sub(rb"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)", b"", bare)
    assert b"\x07" in bare
    tmux.keys("alerts", "q")
    tmux.wait("alerts", lambda s: "EXIT=0" in s, "the TUI to exit")
