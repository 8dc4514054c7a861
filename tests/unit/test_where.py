"""Where a run is (backend, host, job id, the engine's view), read from real run folders."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from runner.backends.base import BackendStatus
from runner.backends.intent import record_handle, write_intent
from runner.backends.where import (
    ENGINE,
    Where,
    latest_intent_attempt,
    read_engine_view,
    record_engine_view,
    where,
)
from runner.model import RunSpec, Status
from runner.placement import Placement
from runner.registry import Registry


def _run(reg: Registry, backend: str = "slurm") -> str:
    run_id = reg.allocate_id()
    placement = Placement(backend=backend, partition="gpu" if backend == "slurm" else None)
    reg.create(
        RunSpec(
            id=run_id,
            name=f"r{run_id}",
            command=("true",),
            cwd="/",
            created_at=time.time(),
            placement=placement,
        )
    )
    return run_id


def test_a_local_run_is_local_and_reads_nothing_more(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = _run(reg, "local")
    assert where(reg, run_id) == Where()
    assert where(reg, run_id).is_local
    assert reg.load(run_id).backend == "local"
    assert reg.load(run_id).to_json()["backend"] == "local"


def test_a_slurm_run_before_and_after_its_submission(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = _run(reg)
    assert reg.load(run_id).backend == "slurm"
    w = where(reg, run_id)
    assert (w.backend, w.host, w.handle, w.engine_state, w.checked_at) == (
        "slurm",
        "",
        "",
        "",
        None,
    )
    intent = write_intent(reg, run_id, 1, backend="slurm", key=f"bp-{run_id}-1", host="login1")
    w = where(reg, run_id)
    assert (w.handle, w.host, w.submitted_from) == ("", "", "login1")  # submitter is not the node
    record_handle(reg, run_id, intent, "4242")
    record_engine_view(reg, run_id, BackendStatus("pending", "Resources", "4242", ""), now=100.0)
    w = where(reg, run_id)
    assert (w.handle, w.engine_state, w.engine_reason, w.checked_at) == (
        "4242",
        "pending",
        "Resources",
        100.0,
    )
    assert w.queue_reason(Status.QUEUED) == "Resources"
    assert not w.disagrees(Status.QUEUED)
    # The engine names the node once it runs; the supervisor's state.json wins over it.
    record_engine_view(reg, run_id, BackendStatus("running", "", "4242", "node07"))
    assert where(reg, run_id).host == "node07"
    state = json.loads((reg.run_dir(run_id) / "spec.json").read_text())  # any object will do
    (reg.run_dir(run_id) / "state.json").write_text(json.dumps({**state, "host": "node08"}))
    assert where(reg, run_id).host == "node08"


def test_the_engine_file_is_private_atomic_and_exactly_shaped(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = _run(reg)
    record_engine_view(
        reg, run_id, BackendStatus("unknown", "no accounting", "17", "n1"), now=123.5
    )
    path = reg.run_dir(run_id) / ENGINE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == {
        "state": "unknown",
        "reason": "no accounting",
        "handle": "17",
        "host": "n1",
        "at": 123.5,
    }
    assert not [n for n in os.listdir(reg.run_dir(run_id)) if n.startswith(".tmp-")]
    with pytest.raises(ValueError, match="engine state 'done'"):
        record_engine_view(reg, run_id, BackendStatus("done"))
    assert json.loads(path.read_text())["state"] == "unknown"  # the refused write left it


def test_disagreement_is_what_contradicts_ours(tmp_path: Path) -> None:
    ended = Where("slurm", engine_state="ended", engine_reason="COMPLETED")
    assert ended.disagrees(Status.RUNNING)
    assert not ended.disagrees(Status.COMPLETED)
    assert ended.engine_text() == "ended (COMPLETED)"
    unknown = Where("slurm", engine_state="unknown", engine_reason="no accounting")
    assert unknown.disagrees(Status.RUNNING)
    assert not unknown.disagrees(Status.COMPLETED)  # a finished run the engine forgot: no news
    running = Where("ray", engine_state="running")
    assert running.disagrees(Status.LOST)
    assert running.disagrees(Status.QUEUED)
    assert not running.disagrees(Status.PAUSED)
    assert not Where("ray").disagrees(Status.RUNNING)  # nobody asked the engine
    assert (
        Where("slurm", engine_state="pending", engine_reason="Priority").queue_reason(
            Status.RUNNING
        )
        == ""
    )
    assert ended.to_json(Status.RUNNING)["engine_disagrees"] is True


def test_the_latest_attempt_rules_and_an_old_engine_view_is_dropped(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = _run(reg, "ray")
    first = write_intent(reg, run_id, 1, backend="ray", key="bp-1", host="a")
    record_handle(reg, run_id, first, "bp-1")
    record_engine_view(reg, run_id, BackendStatus("ended", "FAILED", "bp-1", "a"))
    second = write_intent(reg, run_id, 10, backend="ray", key="bp-10", host="b")
    assert latest_intent_attempt(reg.run_dir(run_id)) == 10  # numerically, not by name
    record_handle(reg, run_id, second, "bp-10")
    w = where(reg, run_id)
    assert (w.handle, w.engine_state, w.submitted_from) == ("bp-10", "", "b")


def test_damaged_files_never_raise(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = _run(reg)
    folder = reg.run_dir(run_id)
    (folder / ENGINE).write_text("{not json")
    (folder / "submit-1.json").write_text('{"backend": "slurm"}')  # no key: unreadable intent
    (folder / "state.json").write_text("[1, 2]")
    (folder / "submit-x.json").write_text("{}")  # not an attempt number: ignored
    assert read_engine_view(reg, run_id) is None
    assert where(reg, run_id) == Where("slurm")
    (folder / ENGINE).write_text(json.dumps({"state": "exploded"}))
    assert where(reg, run_id) == Where("slurm")
    (folder / ENGINE).write_text(json.dumps({"state": "running", "at": True, "reason": 7}))
    assert where(reg, run_id) == Where("slurm", engine_state="running", checked_at=None)
    (folder / "spec.json").write_text("garbage")
    assert where(reg, run_id) == Where()  # an unreadable spec shows as local, like listing


def test_a_cached_listing_entry_says_its_backend_without_being_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runner.registry as registry_mod
    from runner.durable import write_json
    from runner.model import ProcessIdentity, RunState

    monkeypatch.setattr(registry_mod, "CACHE_SETTLE_S", 0.0)
    reg = Registry(tmp_path)
    backends = {}
    for backend in ("local", "slurm", "ray"):
        run_id = _run(reg, backend)
        backends[run_id] = backend
        state = RunState(
            run_id=run_id,
            attempt=1,
            status=Status.COMPLETED,
            updated_at=2.0,
            supervisor=ProcessIdentity(pid=999_999, start_ticks=1, boot_id="another-boot"),
            exit_code=0,
        )
        write_json(reg.run_dir(run_id) / "state.json", state.to_json())
    fresh = {v.id: v.backend for v in reg.list_runs()}
    assert fresh == backends
    cached = reg.list_runs()
    assert all(v.raw is not None for v in cached)  # served from the cache
    assert {v.id: v.backend for v in cached} == backends
    assert all("cached" not in v.__dict__ for v in cached)  # found without decoding
    assert {v.id: v.to_json()["backend"] for v in cached} == backends
