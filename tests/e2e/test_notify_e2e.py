"""Notifications end to end: real supervisors fire real hooks, with no TUI open."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runner.registry import Registry
from tests.conftest import Cli, wait_until

NAN_SCRIPT = """
import json, time
def log(step, loss):
    print(json.dumps({"step": step, "loss": loss}), flush=True)
for s in range(1, 4):
    log(s, 1.0 / s)
log(4, float("nan"))          # goes NaN ...
time.sleep(0.8)
log(5, 0.3)                   # ... recovers ...
time.sleep(0.8)
log(6, float("nan"))          # ... and goes NaN again: still one notification
time.sleep(0.8)
"""

DOCUMENTED_KEYS = {
    "event", "run_id", "name", "group", "attempt", "status", "reason", "exit_code", "signal",
    "step", "metric", "value", "best", "host", "run_dir", "time", "message",
}  # fmt: skip


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def notified(run_dir: Path) -> list[dict[str, Any]]:
    return [e for e in lines(run_dir / "events.jsonl") if e.get("event") == "notified"]


def supervisors_gone(cli: Cli, ids: list[str]) -> bool:
    reg = Registry(cli.home)
    return not any(reg.supervisor_locked(i) for i in ids)


def test_a_run_that_goes_nan_fires_the_nan_hook_once(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "hook.out"
    # The hook outlives the run (it sleeps first): the supervisor's clean-up must spare it.
    hook = f'sleep 3; cat >> {out}; echo "$BACKPROP_EVENT $BACKPROP_RUN_ID" >> {out}.env'
    run_id = cli.run_script(NAN_SCRIPT, name="nan", notify="nan", notify_cmd=hook)
    run_dir = cli.home / "runs" / run_id
    cli.wait_status(run_id, "completed", "failed", timeout=60)
    wait_until(lambda: lines(run_dir / "notify.jsonl"), timeout=30, message="the hook's outcome")
    wait_until(lambda: supervisors_gone(cli, [run_id]), timeout=30, message="the supervisor")
    (event,) = lines(out)
    assert set(event) == DOCUMENTED_KEYS
    assert event["event"] == "nan" and event["run_id"] == run_id and event["name"] == "nan"
    assert event["attempt"] == 1 and event["metric"] == "loss" and event["value"] == "nan"
    assert event["step"] == 4 and event["status"] == "running"
    assert event["run_dir"] == str(run_dir)
    assert (out.parent / "hook.out.env").read_text() == f"nan {run_id}\n"
    assert [(e["kind"], e["attempt"]) for e in notified(run_dir)] == [("nan", 1)]
    (outcome,) = lines(run_dir / "notify.jsonl")
    assert outcome["outcome"] == "ok" and outcome["event"] == "nan"


def test_a_sweep_fires_done_once_when_its_last_run_ends(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "sweep.out"
    script = cli.cwd / "seeded.py"
    script.write_text(
        "import argparse, json\n"
        "p = argparse.ArgumentParser(); p.add_argument('--seed', type=int)\n"
        "a = p.parse_args()\n"
        "for s in range(1, 6): print(json.dumps({'step': s, 'loss': 1 / s + a.seed}))\n"
    )
    submitted = cli.json(
        "run", "--notify", "sweep", "--notify-cmd", f"cat >> {out}", str(script),
        "--sweep", "seed=0,1,2",
    )  # fmt: skip
    ids = submitted["ids"]
    for run_id in ids:
        cli.wait_status(run_id, "completed", timeout=60)
    wait_until(lambda: lines(out), timeout=30, message="the sweep's notification")
    wait_until(lambda: supervisors_gone(cli, ids), timeout=30, message="every supervisor")
    (event,) = lines(out)
    assert event["event"] == "sweep_done" and event["group"] == submitted["group"]
    assert sorted(r["run_id"] for r in event["runs"]) == sorted(ids)
    assert event["counts"] == {"completed": 3}
    kinds = [e["kind"] for i in ids for e in notified(cli.home / "runs" / i)]
    assert kinds == ["sweep_done"]


def test_a_hook_that_hangs_is_killed_and_the_run_is_unaffected(cli: Cli, tmp_path: Path) -> None:
    pidfile = tmp_path / "hook.pid"
    hook = f"echo $$ > {pidfile}; exec sleep 1000"
    run_id = cli.run_script(
        "print('loss: 0.5')\n", name="quick", notify="done", notify_cmd=hook, notify_timeout="4s"
    )
    run_dir = cli.home / "runs" / run_id
    done = cli.wait_status(run_id, "completed", timeout=60)
    assert done["exit_code"] == 0 and done["reason"] == "exit 0"
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=30))
    (outcome,) = wait_until(lambda: lines(run_dir / "notify.jsonl"), timeout=30)
    assert outcome["outcome"] == "timeout" and outcome["duration_s"] >= 4
    assert not _alive(pid)
    # The run's record was complete before the hook was even killed.
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "completed" and state["ended_at"] < outcome["t"] + 4


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead too
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_lost_run_is_notified_once_by_whoever_notices(cli: Cli, tmp_path: Path) -> None:
    from runner import notify

    out = tmp_path / "lost.out"
    # The trainer drops Backprop's environment (as in test_lifecycle's UNMARKED), so no new
    # supervisor may re-adopt it: its run stays lost, for the hook to report.
    run_id = cli.run_script(
        "import os, sys\nprint('loss: 1.0', flush=True)\n"
        "os.execve(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)'], {})\n",
        name="victim",
        notify="lost",
        notify_cmd=f"cat >> {out}",
    )
    registry = Registry(cli.home)
    cli.wait_status(run_id, "running", timeout=60)
    assert notify.notify_lost(registry, run_id) is False  # its supervisor is alive
    supervisor = json.loads((registry.run_dir(run_id) / "state.json").read_text())["supervisor"]
    os.kill(supervisor["pid"], 9)
    wait_until(lambda: not registry.supervisor_locked(run_id), message="the supervisor gone")
    cli.wait_status(run_id, "lost", timeout=30)
    assert notify.notify_lost(registry, run_id) is True
    assert notify.notify_lost(registry, run_id) is False  # once
    (event,) = wait_until(lambda: lines(out), timeout=30, message="the lost hook")
    assert event["event"] == "lost" and event["run_id"] == run_id and event["status"] == "lost"
    assert [e["kind"] for e in notified(registry.run_dir(run_id))] == ["lost"]


def test_the_queue_notifies_a_run_it_finds_lost(cli: Cli, tmp_path: Path) -> None:
    """Supervisor and trainer killed at once: nobody of the run is left; the next admission
    round (a command's, or the dispatcher's) finds its place free and fires ``lost``."""
    import signal

    out = tmp_path / "lost.out"
    run_id = cli.run_script(
        "import time\nprint('loss: 1.0', flush=True)\ntime.sleep(600)\n",
        name="victim",
        notify="lost",
        notify_cmd=f"cat >> {out}",
    )
    registry = Registry(cli.home)
    cli.wait_status(run_id, "running", timeout=60)
    state = json.loads((registry.run_dir(run_id) / "state.json").read_text())
    os.kill(state["supervisor"]["pid"], signal.SIGKILL)
    os.killpg(state["trainer"]["pid"], signal.SIGKILL)

    def hook_ran() -> list[dict[str, Any]]:
        cli("ls")  # any command runs a round when places may be free and no dispatcher lives
        return lines(out)

    (event,) = wait_until(hook_ran, timeout=30, interval=0.3, message="the lost hook")
    assert event["event"] == "lost" and event["run_id"] == run_id and event["status"] == "lost"
    assert [e["kind"] for e in notified(registry.run_dir(run_id))] == ["lost"]
