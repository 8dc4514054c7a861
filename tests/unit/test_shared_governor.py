"""An opt-in governor folder shared by a machine's users (issue 12 item 10).

Bucket, queue, ``max_parallel`` and reservations lived only in ``$BACKPROP_HOME/governor/``,
so two users of one GPU box never saw each other's runs. With ``[governor] shared_dir`` (or
``BACKPROP_GOVERNOR_DIR``) they share one state; everything in it is handled as input planted
by a hostile user: symlinks are never followed, garbage is ignored with a warning, and other
owners' entries count for admission but are never signalled. Admission happens in the
dispatcher's round (:class:`governor.admit_round.Round`), which these tests run directly.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from governor.admit_round import Round, RoundResult
from governor.fake_nvml import FakeNvml
from governor.probes import HostInfo, probe_gpus
from governor.requests import Snapshot
from governor.settings import GovernorSettings
from governor.shared import ENV_VAR, SharedDirError, owner_key, prepare
from governor.store import GovernorStore, store_for
from runner import identity
from runner.config import ConfigError
from runner.durable import write_json
from runner.model import Resources, RunSpec, RunState, Status
from runner.registry import STATE, Registry
from runner.tickets import Queue, Ticket, enqueue

GIB = 1 << 30
OTHER = "1001:0123456789abcdef"  # another user's section


def fixed_host() -> HostInfo:
    return HostInfo(
        cpu_percent=5.0, load1=0.1, cpu_count=8, ram_total=64 * GIB, ram_available=48 * GIB
    )


def registry(tmp_path: Path, name: str) -> Registry:
    r = Registry(tmp_path / name)
    r.ensure()
    return r


def spec_in(reg: Registry) -> RunSpec:
    spec = RunSpec(
        id=reg.allocate_id(),
        name="r",
        command=("python3", "t.py"),
        cwd="/tmp",
        created_at=time.time() - 60,
        resources=Resources(gpus=0),
    )
    reg.create(spec)
    enqueue(Queue(reg.root), Ticket(run_id=spec.id, attempt=1, queued_at=spec.created_at))
    return spec


def admit(reg: Registry, shared: Path, **settings: Any) -> RoundResult:
    """One admission round of ``reg`` (what its dispatcher or a submitting command runs)."""
    return Round(
        reg,
        GovernorSettings(shared_dir=str(shared), **settings),
        lambda: Snapshot(
            fixed_host(), probe_gpus(FakeNvml(error="none"), resolve_run=None), time.time()
        ),
    ).run()


def reason(reg: Registry, run_id: str) -> str:
    ticket = Queue(reg.root).read_ticket(run_id)
    assert ticket is not None
    return ticket.reason


def end(reg: Registry, run_id: str) -> None:
    """The run's attempt is over (what its supervisor writes at the end)."""
    me = identity.identity_of(os.getpid())
    assert me is not None
    state = RunState(run_id, 1, Status.COMPLETED, time.time(), me, reason="exit 0")
    write_json(reg.run_dir(run_id) / STATE, state.to_json())


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(ENV_VAR, raising=False)
    return tmp_path / "governor-shared"


def test_two_registries_share_max_parallel_and_the_queue(tmp_path: Path, shared: Path) -> None:
    alice, bob = registry(tmp_path, "alice"), registry(tmp_path, "bob")
    a, b = spec_in(alice), spec_in(bob)
    assert admit(alice, shared, max_parallel=1).started == [(a.id, 1)]
    assert admit(bob, shared, max_parallel=1).started == []
    assert "max_parallel 1 reached" in reason(bob, b.id)
    end(alice, a.id)
    assert admit(alice, shared, max_parallel=1).started == []  # its lease ends here
    assert admit(bob, shared, max_parallel=1).started == [(b.id, 1)]
    # Each registry sees its own run as its own and the other's only as counted.
    state = GovernorStore(alice.root, shared).read()
    assert state.leases == {} and [x.run_id for x in state.foreign_leases()][0].endswith(b.id)


