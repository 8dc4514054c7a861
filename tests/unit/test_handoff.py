"""Runs placed on an engine that queues itself skip our admission and go to its backend
(issue 15): no local limit holds them, no GPU placement touches them, retries still apply."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from governor import dispatcher
from governor.admit_round import Round
from governor.fake_nvml import FakeNvml
from governor.probes import HostInfo, probe_gpus
from governor.requests import Snapshot
from governor.settings import GovernorSettings
from governor.store import GovernorStore
from runner import backends, identity
from runner.backends.base import ENDED, BackendStatus
from runner.backends.intent import record_handle, write_intent
from runner.durable import write_json
from runner.model import ProcessIdentity, Resources, RunSpec, RunState, Status
from runner.placement import Placement
from runner.registry import STATE, Registry
from runner.retry import RetryPolicy
from runner.tickets import ADMITTED, QUEUED, Queue, Ticket, enqueue

GIB = 1 << 30


class FakeEngine:
    """A backend whose engine queues itself: records what it was handed."""

    name = "slurm"
    queues_itself = True
    remote = True

    def __init__(self) -> None:
        self.submitted: list[tuple[str, int]] = []
        self.view = BackendStatus(state="pending", reason="Resources")

    def submit(self, registry: Registry, run_id: str, attempt: int) -> str:
        self.submitted.append((run_id, attempt))
        intent = write_intent(
            registry, run_id, attempt, backend="slurm", key=f"k{attempt}", host="h"
        )
        record_handle(registry, run_id, intent, str(100 + attempt))
        return str(100 + attempt)

    def describe(self, registry: Registry, run_id: str) -> BackendStatus:
        return self.view


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setitem(backends._BACKENDS, "slurm", fake)
    return fake


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    r = Registry(tmp_path / "home")
    r.ensure()
    return r


def submit(
    reg: Registry, placement: Placement, *, gpus: int | None = None, retries: int = 0
) -> str:
    run_id = reg.allocate_id()
    spec = RunSpec(
        id=run_id,
        name=f"run-{run_id}",
        command=("python3", "train.py"),
        cwd="/tmp",
        created_at=time.time(),
        resources=Resources(gpus=gpus),
        placement=placement,
    )
    reg.create(spec)
    policy = RetryPolicy(retries=retries, retry_on=("lost",), backoff_s=1.0) if retries else None
    enqueue(
        Queue(reg.root),
        Ticket(
            run_id=run_id,
            attempt=1,
            queued_at=spec.created_at,
            policy=policy.to_json() if policy else {},
            retry={"of": 1 + retries} if retries else {},
        ),
    )
    return run_id


def make_round(reg: Registry, clock: list[float], **settings: Any) -> Round:
    fake = FakeNvml([{"memory_total": 24 * GIB}])
    host = HostInfo(
        cpu_percent=5, load1=0.1, cpu_count=8, ram_total=64 * GIB, ram_available=48 * GIB
    )
    return Round(
        reg,
        GovernorSettings(**settings),
        lambda: Snapshot(host, probe_gpus(fake, resolve_run=None), clock[0]),
        clock=lambda: clock[0],
    )


def test_engine_runs_pass_local_limits_and_keep_the_engines_gpus(
    reg: Registry, engine: FakeEngine
) -> None:
    clock = [time.time()]
    local = submit(reg, Placement(), gpus=1)
    remote = [submit(reg, Placement(backend="slurm"), gpus=1) for _ in range(3)]
    res = make_round(reg, clock, max_parallel=1).run()
    assert sorted(res.started) == sorted([(local, 1), *((r, 1) for r in remote)])
    for r in remote:
        t = Queue(reg.root).read_ticket(r)
        assert t is not None and t.kind == ADMITTED and t.gpus == () and t.env == {}
        assert t.reason == "handed to slurm"
    leases = GovernorStore(reg.root).read().leases
    assert {rid: lease.backend for rid, lease in leases.items()} == {
        local: "local",
        **dict.fromkeys(remote, "slurm"),
    }
    # The same round's caller starts each through its own backend.
    started_local: list[str] = []

    class Local:
        def submit(self, registry: Registry, run_id: str, attempt: int) -> str:
            started_local.append(run_id)
            return run_id

    dispatcher.start_admitted(reg, res, Local())  # type: ignore[arg-type]
    assert started_local == [local]
    assert sorted(engine.submitted) == sorted((r, 1) for r in remote)
    # Pending in the engine: queued with the engine's reason, and its lease holds.
    view = reg.load(remote[0])
    assert (view.status, view.reason) == (Status.QUEUED, "slurm: Resources (job 101)")
    clock[0] += 10
    res = make_round(reg, clock, max_parallel=1).run()
    assert res.respawn == [(local, 1)]  # our fake never started its supervisor; the engine's
    assert set(remote) <= set(GovernorStore(reg.root).read().leases)  # pending ones are kept


def test_a_lost_engine_attempt_is_retried_and_handed_over_again(
    reg: Registry, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [time.time()]
    run_id = submit(reg, Placement(backend="slurm"), retries=1)
    res = make_round(reg, clock).run()
    dispatcher.start_admitted(reg, res, None)
    assert engine.submitted == [(run_id, 1)]
    # Its supervisor ran on a node (another boot), then the node died; the engine says ended.
    node = ProcessIdentity(pid=4242, start_ticks=1, boot_id="another-boot")
    state = RunState(
        run_id=run_id,
        attempt=1,
        status=Status.RUNNING,
        updated_at=clock[0] - 600,
        supervisor=node,
        host="node7",
    )
    write_json(reg.run_dir(run_id) / STATE, state.to_json())
    engine.view = BackendStatus(state=ENDED, reason="NODE_FAIL")
    monkeypatch.setattr("runner.remote_status.DESCRIBE_EVERY_S", 0.0)
    view = reg.load(run_id)
    assert view.status is Status.LOST and "NODE_FAIL" in view.reason
    clock[0] += 1
    res = make_round(reg, clock).run()
    t = Queue(reg.root).read_ticket(run_id)
    assert t is not None and t.attempt == 2 and t.kind == QUEUED
    clock[0] = max(clock[0], t.not_before) + 1
    res = make_round(reg, clock).run()
    assert res.started == [(run_id, 2)]
    dispatcher.start_admitted(reg, res, None)
    assert engine.submitted == [(run_id, 1), (run_id, 2)]


def test_a_hand_off_whose_submit_never_returned_is_submitted_again_once(
    reg: Registry, engine: FakeEngine
) -> None:
    clock = [time.time()]
    run_id = submit(reg, Placement(backend="slurm"))
    make_round(reg, clock).run()  # decided and recorded; the process died before submitting
    clock[0] += 10
    res = make_round(reg, clock).run()
    assert res.respawn == [(run_id, 1)]
    dispatcher.start_admitted(reg, res, None)
    clock[0] += 10
    assert make_round(reg, clock).run().respawn == []  # the engine has it now
    assert engine.submitted == [(run_id, 1)]
    assert identity.boot_id() and os.getpid()
