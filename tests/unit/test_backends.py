"""The backend interface's local backend: describe and logs read the run folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.backends import Backend, backend_for, get_backend
from runner.backends.base import ENDED, PENDING
from runner.backends.intent import intent_path, read_intent, record_handle, write_intent
from runner.model import RunSpec, ShapeError
from runner.placement import Placement, PlacementError
from runner.registry import OUTPUT, Registry
from runner.tickets import Queue, Ticket, enqueue


def test_local_backend_reads_the_run_folder(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = reg.allocate_id()
    reg.create(RunSpec(id=run_id, name="r", command=("true",), cwd="/", created_at=time.time()))
    enqueue(Queue(reg.root), Ticket(run_id=run_id, attempt=1, queued_at=time.time()))
    be: Backend = get_backend("local")
    assert (be.name, be.queues_itself, be.remote) == ("local", False, False)
    assert be.reachable()[0] is True
    st = be.describe(reg, run_id)
    assert (st.state, st.reason, st.handle) == (PENDING, "queued", run_id)
    (reg.run_dir(run_id) / OUTPUT).write_bytes(b"hello\nworld\n")
    data, nxt = be.logs(reg, run_id, 6, 100)
    assert (data, nxt) == (b"world\n", 12)
    assert be.logs(reg, run_id, nxt, 100) == (b"", 12)
    assert be.cancel(reg, run_id, force=False) == f"stopped queued run {run_id}"
    assert be.describe(reg, run_id).state == ENDED
    with pytest.raises(ValueError, match="unknown backend 'pbs'"):
        get_backend("pbs")
    assert backend_for(reg, run_id) is be


def test_placement_round_trips_and_refuses_what_no_backend_takes(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = reg.allocate_id()
    where = Placement(backend="slurm", partition="gpu", account="lab", extra_args=("--qos=high",))
    spec = RunSpec(
        id=run_id, name="r", command=("true",), cwd="/", created_at=time.time(), placement=where
    )
    reg.create(spec)
    assert reg.read_spec(run_id).placement == where
    old = spec.to_json()
    del old["placement"]  # a spec written before backends existed is local
    assert RunSpec.from_json(old).placement.is_local
    for bad, words in (
        ({"backend": "pbs"}, "unknown backend 'pbs'"),
        ({"backend": "slurm", "partition": "gpu;rm -rf"}, "partition"),
        ({"backend": "slurm", "extra_args": ["qos"]}, "one option"),
        ({"backend": "local", "partition": "gpu"}, "need --backend slurm"),
        ({"backend": "slurm", "address": "http://x"}, "needs --backend ray"),
    ):
        with pytest.raises(PlacementError, match=words):
            Placement.from_json(bad)
        with pytest.raises(ShapeError, match=words):
            RunSpec.from_json({**old, "placement": bad})


def test_intent_is_written_before_and_completed_after_the_submit(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = reg.allocate_id()
    reg.create(RunSpec(id=run_id, name="r", command=("true",), cwd="/", created_at=time.time()))
    assert read_intent(reg, run_id, 1) is None
    intent = write_intent(reg, run_id, 1, backend="slurm", key=f"bp-{run_id}-1", host="h1")
    assert read_intent(reg, run_id, 1) == intent and intent.handle is None
    done = record_handle(reg, run_id, intent, "4242")
    assert read_intent(reg, run_id, 1) == done and done.handle == "4242"
    assert read_intent(reg, run_id, 2) is None
    intent_path(reg, run_id, 2).write_text("{torn")
    assert read_intent(reg, run_id, 2) is None
