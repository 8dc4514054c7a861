"""The admission decision, rule by rule (pure: no files, no processes, no NVML)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from governor.bucket import BucketState
from governor.policy import Decision, Queued, Request, Snapshot, admit
from governor.probes import GpuInfo, GpuProcess, GpuSnapshot, HostInfo
from governor.reservations import Lease
from governor.settings import GovernorSettings

GIB = 1 << 30
NOW = 10_000.0
NO_NVML = "NVML Shared Library Not Found"


def host(ram: int = 64 * GIB, load: float = 0.0, cpus: int = 8) -> HostInfo:
    return HostInfo(
        cpu_percent=0.0, load1=load, cpu_count=cpus, ram_total=128 * GIB, ram_available=ram
    )


def gpu(
    index: int = 0,
    *,
    total: int = 24 * GIB,
    free: int | None = None,
    temp: float | None = 40,
    procs: tuple[GpuProcess, ...] = (),
) -> GpuInfo:
    free = total if free is None else free
    return GpuInfo(
        index=index,
        uuid=f"GPU-{index}",
        name="Test",
        pci_bus_id=f"0:{index}",
        memory_total=total,
        memory_used=total - free,
        memory_free=free,
        temperature=temp,
        processes=procs,
    )


def lease(
    run_id: str,
    gpus: tuple[int, ...] = (),
    vram: int = 0,
    *,
    ram: int = 0,
    group: str | None = None,
    age: float = 1.0,
) -> Lease:
    return Lease(run_id=run_id, gpus=gpus, vram=vram, ram=ram, group=group, admitted_at=NOW - age)


def req(run_id: str = "000100", **kw: Any) -> Request:
    return Request(run_id=run_id, **kw)


BASE = GovernorSettings(
    vram_margin=0,
    min_free_ram=GIB,
    bucket_capacity=4,
    bucket_rate=0.5,
    default_vram=2 * GIB,
    default_vram_fraction=None,
)


@dataclass
class Case:
    id: str
    request: Request = field(default_factory=req)
    gpus: tuple[GpuInfo, ...] = ()
    gpu_error: str | None = None
    host: HostInfo = field(default_factory=host)
    leases: tuple[Lease, ...] = ()
    ahead: tuple[Queued, ...] = ()
    bucket: BucketState = field(default_factory=lambda: BucketState(4.0, NOW))
    settings: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    # expectations
    admitted: bool = True
    rule: str = "ok"
    reason: str = ""
    placed: tuple[int, ...] | None = None
    lane: str | None = None


def decide(c: Case) -> Decision:
    snap = Snapshot(host=c.host, gpus=GpuSnapshot(gpus=c.gpus, error=c.gpu_error), now=NOW)
    return admit(
        snap,
        c.request,
        leases=c.leases,
        ahead=c.ahead,
        bucket=c.bucket,
        settings=replace(BASE, **c.settings),
        force=c.force,
    )


TWO = (gpu(0), gpu(1))

CASES = [
    # --- lanes ---------------------------------------------------------------------------
    Case(
        "no-gpu-machine-default-runs-anywhere",
        gpu_error=NO_NVML,
        lane="any",
        placed=(),
        reason="admitted (no GPU: NVML Shared Library Not Found)",
    ),
    Case(
        "no-gpu-machine-asks-gpu-queues",
        request=req(gpus=1),
        gpu_error=NO_NVML,
        admitted=False,
        rule="no-gpu",
        reason="needs 1 GPU; this machine has none (NVML: NVML Shared Library Not Found)",
    ),
    Case(
        "cpu-lane-on-gpu-machine",
        request=req(gpus=0),
        gpus=TWO,
        lane="cpu",
        placed=(),
        reason="CPU lane",
    ),
    Case("cpu-lane-ignores-full-gpus", request=req(gpus=0), gpus=(gpu(0, free=0),), lane="cpu"),
    Case("default-one-gpu-when-gpus-exist", gpus=TWO, lane="gpu", placed=(0,)),
    Case("default-gpus-zero-setting", gpus=TWO, settings={"default_gpus": 0}, lane="cpu"),
    # --- max_parallel ----------------------------------------------------------------------
    Case(
        "max-parallel-reached",
        leases=(lease("000001"), lease("000002")),
        settings={"max_parallel": 2},
        admitted=False,
        rule="max_parallel",
        reason="max_parallel 2 reached (2 running)",
    ),
    Case("max-parallel-room", leases=(lease("000001"),), settings={"max_parallel": 2}),
    Case("max-parallel-zero-is-unlimited", leases=tuple(lease(f"{i:06d}") for i in range(50))),
    Case(
        "cpu-lane-counts-for-max-parallel",
        request=req(gpus=0),
        gpus=TWO,
        leases=(lease("000001"),),
        settings={"max_parallel": 1},
        admitted=False,
        rule="max_parallel",
    ),
    Case(
        "group-limit-reached",
        request=req(group="sweep"),
        leases=(lease("000001", group="sweep"), lease("000002")),
        settings={"max_parallel_per_group": 1},
        admitted=False,
        rule="group",
        reason="group 'sweep': max_parallel_per_group 1 reached (1 running)",
    ),
    Case(
        "group-limit-other-group",
        request=req(group="other"),
        leases=(lease("000001", group="sweep"),),
        settings={"max_parallel_per_group": 1},
    ),
    Case(
        "group-limit-no-group",
        leases=(lease("000001", group="sweep"),),
        settings={"max_parallel_per_group": 1},
    ),
    # --- RAM and CPU -----------------------------------------------------------------------
    Case(
        "ram-request-too-big",
        request=req(ram=4 * GIB),
        host=host(ram=3 * GIB),
        admitted=False,
        rule="ram",
        reason="RAM: 3.0 GiB available after reservations, 4.0 GiB requested + 1.0 GiB must "
        "stay free",
    ),
    Case("ram-min-free", host=host(ram=GIB // 2), admitted=False, rule="ram"),
    Case(
        "ram-reservation-held",
        request=req(ram=GIB),
        host=host(ram=3 * GIB),
        leases=(lease("000001", ram=2 * GIB, age=5),),
        admitted=False,
        rule="ram",
        reason="1.0 GiB available after reservations",
    ),
    Case(
        "ram-reservation-settled",
        request=req(ram=GIB),
        host=host(ram=3 * GIB),
        leases=(lease("000001", ram=2 * GIB, age=500),),
    ),
    Case("ram-fits", request=req(ram=2 * GIB), host=host(ram=3 * GIB)),
    Case(
        "cpu-load-over",
        host=host(load=6.0, cpus=2),
        settings={"max_load": 2.0},
        admitted=False,
        rule="load",
        reason="CPU load 3.00 per CPU above the limit 2",
    ),
    Case("cpu-load-under", host=host(load=3.0, cpus=2), settings={"max_load": 2.0}),
    Case("cpu-load-off", host=host(load=60.0, cpus=2)),
    # --- VRAM --------------------------------------------------------------------------------
    Case("vram-fits", request=req(vram=8 * GIB), gpus=(gpu(0, free=10 * GIB),), placed=(0,)),
    Case(
        "vram-short",
        request=req(vram=8 * GIB),
        gpus=(gpu(0, free=3 * GIB + GIB // 10),),
        admitted=False,
        rule="gpu",
        reason="GPU 0: 3.1 GiB free after reservations, 8.0 GiB requested",
    ),
    Case(
        "vram-margin",
        request=req(vram=8 * GIB),
        gpus=(gpu(0, free=8 * GIB + GIB // 4),),
        settings={"vram_margin": GIB // 2},
        admitted=False,
        rule="gpu",
        reason="8.0 GiB requested + 512.0 MiB margin",
    ),
    Case(
        "vram-reserved-by-recent-lease",
        request=req(vram=8 * GIB),
        gpus=(gpu(0, free=10 * GIB),),
        leases=(lease("000001", (0,), 4 * GIB),),
        admitted=False,
        rule="gpu",
        reason="GPU 0: 6.0 GiB free after reservations",
    ),
    Case(
        "vram-reservation-minus-visible-usage",
        request=req(vram=6 * GIB),
        gpus=(gpu(0, free=7 * GIB, procs=(GpuProcess(9, 3 * GIB, "000001"),)),),
        leases=(lease("000001", (0,), 4 * GIB),),
        placed=(0,),
    ),
    Case(
        "vram-reservation-settled",
        request=req(vram=8 * GIB),
        gpus=(gpu(0, free=10 * GIB),),
        leases=(lease("000001", (0,), 4 * GIB, age=500),),
        placed=(0,),
    ),
    Case(
        "vram-reservation-other-gpu",
        request=req(vram=8 * GIB, gpu_ids=(0,)),
        gpus=(gpu(0, free=10 * GIB), gpu(1)),
        leases=(lease("000001", (1,), 20 * GIB),),
        placed=(0,),
    ),
    Case(
        "vram-default-size",
        gpus=(gpu(0, free=GIB),),
        admitted=False,
        rule="gpu",
        reason="2.0 GiB assumed (no --vram)",
    ),
    Case(
        "vram-default-fraction",
        gpus=(gpu(0, free=10 * GIB),),
        settings={"default_vram_fraction": 0.5},
        admitted=False,
        rule="gpu",
        reason="12.0 GiB assumed (50% of 24.0 GiB; no --vram)",
    ),
    Case(
        "vram-learned-words",
        request=req(vram=12 * GIB, vram_source="learned"),
        gpus=(gpu(0, free=10 * GIB),),
        admitted=False,
        rule="gpu",
        reason="12.0 GiB needed (learned peak)",
    ),
    # --- temperature, exclusion, sharing -----------------------------------------------------
    Case(
        "too-hot",
        gpus=(gpu(0, temp=90),),
        admitted=False,
        rule="gpu",
        reason="GPU 0: 90 C, at or above the 85 C limit",
    ),
    Case("hot-one-cool-other", gpus=(gpu(0, temp=90), gpu(1, free=GIB * 4)), placed=(1,)),
    Case("temperature-unknown-is-fine", gpus=(gpu(0, temp=None),), placed=(0,)),
    Case("excluded-by-index", gpus=TWO, settings={"exclude_gpus": (0,)}, placed=(1,)),
    Case("excluded-by-uuid", gpus=TWO, settings={"exclude_gpus": ("GPU-1",)}, placed=(0,)),
    Case(
        "all-excluded",
        gpus=TWO,
        settings={"exclude_gpus": (0, 1)},
        admitted=False,
        rule="gpu",
        reason="needs 1 GPU, 0 fit: GPU 0: excluded by exclude_gpus; GPU 1",
    ),
    Case(
        "max-runs-per-gpu",
        gpus=(gpu(0),),
        leases=(lease("000001", (0,), GIB, age=500),),
        settings={"max_runs_per_gpu": 1},
        admitted=False,
        rule="gpu",
        reason="GPU 0: 1 runs, max_runs_per_gpu 1",
    ),
    Case(
        "keep-free-packs-onto-our-gpu",
        gpus=(gpu(0, free=20 * GIB), gpu(1)),
        leases=(lease("000001", (0,), GIB, age=500),),
        settings={"keep_free_gpus": 1},
        placed=(0,),
    ),
    Case(
        "keep-free-blocks",
        request=req(vram=22 * GIB),
        gpus=(gpu(0, free=20 * GIB), gpu(1)),
        leases=(lease("000001", (0,), GIB, age=500),),
        settings={"keep_free_gpus": 1},
        admitted=False,
        rule="keep-free",
        reason="keep_free_gpus 1: placing here would leave 0 GPUs free of Backprop runs",
    ),
    Case(
        "keep-free-foreign-process-not-ours",
        gpus=(gpu(0, procs=(GpuProcess(5, GIB),)), gpu(1)),
        settings={"keep_free_gpus": 1},
        placed=(0,),
    ),
    # --- placement ---------------------------------------------------------------------------
    Case("most-free-first", gpus=(gpu(0, free=5 * GIB), gpu(1, free=20 * GIB)), placed=(1,)),
    Case("most-free-tie-lowest-index", gpus=TWO, placed=(0,)),
    Case("pinned", request=req(gpu_ids=(0,)), gpus=(gpu(0, free=5 * GIB), gpu(1)), placed=(0,)),
    Case(
        "pinned-missing",
        request=req(gpu_ids=(3,)),
        gpus=TWO,
        admitted=False,
        rule="gpu-missing",
        reason="GPU 3 does not exist (GPUs here: 0, 1)",
    ),
    Case(
        "pinned-full",
        request=req(gpu_ids=(0,), vram=8 * GIB),
        gpus=(gpu(0, free=5 * GIB), gpu(1)),
        admitted=False,
        rule="gpu",
        reason="GPU 0: 5.0 GiB free",
    ),
    Case(
        "two-of-three",
        request=req(gpus=2),
        gpus=(gpu(0, free=3 * GIB), gpu(1), gpu(2)),
        placed=(1, 2),
    ),
    Case(
        "two-but-one-fits",
        request=req(gpus=2, vram=4 * GIB),
        gpus=(gpu(0, free=3 * GIB), gpu(1), gpu(2, temp=95)),
        admitted=False,
        rule="gpu",
        reason="needs 2 GPUs, 1 fit: GPU 0: 3.0 GiB free",
    ),
    Case(
        "more-gpus-than-machine",
        request=req(gpus=3),
        gpus=TWO,
        admitted=False,
        rule="gpu-missing",
        reason="needs 3 GPUs; 2 on this machine",
    ),
    # --- token bucket ------------------------------------------------------------------------
    Case(
        "bucket-empty",
        bucket=BucketState(0.0, NOW),
        settings={"bucket_rate": 0.0},
        admitted=False,
        rule="bucket",
        reason="admission rate limit: no token left",
    ),
    Case("bucket-refilled", bucket=BucketState(0.0, NOW - 2.0), settings={"bucket_rate": 0.5}),
    Case(
        "bucket-not-yet",
        bucket=BucketState(0.0, NOW - 1.0),
        settings={"bucket_rate": 0.5},
        admitted=False,
        rule="bucket",
    ),
    Case(
        "bucket-checked-after-resources",
        request=req(vram=30 * GIB),
        gpus=(gpu(0),),
        bucket=BucketState(0.0, NOW),
        admitted=False,
        rule="gpu",
    ),
    # --- FIFO and backfill -------------------------------------------------------------------
    Case(
        "fifo-blocked-by-head",
        request=req(vram=GIB),
        gpus=(gpu(0, free=10 * GIB),),
        ahead=(Queued(req("000001", vram=20 * GIB), NOW - 5),),
        admitted=False,
        rule="fifo:000001:gpu",
        reason="behind run 000001 in the queue: GPU 0: 10.0 GiB free after reservations",
    ),
    Case(
        "backfill-passes-blocked-head",
        request=req(vram=GIB),
        gpus=(gpu(0, free=10 * GIB),),
        ahead=(Queued(req("000001", vram=20 * GIB), NOW - 5),),
        settings={"backfill": True},
        placed=(0,),
    ),
    Case(
        "backfill-stops-for-long-waiter",
        request=req(vram=GIB),
        gpus=(gpu(0, free=10 * GIB),),
        ahead=(Queued(req("000001", vram=20 * GIB), NOW - 99),),
        settings={"backfill": True, "backfill_max_wait_s": 60.0},
        admitted=False,
        rule="fifo:000001:gpu",
    ),
    Case(
        "head-that-fits-claims-first",
        request=req(vram=4 * GIB),
        gpus=(gpu(0, free=10 * GIB),),
        ahead=(Queued(req("000001", vram=8 * GIB), NOW),),
        admitted=False,
        rule="gpu",
        reason="GPU 0: 2.0 GiB free after reservations",
    ),
    Case(
        "head-that-fits-leaves-room",
        request=req(vram=2 * GIB),
        gpus=(gpu(0, free=10 * GIB),),
        ahead=(Queued(req("000001", vram=8 * GIB), NOW),),
        placed=(0,),
    ),
    Case(
        "head-claims-slot",
        leases=(),
        ahead=(Queued(req("000001"), NOW),),
        settings={"max_parallel": 1},
        admitted=False,
        rule="max_parallel",
        reason="max_parallel 1 reached (0 running, 1 ahead in the queue)",
    ),
    Case(
        "head-claims-token",
        bucket=BucketState(1.0, NOW),
        settings={"bucket_rate": 0.0},
        ahead=(Queued(req("000001"), NOW),),
        admitted=False,
        rule="bucket",
        reason="1 ahead in the queue",
    ),
    Case(
        "head-blocked-by-bucket",
        bucket=BucketState(0.0, NOW),
        settings={"bucket_rate": 0.0},
        ahead=(Queued(req("000001"), NOW),),
        admitted=False,
        rule="fifo:000001:bucket",
    ),
    # --- force (backprop start) --------------------------------------------------------------
    Case(
        "force-bypasses-limits",
        request=req(vram=30 * GIB),
        host=host(ram=0, load=99),
        gpus=(gpu(0, free=GIB, temp=99), gpu(1, free=2 * GIB)),
        leases=(lease("000001"),),
        ahead=(Queued(req("000002"), NOW),),
        bucket=BucketState(0.0, NOW),
        settings={"max_parallel": 1, "max_load": 1.0},
        force=True,
        rule="forced",
        placed=(1,),
        reason="started by request (limits bypassed)",
    ),
    Case(
        "force-respects-pin",
        request=req(gpu_ids=(0,)),
        gpus=(gpu(0, free=GIB), gpu(1)),
        force=True,
        rule="forced",
        placed=(0,),
    ),
    Case(
        "force-avoids-excluded",
        gpus=TWO,
        settings={"exclude_gpus": (0,)},
        force=True,
        rule="forced",
        placed=(1,),
    ),
    Case(
        "force-without-gpus",
        request=req(gpus=1),
        gpu_error=NO_NVML,
        force=True,
        rule="forced",
        placed=(),
        lane="any",
        reason="needs 1 GPU but none is available",
    ),
    Case(
        "force-cpu-lane",
        request=req(gpus=0),
        gpus=TWO,
        force=True,
        rule="forced",
        placed=(),
        lane="cpu",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case) -> None:
    d = decide(case)
    assert (d.admitted, d.rule) == (case.admitted, case.rule), d.reason
    assert case.reason in d.reason
    if case.placed is not None:
        assert d.gpus == case.placed
    if case.lane is not None:
        assert d.lane == case.lane
    if d.admitted:
        assert d.bucket is not None and d.bucket.tokens >= 0


def test_every_rule_is_covered() -> None:
    rules = {c.rule.split(":")[0] for c in CASES}
    assert rules >= {
        "ok",
        "forced",
        "max_parallel",
        "group",
        "ram",
        "load",
        "no-gpu",
        "gpu-missing",
        "gpu",
        "keep-free",
        "bucket",
        "fifo",
    }


def test_admission_takes_one_token_and_refills() -> None:
    d = decide(Case("x", bucket=BucketState(1.5, NOW - 1.0), settings={"bucket_rate": 0.5}))
    assert d.admitted and d.bucket is not None
    assert d.bucket.tokens == pytest.approx(1.0)
    assert d.bucket.updated_at == NOW


def test_refused_admission_keeps_tokens() -> None:
    d = decide(
        Case(
            "x",
            leases=(lease("000001"),),
            settings={"max_parallel": 1},
            bucket=BucketState(3.0, NOW),
        )
    )
    assert not d.admitted and d.bucket is not None and d.bucket.tokens == 3.0


def test_bucket_retry_is_time_to_next_token() -> None:
    d = decide(
        Case(
            "x", bucket=BucketState(0.5, NOW), settings={"bucket_rate": 2.0, "poll_interval_s": 5.0}
        )
    )
    assert d.rule == "bucket"
    assert d.retry_after_s == pytest.approx(0.25)


def test_admitted_reason_names_gpu_and_reservation() -> None:
    d = decide(Case("x", request=req(vram=4 * GIB), gpus=(gpu(0, free=10 * GIB),)))
    assert d.reason == ("admitted on GPU 0 (10.0 GiB free after reservations; reserving 4.0 GiB)")
    assert d.vram == 4 * GIB and d.gpu_totals == (24 * GIB,)


def test_request_json_round_trip_and_rejects_bad_shapes() -> None:
    r = req(name="n", group="g", gpus=2, gpu_ids=(0, 1), vram=GIB, vram_source="learned", ram=5)
    assert Request.from_json(r.to_json()) == r
    for bad in (
        {"run_id": "../x"},
        {"run_id": "000001", "gpus": -1},
        {"run_id": "000001", "vram": True},
        {"run_id": "000001", "gpu_ids": ["a"]},
        {"run_id": "000001", "vram_source": "magic"},
        [],
        None,
    ):
        with pytest.raises(ValueError):
            Request.from_json(bad)


# --- properties -------------------------------------------------------------------------------


@st.composite
def scenario(draw: st.DrawFn) -> tuple[list[GpuInfo], list[Request], GovernorSettings]:
    n_gpus = draw(st.integers(0, 3))
    gpus = [
        gpu(
            i,
            total=16 * GIB,
            free=draw(st.integers(0, 16)) * GIB,
            temp=draw(st.sampled_from([40.0, 90.0, None])),
        )
        for i in range(n_gpus)
    ]
    reqs = [
        req(
            f"{i + 1:06d}",
            gpus=draw(st.sampled_from([None, 0, 1, 2])),
            vram=draw(st.sampled_from([None, GIB, 3 * GIB, 9 * GIB])),
            group=draw(st.sampled_from([None, "a", "b"])),
        )
        for i in range(draw(st.integers(1, 12)))
    ]
    s = replace(
        BASE,
        max_parallel=draw(st.integers(0, 6)),
        max_parallel_per_group=draw(st.integers(0, 3)),
        vram_margin=draw(st.sampled_from([0, GIB // 2])),
        bucket_capacity=draw(st.integers(1, 8)),
        bucket_rate=0.0,
    )
    return gpus, reqs, s


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_a_burst_never_oversubscribes(
    data: tuple[list[GpuInfo], list[Request], GovernorSettings],
) -> None:
    """However a burst of requests arrives, the leases granted fit every limit at once."""
    gpus, reqs, s = data
    snap = Snapshot(host=host(), gpus=GpuSnapshot(gpus=tuple(gpus)), now=NOW)
    leases: list[Lease] = []
    bucket = BucketState(float(s.bucket_capacity), NOW)
    for r in reqs:
        d = admit(snap, r, leases=leases, ahead=(), bucket=bucket, settings=s)
        if d.admitted:
            assert d.bucket is not None
            bucket = d.bucket
            leases.append(
                Lease(run_id=r.run_id, group=r.group, gpus=d.gpus, vram=d.vram, admitted_at=NOW)
            )
    assert len(leases) <= s.bucket_capacity
    if s.max_parallel:
        assert len(leases) <= s.max_parallel
    if s.max_parallel_per_group:
        for g in ("a", "b"):
            assert sum(1 for x in leases if x.group == g) <= s.max_parallel_per_group
    for g in gpus:
        held = sum(x.vram + s.vram_margin for x in leases if g.index in x.gpus)
        on_it = [x for x in leases if g.index in x.gpus]
        assert held <= g.memory_free + s.vram_margin * max(0, len(on_it) - 1)
        if on_it:
            assert g.temperature is None or g.temperature < s.max_temperature
