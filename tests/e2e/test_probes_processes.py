"""The tests of ``tests/unit/test_probes.py`` that start a real process.

That file: Probes: the fake NVML, the real NVML adapter over a stand-in module, the no-driver path
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from governor.probes import (
    run_of_pid,
)


def test_run_of_pid_follows_the_process_group_leader() -> None:
    # A "trainer" leading its own group, with a child that clears its environment.
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " env={})\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "BACKPROP_RUN_ID": "000042"}
    leader = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True, process_group=0
    )
    try:
        assert leader.stdout is not None
        child_pid = int(leader.stdout.readline())
        assert run_of_pid(leader.pid) == "000042"
        assert run_of_pid(child_pid) == "000042"  # its own environment says nothing
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
    assert run_of_pid(os.getpid()) in (None, os.environ.get("BACKPROP_RUN_ID"))
    assert run_of_pid(2**22 + 12345) is None


def test_run_of_pid_rejects_a_malformed_id() -> None:
    env = {**os.environ, "BACKPROP_RUN_ID": "../../etc"}
    p = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, process_group=0
    )
    try:
        deadline, seen = time.monotonic() + 30, False
        while not seen and time.monotonic() < deadline:  # wait until exec has happened
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                seen = b"BACKPROP_RUN_ID=../../etc\0" in f.read()
            if not seen:
                time.sleep(0.01)
        # Without this, a child still between fork and exec (no such variable yet) would
        # make the test pass without looking at a malformed id at all.
        assert seen, "the child never ran with the malformed id"
        assert run_of_pid(p.pid) is None
    finally:
        p.kill()
        p.wait()
