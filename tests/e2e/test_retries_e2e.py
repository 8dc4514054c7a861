"""Automatic retries with real processes: transient failures come back from the latest
checkpoint a bounded number of times; a user's stop and a crash loop do not."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from governor import dispatcher
from runner.model import Status
from runner.registry import Registry
from runner.tickets import Queue
from tests.conftest import Cli, wait_until

pytestmark = pytest.mark.slow

FLAKY = textwrap.dedent(
    """
    import json, os, sys
    attempt = int(os.environ["BACKPROP_ATTEMPT"])
    resumed = os.environ.get("BACKPROP_RESUME_FROM")
    ckpt = os.path.join(os.environ["BACKPROP_CHECKPOINT_DIR"], f"ckpt-{attempt}.pt")
    print(json.dumps({"step": attempt, "loss": 1.0 / attempt}), flush=True)
    with open(ckpt, "w") as f:
        f.write(str(attempt))
    print("resumed from", resumed, flush=True)
    if attempt < 3:
        print("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", flush=True)
        sys.exit(1)
    print("done", flush=True)
    """
)


def configure(home: Path) -> None:
    (home / "backprop.toml").write_text('[retry]\nbackoff = "0.2s"\n')


def test_fails_twice_then_completes_from_its_checkpoints(cli: Cli, home: Path) -> None:
    configure(home)
    run_id = cli.run_script(FLAKY, name="flaky", retries="3")
    done = cli.wait_status(run_id, "completed", timeout=60)
    assert done["attempt"] == 3
    assert done["attempt_text"] == "attempt 3 of 4, retry after OOM"
    out = (Registry(home).run_dir(run_id) / "output.log").read_text()
    ckpts = Registry(home).run_dir(run_id) / "checkpoints"
    assert "resumed from None" in out
    assert f"resumed from {ckpts / 'ckpt-1.pt'}" in out
    assert f"resumed from {ckpts / 'ckpt-2.pt'}" in out
    starts = [e for e in done["events"] if e["event"] == "started"]
    assert [e["attempt"] for e in starts] == [1, 2, 3]


HANGS = textwrap.dedent(
    """
    import json, os, time
    attempt = int(os.environ["BACKPROP_ATTEMPT"])
    print(json.dumps({"step": attempt, "loss": 0.5}), flush=True)
    go = os.path.join(os.environ["BACKPROP_RUN_DIR"], f"go-{attempt}")
    while attempt == 1 and not os.path.exists(go):
        time.sleep(0.05)
    print("attempt", attempt, "ends", flush=True)
    """
)


def test_a_killed_supervisor_is_re_adopted_not_retried(cli: Cli, home: Path) -> None:
    """The trainer outlives its supervisor: the run is re-adopted (never lost meanwhile, and no
    second attempt starts beside it); its end is recorded by the new supervisor."""
    configure(home)
    reg = Registry(home)
    run_id = cli.run_script(HANGS, name="hangs", retries="1")
    cli.wait_status(run_id, "running")
    state = reg.read_state(run_id)
    assert state is not None
    os.kill(state.supervisor.pid, signal.SIGKILL)
    wait_until(
        lambda: (
            (s := reg.read_state(run_id)) is not None and s.supervisor.pid != state.supervisor.pid
        ),
        timeout=30,
        message="a new supervisor",
    )
    for _ in range(3):
        dispatcher.kick(reg)  # rounds see it alive: no retry, no lost
        view = reg.load(run_id)
        assert (view.attempt, view.status.value) == (1, "running"), view.reason
    (reg.run_dir(run_id) / "go-1").touch()
    done = cli.wait_status(run_id, "completed", timeout=60)
    # The adopter reads the exit code when it can (completed as attempt 1); when it cannot,
    # the end is "lost: exit code unknown" and the policy retries it.
    assert (done["attempt"], done["attempt_text"]) in (
        (1, "attempt 1 of 2"),
        (2, "attempt 2 of 2, retry after lost"),
    ), done


def test_a_run_lost_for_good_is_retried(cli: Cli, home: Path) -> None:
    """Supervisor and trainer killed at once: lost for good, so the policy retries it."""
    configure(home)
    reg = Registry(home)
    run_id = cli.run_script(HANGS, name="hangs", retries="1")
    cli.wait_status(run_id, "running")
    state = reg.read_state(run_id)
    assert state is not None and state.trainer is not None
    os.kill(state.supervisor.pid, signal.SIGKILL)
    os.killpg(state.trainer.pid, signal.SIGKILL)
    done = cli.wait_status(run_id, "completed", timeout=60)
    assert done["attempt"] == 2 and done["attempt_text"] == "attempt 2 of 2, retry after lost"


def test_a_user_stop_is_never_retried(cli: Cli, home: Path) -> None:
    configure(home)
    reg = Registry(home)
    run_id = cli.run_script(HANGS, name="stopped", retries="3", retry_on="failed,lost,preempted")
    cli.wait_status(run_id, "running")
    cli("stop", run_id)
    cli.wait_status(run_id, "stopped")
    dispatcher.kick(reg)  # a round sees the end (the dispatcher would, too)
    assert reg.load(run_id).attempt == 1
    assert Queue(home).entries() == []


def test_a_script_that_dies_at_once_stops_after_the_crash_loop_rule(cli: Cli, home: Path) -> None:
    configure(home)
    reg = Registry(home)
    run_id = cli.run_script(
        "import sys; sys.exit(3)\n", name="dies", retries="9", retry_on="failed"
    )

    def gave_up() -> bool:
        view = reg.load(run_id)
        return view.status is Status.FAILED and "crash loop" in view.to_json()["attempt_text"]

    wait_until(gave_up, timeout=60, interval=0.2, message="the crash loop rule")
    view = reg.load(run_id)
    assert view.attempt == 3
    assert (
        "crash loop: 3 attempts in a row died before their first metric"
        in (view.to_json()["attempt_text"])
    )
