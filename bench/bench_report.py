"""Cost of ``runner.report`` per call, encoding and flushing to report.jsonl included.

A loop of N calls (default 100,000) ends with ``reporting.flush()``, all inside the timing; the
loop is repeated (>= 5 times) and min, median and max per call are printed, with the ratio to
an empty function taking the same arguments, measured in the same process. Goal: median
<= 1 µs per call.

    python bench/bench_report.py [--quick] [--repeats N] [--calls N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runner import envnames

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_US = 1.0


def empty(step: int | None = None, **metrics: float) -> None:
    """The floor: a call with the same signature that does nothing."""


def time_loop(fn: Callable[..., None], calls: int, flush: Callable[[], None], wide: bool) -> float:
    """Seconds per call of ``calls`` calls plus one flush."""
    t = time.perf_counter()
    if wide:
        for i in range(calls):
            fn(step=i, loss=0.5321, lr=0.0003, acc=0.9123)
    else:
        for i in range(calls):
            fn(step=i, loss=0.5321)
    flush()
    return (time.perf_counter() - t) / calls


def stats(samples: list[float]) -> tuple[float, float, float]:
    return min(samples), statistics.median(samples), max(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 calls, 5 repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None)
    args = parser.parse_args()
    calls = args.calls or (10_000 if args.quick else 100_000)
    repeats = max(5, args.repeats or (5 if args.quick else 9))

    with tempfile.TemporaryDirectory() as run_dir:
        os.environ[envnames.RUN_DIR] = run_dir
        from runner import report
        from runner.metrics import reporting

        report(step=-1, loss=0.0)  # the first call sets up (file, thread) and writes at once
        assert reporting.is_active()
        results = {}
        for wide in (False, True):
            rep, base = [], []
            for _ in range(repeats):
                rep.append(time_loop(report, calls, reporting.flush, wide))
                base.append(time_loop(empty, calls, lambda: None, wide))
            results[wide] = (stats(rep), stats(base))
        reporting.shutdown()
        with open(Path(run_dir) / "report.jsonl", "rb") as f:
            lines = sum(1 for _ in f)
        expected = 1 + 2 * repeats * calls
        assert lines == expected, f"{lines} records written, {expected} expected"

    print(f"runner.report: {calls:,} calls per loop, {repeats} loops, encoding + flush included")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    for wide, label in ((False, "report(step=i, loss=x)"), (True, "report(step=i, 3 metrics)")):
        (rmin, rmed, rmax), (bmin, bmed, bmax) = results[wide]
        print(
            f"  {label:28s} min {rmin * 1e6:.3f}  median {rmed * 1e6:.3f}  max {rmax * 1e6:.3f} "
            f"µs/call   empty call median {bmed * 1e6:.3f} µs   ratio {rmed / bmed:.1f}x"
        )
    median = results[False][0][1] * 1e6
    verdict = "meets" if median <= GOAL_US else "MISSES"
    print(f"  goal: median <= {GOAL_US:.1f} µs per call: {verdict} ({median:.3f} µs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
