"""The dispatcher's admission round against a fake NVML: bursts, FIFO, priorities, backfill,
force, the start gate, crash recovery between its writes, reasons, and learned VRAM.

(These replace the per-supervisor hook's tests: the same policy, decided in one place.)"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from governor import learn
from governor.admit_round import SHOWN, Gate, Round
from governor.fake_nvml import FakeNvml
from governor.probes import HostInfo, probe_gpus
from governor.requests import Snapshot
from governor.reservations import Lease
from governor.settings import GovernorSettings
from governor.store import GovernorStore
from runner import identity
from runner.control import reruns, run_actions
from runner.control.submission import SubmitOptions
from runner.durable import write_json
from runner.model import ProcessIdentity, Resources, RunSpec, RunState, Status
from runner.registry import STATE, Registry
from runner.tickets import ADMITTED, QUEUED, Entry, Queue, Ticket, enqueue

GIB = 1 << 30


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def fixed_host() -> HostInfo:
    return HostInfo(
        cpu_percent=5.0, load1=0.1, cpu_count=8, ram_total=64 * GIB, ram_available=48 * GIB
    )


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    r = Registry(tmp_path / "home")
    r.ensure()
    return r


def submit(
    reg: Registry,
    *,
    vram: int | None = None,
    gpus: int | None = None,
    priority: int = 0,
    command: tuple[str, ...] = ("python3", "train.py"),
) -> RunSpec:
    run_id = reg.allocate_id()
    spec = RunSpec(
        id=run_id,
        name=f"run-{run_id}",
        command=command,
        cwd="/tmp",
        created_at=time.time(),
        resources=Resources(gpus=gpus, vram_bytes=vram),
    )
    reg.create(spec)
    enqueue(
        Queue(reg.root),
        Ticket(run_id=run_id, attempt=1, queued_at=spec.created_at, priority=priority),
    )
    return spec


def make_round(reg: Registry, fake: FakeNvml, clock: Clock | None = None, **settings: Any) -> Round:
    clk = clock or Clock()
    extra = {"gate": settings.pop("gate")} if "gate" in settings else {}
    return Round(
        reg,
        GovernorSettings(**settings),
        lambda: Snapshot(fixed_host(), probe_gpus(fake, resolve_run=None), clk()),
        clock=clk,
        **extra,
    )


def set_state(reg: Registry, run_id: str, status: Status, **kw: Any) -> None:
    """What the run's supervisor writes (this process plays the supervisor: it is alive)."""
    me = identity.identity_of(os.getpid())
    assert me is not None
    state = RunState(
        run_id=run_id, attempt=1, status=status, updated_at=time.time(), supervisor=me, **kw
    )
    write_json(reg.run_dir(run_id) / STATE, state.to_json())


def ticket(reg: Registry, run_id: str) -> Ticket:
    t = Queue(reg.root).read_ticket(run_id)
    assert t is not None
    return t


def test_burst_of_eight_on_ten_gib_admits_two_then_the_rest_in_order(reg: Registry) -> None:
    """8 runs at once, 10 GiB free, 4 GiB each: two start; the rest follow as memory frees."""
    fake = FakeNvml([{"memory_total": 12 * GIB, "memory_used": 2 * GIB}])
    clock = Clock()
    rnd = make_round(reg, fake, clock)
    specs = [submit(reg, vram=4 * GIB) for _ in range(8)]
    res = rnd.run()
    assert res.started == [(specs[0].id, 1), (specs[1].id, 1)]
    assert res.queued == 6
    for s in specs[:2]:
        t = ticket(reg, s.id)
        assert t.kind == ADMITTED and t.gpus == (0,)
        assert t.env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
        assert reg.load(s.id).status is Status.STARTING
    assert ticket(reg, specs[2].id).reason == (
        "GPU 0: 2.0 GiB free after reservations, 4.0 GiB requested + 512.0 MiB margin"
    )
    for s in specs[3:]:
        assert ticket(reg, s.id).reason.startswith(f"behind run {specs[2].id} in the queue: ")
        assert reg.load(s.id).status is Status.QUEUED
    order = [s.id for s in specs[:2]]
    running: dict[str, int] = {}
    for pid, s in enumerate(specs[:2], start=1000):
        set_state(reg, s.id, Status.RUNNING)
        fake.add_process(0, pid=pid, memory=4 * GIB, run_id=s.id)
        running[s.id] = pid
    while len(order) < 8:
        clock.t += 1.0
        assert rnd.run().started == []  # no room while both run
        done = next(iter(running))
        fake.remove_process(0, running.pop(done))
        set_state(reg, done, Status.COMPLETED)
        started = rnd.run().started
        assert len(started) == 1
        rid = started[0][0]
        order.append(rid)
        set_state(reg, rid, Status.RUNNING)
        fake.add_process(0, pid=2000 + len(order), memory=4 * GIB, run_id=rid)
        running[rid] = 2000 + len(order)
        assert len(running) <= 2
    assert order == [s.id for s in specs]
    assert Queue(reg.root).entries() == []


