"""Cost of the governor's hot paths: one admission decision, one full probe, one poll.

Each figure is the time of one call, averaged over a batch; the batch is repeated (>= 5 times)
and the median, min and max of the repeats are printed.

    python bench/bench_governor.py [--quick] [--repeats N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from governor.admit_round import Round  # noqa: E402
from governor.bucket import BucketState  # noqa: E402
from governor.fake_nvml import FakeNvml  # noqa: E402
from governor.policy import Queued, Request, Snapshot, admit  # noqa: E402
from governor.probes import HostInfo, RealNvml, probe_gpus, probe_host  # noqa: E402
from governor.reservations import Lease  # noqa: E402
from governor.settings import GovernorSettings  # noqa: E402
from runner.model import Resources, RunSpec  # noqa: E402
from runner.registry import Registry  # noqa: E402
from runner.tickets import Queue, Ticket, enqueue  # noqa: E402

GIB = 1 << 30


def measure(fn: Callable[[], object], batch: int, repeats: int) -> tuple[float, float, float]:
    """Median, min and max seconds per call over ``repeats`` batches of ``batch`` calls."""
    fn()  # warm up (imports, caches, NVML init)
    per_call = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        per_call.append((time.perf_counter() - t) / batch)
    return statistics.median(per_call), min(per_call), max(per_call)


def fake_machine(n_gpus: int) -> FakeNvml:
    return FakeNvml(
        [
            {
                "name": "Fake H100",
                "memory_total": 80 * GIB,
                "memory_used": (10 + 5 * i) * GIB,
                "processes": [
                    {"pid": 1000 + 10 * i + j, "memory": 2 * GIB, "run_id": f"{i * 4 + j:06d}"}
                    for j in range(4)
                ],
            }
            for i in range(n_gpus)
        ]
    )


def host() -> HostInfo:
    return HostInfo(
        cpu_percent=10.0, load1=1.0, cpu_count=64, ram_total=512 * GIB, ram_available=400 * GIB
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small batches (a few seconds in all)")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    repeats = max(5, args.repeats)
    small = args.quick

    settings = GovernorSettings(max_parallel=64, max_parallel_per_group=8)
    rows: list[tuple[str, tuple[float, float, float]]] = []

    # 1. One admission decision (pure), on an empty 1-GPU box and on a busy 8-GPU box.
    one = Snapshot(host=host(), gpus=probe_gpus(FakeNvml([{}]), resolve_run=None), now=1e6)
    busy = Snapshot(host=host(), gpus=probe_gpus(fake_machine(8), resolve_run=None), now=1e6)
    leases = [
        Lease(
            run_id=f"{i:06d}",
            gpus=(i % 8,),
            vram=2 * GIB,
            admitted_at=1e6 - i * 10,
            group=f"g{i % 4}",
        )
        for i in range(32)
    ]
    ahead = [
        Queued(Request(run_id=f"{100 + i:06d}", vram=4 * GIB, group=f"g{i % 4}"), 1e6 - i)
        for i in range(32)
    ]
    req = Request(run_id="000999", vram=4 * GIB)
    bucket = BucketState(8.0, 1e6)
    rows.append(
        (
            "admit: 1 GPU, nothing running",
            measure(
                lambda: admit(one, req, leases=(), ahead=(), bucket=bucket, settings=settings),
                200 if small else 5000,
                repeats,
            ),
        )
    )
    rows.append(
        (
            "admit: 8 GPUs, 32 leases, 32 queued ahead",
            measure(
                lambda: admit(
                    busy, req, leases=leases, ahead=ahead, bucket=bucket, settings=settings
                ),
                50 if small else 1000,
                repeats,
            ),
        )
    )

    # 2. One full probe: host + all GPUs.
    real = RealNvml()
    real_snap = probe_gpus(real)
    label = f"{len(real_snap.gpus)} GPUs" if real_snap.gpus else f"no GPU: {real_snap.error}"
    rows.append(("probe_host()", measure(probe_host, 100 if small else 2000, repeats)))
    rows.append(
        (
            f"probe_host + probe_gpus, real NVML ({label})",
            measure(lambda: (probe_host(), probe_gpus(real)), 50 if small else 1000, repeats),
        )
    )
    fake8 = fake_machine(8)
    rows.append(
        (
            "probe_host + probe_gpus, fake NVML, 8 GPUs x 4 procs",
            measure(lambda: (probe_host(), probe_gpus(fake8)), 50 if small else 1000, repeats),
        )
    )

    # 3. One dispatcher round: lock, leases, the queue in order, decide, write what changed.
    with tempfile.TemporaryDirectory() as d:
        reg = Registry(Path(d))
        reg.ensure()
        settings = GovernorSettings(max_parallel=1)
        rnd = Round(reg, settings, lambda: Snapshot(host(), probe_gpus(fake8), time.time()))
        queue = Queue(reg.root)
        for _ in range(33):
            run_id = reg.allocate_id()
            spec = RunSpec(
                id=run_id,
                name=f"r{run_id}",
                command=("python3", "t.py"),
                cwd=d,
                created_at=time.time() - 3600,
                resources=Resources(vram_bytes=GIB),
            )
            reg.create(spec)
            enqueue(queue, Ticket(run_id=run_id, attempt=1, queued_at=spec.created_at))
        rnd.run()  # one is admitted and holds the slot (its supervisor is "starting"), 32 wait
        rows.append(
            (
                "one admission round while 32 wait (8 GPUs, max_parallel 1)",
                measure(rnd.run, 20 if small else 300, repeats),
            )
        )

    width = max(len(name) for name, _ in rows)
    print(
        f"{'what':<{width}}  {'median':>10}  {'min':>10}  {'max':>10}   (per call, "
        f"{repeats} repeats{', quick' if small else ''})"
    )
    for name, (med, lo, hi) in rows:
        print(f"{name:<{width}}  {fmt(med):>10}  {fmt(lo):>10}  {fmt(hi):>10}")
    return 0


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


if __name__ == "__main__":
    sys.exit(main())