def test_the_folder_is_created_group_shared_and_files_are_group_writable(
    tmp_path: Path, shared: Path
) -> None:
    old = os.umask(0o077)  # a strict umask must not make it unusable for the group
    try:
        reg = registry(tmp_path, "alice")
        a = spec_in(reg)
        assert admit(reg, shared).started == [(a.id, 1)]
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o2770
    assert stat.S_IMODE(os.stat(shared / "state.json").st_mode) == 0o660
    doc = json.loads((shared / "state.json").read_text())
    assert a.id in doc["owners"][owner_key(reg.root)]["leases"]
    # Learned VRAM peaks stay private to the registry.
    assert GovernorStore(reg.root, shared).learned_path.parent == reg.root / "governor"


def test_the_environment_variable_wins_over_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    store = store_for(tmp_path / "home", str(tmp_path / "from-config"))
    assert store.shared_dir == tmp_path / "from-env"
    monkeypatch.delenv(ENV_VAR)
    assert store_for(tmp_path / "home", "").shared_dir is None
    with pytest.raises(ConfigError, match="shared_dir"):
        GovernorSettings.from_dict({"shared_dir": 3})


HOSTILE: list[Any] = [
    b"\xff\xfe garbage",
    b"[1, 2, 3]",
    b'{"schema": 1, "bucket": {"tokens": -1e300, "t": 1e300}, "owners": []}',
    b'{"schema": 1, "owners": {"../../etc": {}, "1001:zz": 1, "x": null}}',
    b'{"schema": 1, "bucket": NaN}',
    json.dumps(
        {
            "schema": 1,
            "bucket": {"tokens": 5, "t": 1e18},
            "owners": {
                OTHER: {
                    "leases": {
                        "000001": {"run_id": "000001", "vram": -5},
                        "000002": {"run_id": "000003"},
                        "../x": {},
                        "000004": {"run_id": "000004", "gpus": [True, "a"], "vram": 10**400},
                        "000005": [],
                    },
                    "waiters": {"000001": {"request": "\x1b]0;x\x07"}, "000002": None},
                },
                "2002:0123456789abcdef": "not a section",
            },
        }
    ).encode(),
    b"[" * 100_000,
]


@pytest.mark.parametrize("content", HOSTILE, ids=range(len(HOSTILE)))
def test_garbage_is_ignored_with_a_warning_and_never_crashes(
    tmp_path: Path, shared: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry(tmp_path, "alice")
    prepare(shared)
    (shared / "state.json").write_bytes(content)
    a = spec_in(reg)
    assert admit(reg, shared, max_parallel=1, bucket_capacity=1, bucket_rate=1.0).started == [
        (a.id, 1)
    ]
    assert "backprop: warning: ignored" in capsys.readouterr().err
    assert json.loads((shared / "state.json").read_text())["schema"] == 1  # rewritten clean


def test_a_bucket_stamped_in_the_future_counts_from_now() -> None:
    from governor.store import GovernorState

    now = time.time()
    doc = {"schema": 1, "bucket": {"tokens": 0.0, "t": 1e18}, "owners": {}}
    bucket = GovernorState.from_shared(doc, OTHER, now).bucket
    assert bucket is not None and bucket.updated_at == now  # refills from now on, not never


def test_symlinks_planted_in_the_folder_are_never_followed(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = registry(tmp_path, "alice")
    prepare(shared)
    victim_state = tmp_path / "victim-state"
    victim_state.write_text("precious")
    victim_lock = tmp_path / "victim-lock"
    (shared / "state.json").symlink_to(victim_state)
    (shared / "lock").symlink_to(victim_lock)
    a = spec_in(reg)
    assert admit(reg, shared).started == [(a.id, 1)]
    assert victim_state.read_text() == "precious"  # neither read as state nor written
    assert not victim_lock.exists()  # the lock was not created through the link
    assert not (shared / "state.json").is_symlink() and not (shared / "lock").is_symlink()
    assert "symlink" in capsys.readouterr().err


def test_an_unsafe_shared_folder_is_refused_and_the_private_state_used(
    tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    real = tmp_path / "elsewhere"
    real.mkdir()
    shared.symlink_to(real)
    with pytest.raises(SharedDirError, match="symlink"):
        prepare(shared)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(SharedDirError, match="world-writable"):
        prepare(open_dir)
    store = store_for(tmp_path / "home", str(open_dir))
    assert store.shared_dir is None and "world-writable" in capsys.readouterr().err
