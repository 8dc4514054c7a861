"""The tests of ``tests/unit/test_shared_governor.py`` that start a real process.

That file: An opt-in governor folder shared by a machine's users (issue 12 item 10)
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from governor.reservations import Lease
from governor.shared import prepare
from governor.store import GovernorStore
from runner import identity
from runner.control import run_actions
from tests.unit.test_shared_governor import (  # noqa: F401  (shared: a fixture)
    OTHER,
    admit,
    end,
    reason,
    registry,
    shared,
    spec_in,
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def test_other_owners_entries_count_but_are_never_signalled(
    tmp_path: Path,
    shared: Path,  # noqa: F811  (the fixture imported above)
    sleeper: subprocess.Popen[bytes],
) -> None:
    reg = registry(tmp_path, "alice")
    prepare(shared)
    victim = identity.identity_of(sleeper.pid)
    assert victim is not None
    planted = Lease(run_id="000001", name="x", supervisor=victim, trainer=victim)
    (shared / "state.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "bucket": None,
                "owners": {OTHER: {"leases": {"000001": planted.to_json()}, "waiters": {}}},
            }
        )
    )
    a = spec_in(reg)
    assert admit(reg, shared, max_parallel=1, pause_temperature=1.0).started == []
    assert "max_parallel" in reason(reg, a.id)
    run_actions.start_now(reg, a.id)
    assert admit(reg, shared, max_parallel=1, pause_temperature=1.0).started == [(a.id, 1)]
    end(reg, a.id)
    admit(reg, shared, max_parallel=1)
    state = GovernorStore(reg.root, shared).read()
    assert "000001" not in state.leases  # never one of ours: nothing acts on it
    assert OTHER in state.others
    assert identity.matches(victim)
    assert Path(f"/proc/{sleeper.pid}/stat").read_text().split(") ")[1][0] in "RS"  # not stopped
    sleeper.kill()
    sleeper.wait()
    b = spec_in(reg)
    assert admit(reg, shared, max_parallel=1).started == [(b.id, 1)]  # a dead entry is pruned
    assert GovernorStore(reg.root, shared).read().foreign_leases() == []


def _as_other_user(uid: int, gid: int, job: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``job`` in a forked child that has become ``uid``/``gid`` (no exec: the interpreter
    may live where that user cannot read); return what it returned."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            result = job()
        except BaseException as exc:  # report anything to the parent
            result = {"error": repr(exc)}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    answer: dict[str, Any] = json.loads(data)
    assert "error" not in answer, answer["error"]
    return answer


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_a_real_second_user_counts_the_first_users_run(tmp_path: Path) -> None:
    """Two uids through one group-shared folder: files 0660 in a setgid 2770 folder work."""
    import pwd
    import shutil
    import tempfile

    import governor.policy  # noqa: F401 - imported before the fork: the other user may not read it

    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' here")
    base = Path(tempfile.mkdtemp(prefix="bp-shared-"))
    try:
        base.chmod(0o755)
        shared_dir = base / "governor"
        prepare(shared_dir)
        os.chown(shared_dir, 0, nobody.pw_gid)  # the machine's "GPU users" group
        alice = registry(tmp_path, "alice")
        a = spec_in(alice)
        assert admit(alice, shared_dir, max_parallel=1).started == [(a.id, 1)]
        bob_home = base / "bob"
        bob_home.mkdir()
        os.chown(bob_home, nobody.pw_uid, nobody.pw_gid)

        def bob() -> dict[str, Any]:
            reg = registry(base, "bob")
            b = spec_in(reg)
            res = admit(reg, shared_dir, max_parallel=1)
            return {"admitted": bool(res.started), "reason": reason(reg, b.id)}

        answer = _as_other_user(nobody.pw_uid, nobody.pw_gid, bob)
        assert not answer["admitted"] and "max_parallel 1 reached" in answer["reason"]
        doc = json.loads((shared_dir / "state.json").read_text())
        assert len(doc["owners"]) == 2  # bob's section written next to alice's
        assert os.stat(shared_dir / "state.json").st_uid == nobody.pw_uid
        assert stat.S_IMODE(os.stat(shared_dir / "state.json").st_mode) == 0o660
        end(alice, a.id)
        admit(alice, shared_dir, max_parallel=1)  # alice can still replace bob's file
        assert a.id not in GovernorStore(alice.root, shared_dir).read().leases
    finally:
        shutil.rmtree(base, ignore_errors=True)