def test_max_parallel_fifo_priority_and_event_driven_wait(reg: Registry) -> None:
    rnd = make_round(reg, FakeNvml(error="none"), max_parallel=1)
    a, b = submit(reg), submit(reg)
    urgent = submit(reg, priority=10)
    res = rnd.run()
    assert res.started == [(urgent.id, 1)]  # priority first, then submission order
    assert res.wait_s is None  # a full max_parallel waits for an event, not a poll
    assert ticket(reg, a.id).reason == "max_parallel 1 reached (1 running)"
    assert ticket(reg, b.id).rule == f"fifo:{a.id}:max_parallel"


def test_backfill_lets_a_small_run_pass_a_big_one(reg: Registry) -> None:
    fake = FakeNvml([{"memory_total": 12 * GIB, "memory_used": 6 * GIB}])
    big, small = submit(reg, vram=8 * GIB), submit(reg, vram=2 * GIB)
    assert make_round(reg, fake).run().started == []  # strict FIFO: the big one blocks
    res = make_round(reg, fake, backfill=True).run()
    assert res.started == [(small.id, 1)]
    assert res.wait_s == 1.0  # GPU memory is polled while a run waits for it
    assert reg.load(big.id).status is Status.QUEUED


def test_start_now_bypasses_the_limits(reg: Registry) -> None:
    rnd = make_round(reg, FakeNvml(error="none"), max_parallel=1)
    first, second = submit(reg), submit(reg)
    assert rnd.run().started == [(first.id, 1)]
    run_actions.start_now(reg, second.id)
    assert rnd.run().started == [(second.id, 1)]
    t = ticket(reg, second.id)
    assert t.forced and t.reason.startswith("started by request (limits bypassed)")


def test_stop_while_queued_ends_the_run_and_frees_its_place(reg: Registry) -> None:
    rnd = make_round(reg, FakeNvml(error="none"), max_parallel=1)
    first, doomed, last = submit(reg), submit(reg), submit(reg)
    rnd.run()
    assert run_actions.stop(reg, doomed.id) == f"stopped queued run {doomed.id}"
    view = reg.load(doomed.id)
    assert (view.status, view.reason) == (Status.STOPPED, "stopped while queued")
    set_state(reg, first.id, Status.COMPLETED)
    assert rnd.run().started == [(last.id, 1)]
    assert reg.load(doomed.id).status is Status.STOPPED


def test_the_gate_can_hold_a_run_without_blocking_others_or_cancel_it(reg: Registry) -> None:
    a, b, c = submit(reg), submit(reg), submit(reg)

    def gate(registry: Registry, spec: RunSpec, t: Ticket) -> Gate:
        if spec.id == a.id:
            return Gate("wait", "waiting for 000099 (running)")
        if spec.id == b.id:
            return Gate("cancel", "dependency 000099 failed", Status.FAILED)
        return Gate("start")

    res = make_round(reg, FakeNvml(error="none"), gate=gate).run()
    assert res.started == [(c.id, 1)]
    assert (reg.load(a.id).status, reg.load(a.id).reason) == (
        Status.QUEUED,
        "waiting for 000099 (running)",
    )
    assert (reg.load(b.id).status, reg.load(b.id).reason) == (
        Status.FAILED,
        "dependency 000099 failed",
    )


def test_only_the_head_of_a_long_queue_gets_reasons_written(reg: Registry) -> None:
    rnd = make_round(reg, FakeNvml(error="none"), max_parallel=1)
    specs = [submit(reg) for _ in range(SHOWN + 10)]
    res = rnd.run()
    assert res.queued == len(specs) - 1
    assert ticket(reg, specs[SHOWN].id).rule.startswith("fifo:")
    assert ticket(reg, specs[-1].id).reason == "queued"  # never read, never written
    before = ticket(reg, specs[2].id).updated_at
    rnd.run()
    assert ticket(reg, specs[2].id).updated_at == before  # unchanged reasons are not rewritten


