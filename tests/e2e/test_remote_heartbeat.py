"""A run placed on an engine, seen from another host: heartbeat, then the truth (issue 15).

The supervisor is the real one, started as a Slurm batch step starts it (``python -m
runner.supervisor.main`` in the foreground, no engine needed: the run's placement alone makes
it remote).
The "login node" is a process in its own UTS namespace with another host name (``unshare
--uts``): same kernel and boot id, as for two containers on one machine, so the pids it reads
from ``state.json`` are not its own to check, and it must go by the heartbeat.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runner.control.submission import SubmitOptions, submit
from runner.gpu_usage import GPU_FILE, NVIDIA_DRIVER
from runner.heartbeat import read_heartbeat, this_host
from runner.model import Status
from runner.placement import Placement
from runner.registry import Registry
from runner.tickets import ADMITTED, Queue, Ticket
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.slow

GIB = 1 << 30
BEAT_S = 0.3  # the supervisor's heartbeat interval here (5 s in real use)

TRAINER = textwrap.dedent(
    """
    import time
    step = 0
    while True:
        print(f"step {step} loss: {1 / (step + 1):.4f}", flush=True)
        step += 1
        time.sleep(0.05)
    """
)

# Polls the run from the "login node" until it reads ``until`` (or 60 s pass); prints the last.
OBSERVER = textwrap.dedent(
    """
    import json, os, sys, time
    from runner.registry import Registry
    reg = Registry(sys.argv[1], adopt=False)
    until, start = sys.argv[3], time.monotonic()
    while True:
        view = reg.load(sys.argv[2])
        if view.status.value == until or time.monotonic() - start > 60:
            break
        time.sleep(0.05)
    print(json.dumps({"host": os.uname().nodename, "status": view.status.value,
                      "reason": view.reason, "after_s": time.monotonic() - start}))
    """
)


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--uts", "sh", "-c", "hostname bp-probe && hostname"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "bp-probe"


def _from_login_node(home: Path, run_id: str, until: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = 'hostname bp-login && exec "$@"'
    out = subprocess.run(
        [
            "unshare",
            "--uts",
            "sh",
            "-c",
            cmd,
            "sh",
            sys.executable,
            "-c",
            OBSERVER,
            str(home),
            run_id,
            until,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["host"] == "bp-login"
    return result


def _start_remote_run(
    home: Path, work: Path, **env_extra: str
) -> tuple[Registry, str, subprocess.Popen[bytes]]:
    """A run placed on Slurm, started by hand the way its batch script starts it."""
    reg = Registry(home)
    script = work / "train.py"
    script.write_text(TRAINER)
    opts = SubmitOptions(cwd=str(work), start=False)
    spec = submit(reg, [sys.executable, str(script)], name="remote", options=opts)
    reg.create(replace(spec, placement=Placement(backend="slurm")))
    Queue(home).write_ticket(
        Ticket(
            run_id=spec.id,
            attempt=1,
            kind=ADMITTED,
            admitted_at=time.time(),
            reason="handed to slurm",
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BACKPROP_HOME": str(home),
        "BACKPROP_HEARTBEAT_S": str(BEAT_S),
        **env_extra,
    }
    sup = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runner.supervisor.main",
            "--home",
            str(home),
            "--run",
            spec.id,
            "--attempt",
            "1",
        ],
        env=env,
        cwd=work,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    wait_until(
        lambda: (s := reg.read_state(spec.id)) is not None and s.status is Status.RUNNING,
        timeout=30,
        message="the remote run to be running",
    )
    return reg, spec.id, sup


def test_a_remote_run_whose_node_dies_is_lost_from_another_host(home: Path, tmp_path: Path) -> None:
    if not _can_unshare():
        pytest.skip("needs root for unshare --uts (a login node with a host name of its own)")
    reg, run_id, sup = _start_remote_run(home, tmp_path)
    state = reg.read_state(run_id)
    assert state is not None and state.host == this_host()  # where it ran, for show and tree
    beat = wait_until(lambda: read_heartbeat(reg.run_dir(run_id)), message="a heartbeat")
    assert (beat.host, beat.pid, beat.every_s) == (this_host(), sup.pid, BEAT_S)
    wait_until(  # several intervals pass: a beating supervisor never goes stale
        lambda: (b := read_heartbeat(reg.run_dir(run_id))) and b.at > beat.at + 4 * BEAT_S,
        message="more heartbeats",
    )
    seen = _from_login_node(home, run_id, "running")
    assert seen["status"] == "running" and seen["after_s"] < 5, seen
    if not os.path.exists(NVIDIA_DRIVER):  # no NVML here: the supervisor writes no sample
        assert not (reg.run_dir(run_id) / GPU_FILE).exists()

    # The node dies: supervisor and trainer gone at once, nothing recorded.
    assert state.trainer is not None
    os.killpg(state.trainer.pid, signal.SIGKILL)
    sup.kill()
    sup.wait(10)
    assert reg.read_state(run_id).status is Status.RUNNING  # type: ignore[union-attr]

    here = Registry(home, adopt=False).load(run_id)  # on its own host the pids tell at once
    assert here.status is Status.LOST and "supervisor gone" in here.reason
    seen = _from_login_node(home, run_id, "lost")
    assert seen["status"] == "lost", seen
    assert "no heartbeat from " + this_host() in seen["reason"], seen
    # No engine answers here (Slurm's absent): lost once silent for 12 intervals, not forever.
    assert seen["after_s"] < 30, seen
    assert reg.load(run_id).state.ended_at is not None  # type: ignore[union-attr]


def test_a_remote_supervisor_hears_a_stop_without_a_signal(home: Path, tmp_path: Path) -> None:
    reg, run_id, sup = _start_remote_run(home, tmp_path)
    requests = reg.run_dir(run_id) / "requests"
    (requests / "0001-stop.json").write_text(json.dumps({"action": "stop"}))  # no SIGUSR1
    assert sup.wait(30) == 0
    state = reg.read_state(run_id)
    assert state is not None and state.status is Status.STOPPED, state


def test_the_supervisor_samples_its_own_trees_gpu_memory(home: Path, tmp_path: Path) -> None:
    """NVML on the run's node (faked: this machine has no GPU) into ``gpu.json``."""
    gpus = tmp_path / "gpus.json"
    other = {"pid": 1, "memory": 7 * GIB}  # someone else's process: never counted
    gpus.write_text(json.dumps([{"memory_total": 80 * GIB, "processes": [other]}, {}]))
    reg, run_id, sup = _start_remote_run(home, tmp_path, BACKPROP_FAKE_NVML=str(gpus))
    state = reg.read_state(run_id)
    assert state is not None and state.trainer is not None
    mine = {"pid": state.trainer.pid, "memory": 3 * GIB}
    # Replaced, never rewritten in place: the supervisor samples as soon as the trainer runs,
    # just when this line does, and a fake file read half-written means "no NVML" for good.
    changed = tmp_path / "gpus.json.new"
    changed.write_text(
        json.dumps([{"memory_total": 80 * GIB, "processes": [other]}, {"processes": [mine]}])
    )
    changed.replace(gpus)
    sample = wait_until(  # the next sample (every 5 s) sees the trainer on GPU 1
        lambda: (p := reg.run_dir(run_id) / GPU_FILE).exists() and json.loads(p.read_text()),
        timeout=30,
        message="gpu.json",
    )
    assert sample["host"] == this_host() and sample["used_bytes"] == 3 * GIB
    assert [(d["index"], d["used_bytes"]) for d in sample["devices"]] == [(1, 3 * GIB)]
    sup.send_signal(signal.SIGTERM)
    assert sup.wait(30) == 0


def test_a_supervisor_declared_lost_gives_way_to_the_retry(home: Path, tmp_path: Path) -> None:
    """A node cut off long enough is lost and retried; if it comes back, its old supervisor
    must not write over the new attempt's records: it ends its trainer and leaves."""
    reg, run_id, sup = _start_remote_run(home, tmp_path)
    state = reg.read_state(run_id)
    assert state is not None and state.trainer is not None
    Queue(home).write_ticket(Ticket(run_id=run_id, attempt=2, reason="retry 1 after lost"))
    assert sup.wait(30) == 5  # EXIT_SUPERSEDED
    with pytest.raises(ProcessLookupError):
        os.kill(state.trainer.pid, 0)
    after = reg.read_state(run_id)
    assert after is not None and (after.attempt, after.status) == (1, Status.RUNNING)
    events = [json.loads(line) for line in (reg.run_dir(run_id) / "events.jsonl").open()]
    assert events[-1]["event"] == "superseded" and events[-1]["by_attempt"] == 2
