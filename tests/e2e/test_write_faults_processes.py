"""The tests of ``tests/unit/test_write_faults.py`` that start a real process.

That file: Write errors, lost supervisors and run markers, without a supervisor process
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import identity
from runner.model import ProcessIdentity, RunState, Status
from runner.registry import OUTPUT, STATE
from runner.supervisor import members, runcgroup
from runner.supervisor.adopt import takeover
from tests.conftest import wait_until
from tests.unit.test_write_faults import make_registry


def _dead_identity() -> ProcessIdentity:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    ident = identity.identity_of(proc.pid)
    proc.wait()
    return ident or ProcessIdentity(proc.pid, 1, identity.boot_id())


def test_a_lost_runs_time_ends_at_its_last_sign_of_life(tmp_path: Path) -> None:
    registry, run_dir, _ = make_registry(tmp_path)
    dead = _dead_identity()
    state = RunState(
        run_id="000001",
        attempt=1,
        status=Status.RUNNING,
        updated_at=time.time() - 500,
        supervisor=dead,
        trainer=dead,
        started_at=time.time() - 600,
    )
    (run_dir / STATE).write_text(__import__("json").dumps(state.to_json()))
    (run_dir / OUTPUT).write_text("last words\n")
    os.utime(run_dir / OUTPUT, (time.time() - 300, time.time() - 300))
    view = registry.load("000001")
    assert view.status is Status.LOST
    ended = view.to_json()["ended_at"]
    assert abs(ended - (time.time() - 300)) < 5  # not "now": the TIME column stops
    assert takeover(registry, "000001", state) == "finalize"


@pytest.fixture
def marked(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "BACKPROP_RUN_ID": "000007", "BACKPROP_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, process_group=0
    )
    try:
        # Its marker is in its environment once it has exec'd: until then /proc shows ours.
        wait_until(lambda: members.find_members("000007", home), timeout=10, message="exec")
        yield proc, home
    finally:
        proc.kill()
        proc.wait()


def test_members_are_found_by_their_marker_only(
    marked: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    proc, home = marked
    assert [i.pid for i in members.find_members("000007", home)] == [proc.pid]
    assert members.find_trainer("000007", home) == identity.identity_of(proc.pid)
    assert members.find_members("000008", home) == []  # another run
    assert members.find_members("000007", tmp_path) == []  # another registry
    assert not members.belongs(os.getpid(), "000007", home)
    assert not members.belongs(1, "000007", home)


def test_a_member_is_signalled_only_while_it_is_that_process(
    marked: tuple[subprocess.Popen[bytes], Path],
) -> None:
    proc, home = marked
    real = identity.identity_of(proc.pid)
    assert real is not None
    reused = ProcessIdentity(proc.pid, real.start_ticks + 1, real.boot_id)
    assert not members.signal_member(reused, signal.SIGKILL, "000007", home)
    assert not members.signal_member(real, signal.SIGKILL, "000008", home)
    assert proc.poll() is None
    ending = members.end_members("000007", home, graceful=False)
    assert ending.ended == [proc.pid] and ending.survivors == []
    assert ending.describe() == "ended 1 process(es)"
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_a_run_cgroup_holds_and_ends_every_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "000001"
    run_dir.mkdir(parents=True)
    path = runcgroup.create(run_dir, "000001", 1)
    if path is None:
        pytest.skip("no writable cgroup v2 here")
    try:
        assert runcgroup.recorded(run_dir, "000001") == path
        proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            preexec_fn=runcgroup.preexec(path),
            start_new_session=True,
        )
        assert runcgroup.contains(path, proc.pid) and runcgroup.pids(path) == [proc.pid]
        assert [i.pid for i in members.find_members("000001", tmp_path)] == [proc.pid]
        assert runcgroup.clear(path) == []
        assert proc.wait(timeout=10) == -signal.SIGKILL and not path.exists()
    finally:
        runcgroup.clear(path)