def test_crash_between_lease_and_ticket_and_between_ticket_and_start(reg: Registry) -> None:
    clock = Clock()
    rnd = make_round(reg, FakeNvml(error="none"), clock, max_parallel=1)
    a, b = submit(reg), submit(reg)
    store = GovernorStore(reg.root)
    # Killed after writing the lease, before the ticket: the lease is dropped, a admitted.
    with store.transaction() as st:
        st.leases[a.id] = Lease(run_id=a.id, admitted_at=clock(), attempt=1)
    res = rnd.run()
    assert res.started == [(a.id, 1)] and res.ended == [(a.id, 1)]
    # Admitted but its supervisor never came (killed before the start): started again, once
    # the respawn delay has passed, and its place stays taken meanwhile.
    assert rnd.run().respawn == []
    clock.t += 5
    res = rnd.run()
    assert res.respawn == [(a.id, 1)] and res.started == []
    # An entry left behind by a crash after the ticket was written is dropped, not re-run.
    Queue(reg.root).add(Entry(5000, 1, a.id, 1))
    assert rnd.run().started == []
    assert [e.run_id for e in Queue(reg.root).entries()] == [b.id]


def test_a_lost_run_whose_trainer_lives_keeps_its_place(reg: Registry) -> None:
    rnd = make_round(reg, FakeNvml(error="none"), max_parallel=1)
    a, b = submit(reg), submit(reg)
    rnd.run()
    me = identity.identity_of(os.getpid())
    dead = ProcessIdentity(pid=999999, start_ticks=1, boot_id=identity.boot_id())
    state = RunState(
        run_id=a.id,
        attempt=1,
        status=Status.RUNNING,
        updated_at=time.time(),
        supervisor=dead,
        trainer=me,
    )
    write_json(reg.run_dir(a.id) / STATE, state.to_json())
    assert reg.load(a.id).status is Status.LOST
    assert rnd.run().started == []
    write_json(reg.run_dir(a.id) / STATE, {**state.to_json(), "trainer": None})
    assert rnd.run().started == [(b.id, 1)]


def test_a_peak_seen_while_running_is_learned_when_the_run_ends(reg: Registry) -> None:
    fake = FakeNvml([{"memory_total": 24 * GIB, "memory_used": 0}])
    rnd = make_round(reg, fake, default_vram="4G")
    a = submit(reg, command=("python3", "big.py"))
    rnd.run()
    set_state(reg, a.id, Status.RUNNING)
    fake.add_process(0, pid=4242, memory=6 * GIB, run_id=a.id)
    submit(reg, gpus=1, vram=30 * GIB)  # something waiting, so rounds probe
    rnd.run()
    set_state(reg, a.id, Status.COMPLETED)
    rnd.run()
    data = learn.load(GovernorStore(reg.root).learned_path)
    assert learn.lookup(data, learn.command_key(reg.read_spec(a.id)), None) == 6 * GIB
    b = submit(reg, command=("python3", "big.py"))
    assert rnd._request(reg.read_spec(b.id), 1).vram_source == "learned"


def test_a_queued_run_reads_queued_and_a_damaged_ticket_reads_corrupt(reg: Registry) -> None:
    a = submit(reg)
    assert ticket(reg, a.id).kind == QUEUED
    assert reg.load(a.id).status is Status.QUEUED
    (reg.run_dir(a.id) / "ticket.json").write_text("{nope")
    assert reg.load(a.id).status is Status.CORRUPT


def test_move_to_top_and_priority_bands(reg: Registry) -> None:
    from runner.tickets import move_to_top

    rnd = make_round(reg, FakeNvml(error="none"), max_parallel=1)
    a, b, c = submit(reg), submit(reg, priority=5), submit(reg)
    queue = Queue(reg.root)
    assert [e.run_id for e in queue.entries()] == [b.id, a.id, c.id]
    assert move_to_top(queue, c.id)
    assert [e.run_id for e in queue.entries()] == [c.id, b.id, a.id]
    assert rnd.run().started == [(c.id, 1)]
    assert not move_to_top(queue, c.id)  # not queued any more


def test_fail_fast_stops_the_queued_siblings_of_a_failed_run(reg: Registry) -> None:
    from runner.control.submission import submit_many

    rnd = make_round(reg, FakeNvml(error="none"), max_parallel=1)
    specs = submit_many(
        reg,
        [(["true"], f"s{i}") for i in range(3)],
        options=SubmitOptions(group="sw", fail_fast=True, env={}),
    )
    other = submit(reg)
    assert rnd.run().started == [(specs[0].id, 1)]
    set_state(reg, specs[0].id, Status.FAILED, reason="exit 1")
    res = rnd.run()
    assert res.started == [(other.id, 1)]
    for s in specs[1:]:
        view = reg.load(s.id)
        assert view.status is Status.STOPPED
        assert view.reason == f"not started: run {specs[0].id} of 'sw' failed (--fail-fast)"
    # A stopped sibling can be resumed: it gets the attempt it never ran.
    assert reruns.resume(reg, specs[1].id) == 1
    assert reg.load(specs[1].id).status is Status.QUEUED


