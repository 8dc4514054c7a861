"""The governor's hook against a fake NVML: bursts, FIFO, reservations, dead waiters, force,
learned VRAM, placement environment, and processes racing for tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from governor import learn
from governor.dependency_gate import DependencyGate
from governor.fake_nvml import FakeNvml
from governor.hook import GovernorHook, build_hook
from governor.probes import HostInfo
from governor.settings import GovernorSettings
from governor.store import GovernorStore
from runner import identity
from runner.admission import Admission, AdmitAll
from runner.config import Config
from runner.durable import write_json
from runner.model import ProcessIdentity, Resources, RunSpec, RunState, Status
from runner.registry import STATE, Registry

GIB = 1 << 30
ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def fixed_host() -> HostInfo:
    return HostInfo(
        cpu_percent=5.0, load1=0.1, cpu_count=8, ram_total=64 * GIB, ram_available=48 * GIB
    )


def make_spec(
    reg: Registry,
    *,
    vram: int | None = None,
    gpus: int | None = None,
    group: str | None = None,
    command: tuple[str, ...] = ("python3", "train.py"),
    script: str | None = None,
    framework: str = "auto",
    env: dict[str, str] | None = None,
    created_at: float | None = None,
) -> RunSpec:
    run_id = reg.allocate_id()
    spec = RunSpec(
        id=run_id,
        name=f"run-{run_id}",
        command=command,
        cwd="/tmp",
        created_at=time.time() if created_at is None else created_at,
        group=group,
        script=script,
        env=env or {},
        resources=Resources(gpus=gpus, vram_bytes=vram, framework=framework),
    )
    reg.create(spec)
    return spec


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    r = Registry(tmp_path / "home")
    r.ensure()
    return r


def hook_for(
    reg: Registry, fake: FakeNvml, clock: Callable[[], float] = time.time, **settings: Any
) -> GovernorHook:
    return GovernorHook(
        reg.root,
        GovernorSettings(**settings),
        nvml=fake,
        host_probe=fixed_host,
        clock=clock,
        watch_threads=False,
        resolve_run=None,
    )


def ask(hook: GovernorHook, spec: RunSpec, *, force: bool = False) -> Admission:
    return hook.request(spec, hook.registry.run_dir(spec.id), 1, force=force)


def write_state(
    reg: Registry, spec: RunSpec, status: Status, supervisor: ProcessIdentity | None = None
) -> None:
    me = supervisor or identity.identity_of(os.getpid())
    assert me is not None
    state = RunState(
        run_id=spec.id, attempt=1, status=status, updated_at=time.time(), supervisor=me
    )
    write_json(reg.run_dir(spec.id) / STATE, state.to_json())


def finish(hook: GovernorHook, spec: RunSpec) -> None:
    """What a supervisor does at the end: record the final state, then release."""
    write_state(hook.registry, spec, Status.COMPLETED)
    hook.release(spec, hook.registry.run_dir(spec.id))


# --- the burst --------------------------------------------------------------------------------


def test_burst_of_eight_on_ten_gib_admits_two_then_the_rest_in_order(reg: Registry) -> None:
    """8 runs at once, 10 GiB free, 4 GiB each: two start; the rest follow as memory frees."""
    clock = Clock()
    fake = FakeNvml([{"memory_total": 12 * GIB, "memory_used": 2 * GIB}])
    hook = hook_for(reg, fake, clock, bucket_capacity=8)
    specs = [make_spec(reg, vram=4 * GIB) for _ in range(8)]
    first = {s.id: ask(hook, s) for s in specs}
    admitted = [rid for rid, a in first.items() if a.admitted]
    assert admitted == [specs[0].id, specs[1].id]
    third = first[specs[2].id]
    assert third.reason == (
        "GPU 0: 2.0 GiB free after reservations, 4.0 GiB requested + 512.0 MiB margin"
    )
    for s in specs[3:]:
        assert first[s.id].reason.startswith(f"behind run {specs[2].id} in the queue: GPU 0")
    for rid in admitted:
        assert first[rid].env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0"}
        assert first[rid].gpus == (0,)

    running: dict[str, int] = {}
    order: list[str] = []
    pid = 1000

    def start(spec: RunSpec) -> None:
        nonlocal pid
        pid += 1
        hook.started(spec, hook.registry.run_dir(spec.id), pid)
        fake.add_process(0, pid=pid, memory=4 * GIB, run_id=spec.id)
        running[spec.id] = pid
        order.append(spec.id)

    for s in specs[:2]:
        start(s)
    waiting = list(specs[2:])
    max_seen = len(running)
    while waiting:
        clock.t += 1.0
        # Still no room while both run (their usage replaced their reservations).
        for s in reversed(waiting):  # the latest ask first: FIFO must hold anyway
            assert not ask(hook, s).admitted
        done = next(iter(running))
        fake.remove_process(0, running.pop(done))
        finish(hook, reg.read_spec(done))
        for s in list(reversed(waiting)):
            a = ask(hook, s)
            if a.admitted:
                waiting.remove(s)
                start(s)
        max_seen = max(max_seen, len(running))
    assert order == [s.id for s in specs]
    assert max_seen == 2


def test_reservation_holds_until_usage_shows_or_settles(reg: Registry) -> None:
    clock = Clock()
    fake = FakeNvml([{"memory_total": 12 * GIB, "memory_used": 2 * GIB}])
    hook = hook_for(reg, fake, clock, vram_margin=0, settle_s=60.0)
    a, b = make_spec(reg, vram=8 * GIB), make_spec(reg, vram=4 * GIB)
    assert ask(hook, a).admitted
    # Nothing visible yet: the 8 GiB reservation leaves 2 GiB.
    assert "2.0 GiB free after reservations" in ask(hook, b).reason
    # Part of it shows: 3 GiB used by the run, 5 GiB still reserved: 10 - 3 - 5 = 2.
    fake.add_process(0, pid=77, memory=3 * GIB, run_id=a.id)
    clock.t += 1
    assert not ask(hook, b).admitted
    # The settle window passes with the run at 3 GiB: the rest of its reservation lapses.
    clock.t += 61
    assert ask(hook, b).admitted


def test_status_shows_reservations_and_queue(reg: Registry) -> None:
    from governor.status import render_status, status_report

    fake = FakeNvml(
        [
            {"name": "Fake A", "memory_total": 12 * GIB, "memory_used": 2 * GIB},
            {"name": "Fake B", "memory_total": 12 * GIB, "memory_used": 11 * GIB},
        ]
    )
    hook = hook_for(reg, fake, max_parallel=3)
    a, b = make_spec(reg, vram=8 * GIB), make_spec(reg, vram=8 * GIB)
    assert ask(hook, a).admitted
    assert not ask(hook, b).admitted
    config = Config(raw={"governor": {"max_parallel": 3}})
    rep = status_report(reg, config, nvml=fake, host_probe=fixed_host)
    json.dumps(rep)  # JSON-able
    assert rep["host"] == fixed_host().__dict__
    assert [g["index"] for g in rep["gpus"]] == [0, 1]
    assert rep["gpus"][0]["reserved"] == 8 * GIB and rep["gpus"][0]["runs"] == [a.id]
    assert rep["gpus"][1]["reserved"] == 0
    assert set(rep["gpus"][0]) >= {
        "index",
        "uuid",
        "name",
        "pci_bus_id",
        "memory_total",
        "memory_used",
        "memory_free",
        "utilization",
        "temperature",
        "power_w",
        "processes",
        "reserved",
    }
    assert rep["gpu_error"] is None
    assert set(rep["bucket"]) == {"tokens", "capacity", "rate_per_s"}
    capacity = GovernorSettings().bucket_capacity
    assert rep["bucket"] == {
        "tokens": pytest.approx(capacity - 1, abs=0.1),
        "capacity": capacity,
        "rate_per_s": GovernorSettings().bucket_rate,
    }
    assert [r["run_id"] for r in rep["reservations"]] == [a.id]
    assert rep["queue"] == [
        {
            "id": b.id,
            "name": b.name,
            "reason": ask(hook, b).reason,
            "queued_at": rep["queue"][0]["queued_at"],
            "position": 1,
            "gpus": None,
            "vram": 8 * GIB,
            "vram_source": "requested",
        }
    ]
    assert rep["running"] == 1 and rep["max_parallel"] == 3
    text = render_status(rep)
    assert "GPU 0" in text and "Fake A" in text and "8.0 GiB reserved" in text
    assert f"1. {b.id}" in text and "queue   1 waiting" in text


# --- FIFO -------------------------------------------------------------------------------------


def test_a_fast_supervisor_cannot_overtake_an_earlier_submission(reg: Registry) -> None:
    fake = FakeNvml(error="NVML Shared Library Not Found")
    hook = hook_for(reg, fake, max_parallel=1)
    s1, s2, s3 = (make_spec(reg) for _ in range(3))
    # Run 3's supervisor asks first; 1 and 2 have not asked yet but were submitted earlier.
    a3 = ask(hook, s3)
    assert not a3.admitted
    assert a3.reason == (
        f"behind run {s2.id} in the queue: max_parallel 1 reached (0 running, 1 ahead in the queue)"
    )
    assert not ask(hook, s2).admitted
    assert ask(hook, s1).admitted
    finish(hook, s1)
    assert not ask(hook, s3).admitted
    assert ask(hook, s2).admitted


def test_earlier_runs_that_are_not_starting_do_not_block(reg: Registry) -> None:
    fake = FakeNvml(error="none")
    hook = hook_for(reg, fake, max_parallel=1)
    old = make_spec(reg, created_at=time.time() - 3600)  # long lost, never started
    s = make_spec(reg)
    assert ask(hook, s).admitted, old.id


def test_strict_fifo_and_backfill(reg: Registry) -> None:
    fake = FakeNvml([{"memory_total": 12 * GIB, "memory_used": 2 * GIB}])
    big, small = make_spec(reg, vram=11 * GIB), make_spec(reg, vram=GIB)
    strict = hook_for(reg, fake)
    assert not ask(strict, big).admitted
    assert ask(strict, small).reason.startswith(f"behind run {big.id} in the queue")
    backfill = hook_for(reg, fake, backfill=True)
    assert ask(backfill, small).admitted


def test_dead_waiter_does_not_block_the_queue(reg: Registry) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = identity.identity_of(child.pid)
    child.kill()
    child.wait()
    assert dead is not None and not identity.matches(dead)
    fake = FakeNvml(error="none")
    holder, a, b = make_spec(reg), make_spec(reg), make_spec(reg)
    live = hook_for(reg, fake, max_parallel=1)
    ghost = GovernorHook(
        reg.root,
        GovernorSettings(max_parallel=1),
        nvml=fake,
        host_probe=fixed_host,
        watch_threads=False,
        me=dead,
        alive=lambda ident: True,
    )  # registers without pruning itself
    assert ask(live, holder).admitted
    write_state(reg, a, Status.QUEUED, dead)  # the registry sees it lost, too
    assert not ask(ghost, a).admitted
    assert GovernorStore(reg.root).read().waiters[a.id].supervisor == dead
    finish(live, holder)
    # b's supervisor prunes the dead waiter ahead of it and takes the slot.
    assert ask(live, b).admitted
    assert a.id not in GovernorStore(reg.root).read().waiters


def test_lease_of_dead_supervisor_is_freed_but_live_trainer_keeps_it(reg: Registry) -> None:
    dead = ProcessIdentity(pid=999_999, start_ticks=1, boot_id="gone")
    me = identity.identity_of(os.getpid())
    alive_set = {me}
    fake = FakeNvml(error="none")

    def alive(i: ProcessIdentity | None) -> bool:
        return i in alive_set

    a, b = make_spec(reg), make_spec(reg)
    ha = GovernorHook(
        reg.root,
        GovernorSettings(max_parallel=1),
        nvml=fake,
        me=dead,
        host_probe=fixed_host,
        watch_threads=False,
        alive=lambda i: True,
    )
    assert ask(ha, a).admitted
    write_state(reg, a, Status.RUNNING, dead)
    trainer = ProcessIdentity(pid=999_998, start_ticks=2, boot_id="x")
    alive_set.add(trainer)
    store = GovernorStore(reg.root)
    with store.transaction() as st:
        st.leases[a.id] = replace(st.leases[a.id], trainer=trainer)
    hb = GovernorHook(
        reg.root,
        GovernorSettings(max_parallel=1),
        nvml=fake,
        me=me,
        host_probe=fixed_host,
        watch_threads=False,
        alive=alive,
    )
    assert not ask(hb, b).admitted  # the trainer still runs
    alive_set.discard(trainer)
    assert ask(hb, b).admitted


def test_stopped_while_queued_releases_its_place(reg: Registry) -> None:
    fake = FakeNvml(error="none")
    hook = hook_for(reg, fake, max_parallel=1)
    holder, a = make_spec(reg), make_spec(reg)
    assert ask(hook, holder).admitted
    assert not ask(hook, a).admitted
    finish(hook, a)
    st = GovernorStore(reg.root).read()
    assert a.id not in st.waiters and holder.id in st.leases


# --- force, lanes, environment ----------------------------------------------------------------


def test_force_bypasses_limits_but_places_and_reserves(reg: Registry) -> None:
    fake = FakeNvml(
        [
            {"memory_total": 12 * GIB, "memory_used": 11 * GIB},
            {"memory_total": 12 * GIB, "memory_used": 10 * GIB},
        ]
    )
    hook = hook_for(reg, fake, max_parallel=1)
    a, b = make_spec(reg, vram=GIB // 4, gpus=1), make_spec(reg, vram=8 * GIB, gpus=1)
    assert ask(hook, a).admitted
    assert not ask(hook, b).admitted
    forced = ask(hook, b, force=True)
    assert forced.admitted and forced.gpus == (1,)
    assert forced.env["CUDA_VISIBLE_DEVICES"] == "1"
    assert forced.reason.startswith("started by request (limits bypassed) on GPU 1")
    lease = GovernorStore(reg.root).read().leases[b.id]
    assert lease.forced and lease.vram == 8 * GIB and lease.gpus == (1,)


def test_asking_for_a_gpu_on_a_machine_without_one(reg: Registry) -> None:
    fake = FakeNvml(error="NVML Shared Library Not Found")
    hook = hook_for(reg, fake)
    s = make_spec(reg, gpus=1)
    a = ask(hook, s)
    assert not a.admitted
    assert a.reason == "needs 1 GPU; this machine has none (NVML: NVML Shared Library Not Found)"
    forced = ask(hook, s, force=True)
    assert forced.admitted and forced.gpus == () and "CUDA_VISIBLE_DEVICES" not in forced.env


def test_cpu_lane_hides_gpus_and_no_gpu_machine_leaves_env(reg: Registry) -> None:
    gpu_box = hook_for(reg, FakeNvml([{}]))
    a = ask(gpu_box, make_spec(reg, gpus=0))
    assert a.admitted and a.env == {"CUDA_VISIBLE_DEVICES": ""} and a.gpus == ()
    assert a.reason == "admitted on the CPU lane (no GPU); env CUDA_VISIBLE_DEVICES="
    bare = hook_for(reg, FakeNvml(error="no driver"))
    b = ask(bare, make_spec(reg))
    assert b.admitted and b.env == {} and b.reason == "admitted (no GPU: no driver)"


@pytest.mark.parametrize(
    ("source", "framework", "vram", "user_env", "expected"),
    [
        ("import tensorflow as tf\n", "auto", None, {}, {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}),
        ("from keras import layers\n", "auto", None, {}, {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}),
        ("import jax.numpy as jnp\n", "auto", None, {}, {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}),
        ("import os, flax\n", "auto", 6 * GIB, {}, {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.25"}),
        ("import jax\n", "auto", None, {"XLA_PYTHON_CLIENT_MEM_FRACTION": ".5"}, {}),
        ("import torch\n", "auto", None, {}, {}),
        ("# import tensorflow\nx = 'import jax'\n", "auto", None, {}, {}),
        ("print('hi')\n", "tensorflow", None, {}, {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}),
        ("import tensorflow\n", "none", None, {}, {}),
        ("import tensorflow\n", "pytorch", None, {}, {}),
        ("import tensorflow\n", "auto", None, {"TF_FORCE_GPU_ALLOW_GROWTH": "false"}, {}),
    ],
)
def test_framework_memory_settings(
    reg: Registry,
    tmp_path: Path,
    source: str,
    framework: str,
    vram: int | None,
    user_env: dict[str, str],
    expected: dict[str, str],
) -> None:
    script = tmp_path / "train.py"
    script.write_text(source)
    hook = hook_for(reg, FakeNvml([{"memory_total": 24 * GIB}]))
    a = ask(hook, make_spec(reg, script=str(script), framework=framework, vram=vram, env=user_env))
    assert a.admitted
    extra = {k: v for k, v in a.env.items() if not k.startswith("CUDA_")}
    assert extra == expected
    for k, v in expected.items():
        assert f"{k}={v}" in a.reason


# --- learned VRAM and the watch ---------------------------------------------------------------


def test_learned_peak_is_used_by_the_next_run_of_the_same_command(reg: Registry) -> None:
    fake = FakeNvml([{"memory_total": 24 * GIB}])
    hook = hook_for(reg, fake, default_vram_fraction=None, default_vram=GIB)
    cmd = ("python3", "/w/train.py", "--lr", "1e-3")
    a = make_spec(reg, command=cmd, script="/w/train.py")
    assert ask(hook, a).admitted
    assert hook.request_for(a, 1).vram_source == "default"
    hook.started(a, reg.run_dir(a.id), 4242)
    fake.add_process(0, pid=4242, memory=3 * GIB, run_id=a.id)
    hook.watches[a.id].sample()
    fake.add_process(0, pid=4243, memory=2 * GIB, run_id=a.id)  # a child: 5 GiB in all
    hook.watches[a.id].sample()
    fake.remove_process(0, 4242)
    hook.watches[a.id].sample()  # the peak stays
    assert hook.watches[a.id].peak_vram == 5 * GIB
    fake.remove_process(0, 4243)
    finish(hook, a)
    data = learn.load(GovernorStore(reg.root).learned_path)
    assert learn.lookup(data, learn.command_key(a), None) == 5 * GIB

    same = make_spec(reg, command=cmd, script="/w/train.py")
    other_args = make_spec(reg, command=(*cmd[:2], "--lr", "3e-4"), script="/w/train.py")
    unrelated = make_spec(reg, command=("python3", "/w/eval.py"), script="/w/eval.py")
    explicit = make_spec(reg, command=cmd, script="/w/train.py", vram=GIB)
    fresh = hook_for(reg, fake)
    assert (fresh.request_for(same, 1).vram, fresh.request_for(same, 1).vram_source) == (
        5 * GIB,
        "learned",
    )
    assert fresh.request_for(other_args, 1).vram == 5 * GIB  # same script
    assert fresh.request_for(unrelated, 1).vram is None
    assert fresh.request_for(explicit, 1).vram == GIB
    adm = ask(fresh, same)
    assert "reserving 5.0 GiB" in adm.reason


def test_peaks_seen_by_other_supervisors_are_learned_too(reg: Registry) -> None:
    fake = FakeNvml([{"memory_total": 24 * GIB}])
    hook = hook_for(reg, fake, max_parallel=1)
    a, b = make_spec(reg), make_spec(reg)
    assert ask(hook, a).admitted
    fake.add_process(0, pid=11, memory=7 * GIB, run_id=a.id)
    assert not ask(hook, b).admitted  # b's poll notes a's usage in a's lease
    assert GovernorStore(reg.root).read().leases[a.id].peak_vram == 7 * GIB
    fake.remove_process(0, 11)
    finish(hook, a)  # no watch sampled: the lease's peak is used
    data = learn.load(GovernorStore(reg.root).learned_path)
    assert learn.lookup(data, learn.command_key(a), None) == 7 * GIB


def test_watch_pauses_hot_runs_and_continues_them_when_cool(reg: Registry) -> None:
    from governor.probes import probe_gpus
    from governor.watch import RunWatch

    fake = FakeNvml([{"temperature": 70}, {"temperature": 70}])
    calls: list[tuple[str, str]] = []
    w = RunWatch(
        "000001",
        (1,),
        lambda: probe_gpus(fake, resolve_run=None),
        interval_s=0.01,
        pause_temperature=90,
        resume_temperature=85,
        pause=lambda r, why: calls.append(("pause", r)),
        cont=lambda r: calls.append(("continue", r)),
    )
    w.sample()
    fake.set_temperature(0, 99)  # not this run's GPU
    w.sample()
    assert calls == []
    fake.set_temperature(1, 91)
    w.sample()
    w.sample()  # once per hot spell
    assert calls == [("pause", "000001")]
    fake.set_temperature(1, 87)  # below the pause limit, not yet below max_temperature
    w.sample()
    assert calls == [("pause", "000001")]
    fake.set_temperature(1, 80)
    w.sample()
    assert calls == [("pause", "000001"), ("continue", "000001")]
    # The thread samples on its own, and stops.
    fake.set_temperature(1, 95)
    w.start()
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    w.stop()
    assert calls[2] == ("pause", "000001")


def test_watch_off_by_default_never_pauses(reg: Registry) -> None:
    fake = FakeNvml([{"temperature": 99}])
    hook = hook_for(reg, fake, max_temperature=100)
    a = make_spec(reg)
    assert ask(hook, a).admitted
    hook.started(a, reg.run_dir(a.id), 5)
    hook.watches[a.id]._pause = lambda r: pytest.fail("paused")  # type: ignore[assignment]
    hook.watches[a.id].sample()


# --- the queued-run retry, settings, build_hook -----------------------------------------------


def test_retry_backs_off_with_queue_position_and_reason_is_stable(reg: Registry) -> None:
    clock = Clock()
    fake = FakeNvml([{"memory_total": 12 * GIB, "memory_used": 2 * GIB}])
    hook = hook_for(reg, fake, clock, poll_interval_s=1.0, vram_margin=0)
    specs = [make_spec(reg, vram=11 * GIB) for _ in range(6)]
    answers = [ask(hook, s) for s in specs]
    assert answers[0].retry_after_s == 1.0
    assert [a.retry_after_s for a in answers] == sorted(a.retry_after_s for a in answers)
    assert answers[-1].retry_after_s > 1.0
    fake.set_memory_used(0, 2 * GIB + GIB // 3)  # the number drifts
    clock.t += 1
    assert ask(hook, specs[0]).reason == answers[0].reason  # same rule: same words
    clock.t += 61
    assert ask(hook, specs[0]).reason != answers[0].reason  # refreshed now and then


def test_build_hook_reads_config_and_can_be_disabled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Every hook is wrapped in the dependency gate, the governor on or off.
    gate = build_hook(tmp_path, Config(raw={"governor": {"max_parallel": 2}}))
    assert isinstance(gate, DependencyGate)
    h = gate.inner
    assert isinstance(h, GovernorHook) and h.settings.max_parallel == 2
    off = build_hook(tmp_path, Config(raw={"governor": {"enabled": False}}))
    assert isinstance(off, DependencyGate) and isinstance(off.inner, AdmitAll)
    bad = build_hook(tmp_path, Config(raw={"governor": {"max_parallel": "lots"}}))
    assert isinstance(bad, DependencyGate)
    assert isinstance(bad.inner, GovernorHook) and bad.inner.settings == GovernorSettings()
    assert "max_parallel" in capsys.readouterr().err


# --- processes racing -------------------------------------------------------------------------

RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from governor.fake_nvml import FakeNvml
    from governor.hook import GovernorHook
    from governor.probes import HostInfo
    from governor.settings import GovernorSettings
    from runner.registry import Registry

    home, run_id, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
    reg = Registry(home)
    spec = reg.read_spec(run_id)
    hook = GovernorHook(home, GovernorSettings(bucket_capacity=3, bucket_rate=0.0,
                                               poll_interval_s=0.02),
                        nvml=FakeNvml(error="none"), watch_threads=False,
                        host_probe=lambda: HostInfo(0.0, 0.0, 8, 64 << 30, 32 << 30))
    time.sleep(max(0.0, go - time.time()))
    admitted = False
    deadline = time.time() + 2.5
    while time.time() < deadline and not admitted:
        admitted = hook.request(spec, reg.run_dir(run_id), 1, force=False).admitted
        time.sleep(0.01)
    print(json.dumps({"id": run_id, "admitted": admitted}), flush=True)
    sys.stdin.read()  # hold the lease, as a supervisor does while its run runs
    """
)


@pytest.mark.slow
def test_processes_racing_for_tokens_never_exceed_the_bucket(reg: Registry) -> None:
    specs = [make_spec(reg) for _ in range(8)]
    go = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(reg.root), s.id, repr(go)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for s in specs
    ]
    # Every racer answers within its own deadline; none exits before all have answered, so
    # no admitted run looks like a supervisor that died before writing its state.
    results = [json.loads(p.stdout.readline()) for p in procs if p.stdout]
    for p in procs:
        p.communicate(timeout=30)
    winners = [r["id"] for r in results if r["admitted"]]
    assert sorted(winners) == [s.id for s in specs[:3]]  # exactly the bucket, first come first
