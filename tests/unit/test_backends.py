"""The backend interface's local backend: describe and logs read the run folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.backends import Backend, get_backend
from runner.backends.base import ENDED, PENDING
from runner.model import RunSpec
from runner.registry import OUTPUT, Registry
from runner.tickets import Queue, Ticket, enqueue


def test_local_backend_reads_the_run_folder(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = reg.allocate_id()
    reg.create(RunSpec(id=run_id, name="r", command=("true",), cwd="/", created_at=time.time()))
    enqueue(Queue(reg.root), Ticket(run_id=run_id, attempt=1, queued_at=time.time()))
    be: Backend = get_backend("local")
    assert (be.name, be.queues_itself, be.remote) == ("local", False, False)
    st = be.describe(reg, run_id)
    assert (st.state, st.reason, st.handle) == (PENDING, "queued", run_id)
    (reg.run_dir(run_id) / OUTPUT).write_bytes(b"hello\nworld\n")
    data, nxt = be.logs(reg, run_id, 6, 100)
    assert (data, nxt) == (b"world\n", 12)
    assert be.logs(reg, run_id, nxt, 100) == (b"", 12)
    assert be.cancel(reg, run_id, force=False) == f"stopped queued run {run_id}"
    assert be.describe(reg, run_id).state == ENDED
    with pytest.raises(ValueError, match="unknown backend 'slurm'"):
        get_backend("slurm")