def test_runs_lost_in_a_reboot_are_retried_by_the_next_round(reg: Registry) -> None:
    from runner.retry import RetryPolicy

    rnd = make_round(reg, FakeNvml(error="none"))
    a = submit(reg)
    q = Queue(reg.root)
    with q.locked():
        t = ticket(reg, a.id)
        q.write_ticket(Ticket(**{**t.__dict__, "policy": RetryPolicy(retries=2).to_json()}))
    assert rnd.run().started == [(a.id, 1)]
    before = ProcessIdentity(pid=4321, start_ticks=99, boot_id="an-earlier-boot")
    state = RunState(
        run_id=a.id, attempt=1, status=Status.RUNNING, updated_at=time.time(), supervisor=before
    )
    write_json(reg.run_dir(a.id) / STATE, state.to_json())
    assert (reg.load(a.id).status, reg.load(a.id).reason) == (Status.LOST, "host rebooted")
    res = rnd.run()
    assert res.ended == [(a.id, 1)] and res.lost == [a.id]  # its lost hook is due
    view = reg.load(a.id)
    assert view.status is Status.QUEUED and view.attempt == 2
    assert view.to_json()["attempt_text"] == "attempt 2 of 3, retry after lost"


def test_the_dispatcher_watches_gpu_runs_heat_and_peaks(reg: Registry) -> None:
    from governor.dispatcher import Dispatcher

    fake = FakeNvml([{"memory_total": 24 * GIB, "memory_used": 0, "temperature": 60}])
    clock = Clock()
    a = submit(reg, gpus=1, vram=GIB)
    make_round(reg, fake, clock).run()
    set_state(reg, a.id, Status.RUNNING)
    fake.add_process(0, pid=5151, memory=3 * GIB, run_id=a.id)
    disp = Dispatcher(
        reg, snapshot=lambda: Snapshot(fixed_host(), probe_gpus(fake, resolve_run=None), clock())
    )
    asked: list[tuple[str, str]] = []
    disp.pause = lambda rid, why: asked.append(("pause", why))
    disp.cont = lambda rid: asked.append(("continue", rid))
    settings = GovernorSettings(pause_temperature=80.0, max_temperature=75.0)
    assert disp.watch_gpus(settings)
    assert asked == [] and GovernorStore(reg.root).read().leases[a.id].peak_vram == 3 * GIB
    fake.set_temperature(0, 82)
    disp.watch_gpus(settings)
    assert asked[0][0] == "pause" and "82°C" in asked[0][1]
    fake.set_temperature(0, 77)
    disp.watch_gpus(settings)
    assert len(asked) == 1  # still above max_temperature: stays paused
    fake.set_temperature(0, 70)
    disp.watch_gpus(settings)
    assert asked[1] == ("continue", a.id)


def test_a_crash_inside_enqueue_never_leaves_a_run_queued_without_a_place(reg: Registry) -> None:
    rnd = make_round(reg, FakeNvml(error="none"))
    # The submitter died after the place in line, before the ticket: the entry is dropped and
    # the run, never acknowledged, reads as what it is (no queue record, then lost).
    run_id = reg.allocate_id()
    reg.create(RunSpec(id=run_id, name="x", command=("true",), cwd="/", created_at=time.time()))
    q = Queue(reg.root)
    q.ensure()
    q.add(Entry(5000, time.time_ns(), run_id, 1))
    assert rnd.run().started == []
    assert Queue(reg.root).entries() == []
    assert reg.load(run_id).status is Status.STARTING  # then lost after the startup grace
    assert reg.load(run_id, now=time.time() + 60).status is Status.LOST


def test_the_fast_paths_host_probe_agrees_with_psutil() -> None:
    from governor.dispatcher import admission_host
    from governor.probes import probe_host

    fast, full = admission_host(), probe_host()
    assert (fast.ram_total, fast.cpu_count) == (full.ram_total, full.cpu_count)
    assert abs(fast.ram_available - full.ram_available) < 512 << 20  # read moments apart


def test_the_dispatcher_fires_lost_for_runs_its_round_found_lost(
    reg: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from governor import dispatcher
    from governor.admit_round import RoundResult
    from runner import notify

    fired: list[str] = []
    monkeypatch.setattr(notify, "notify_lost", lambda registry, run_id: fired.append(run_id))
    dispatcher.start_admitted(reg, RoundResult(lost=["000007"]))
    assert fired == ["000007"]
