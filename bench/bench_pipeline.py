"""What a waiting dependent costs, next to a run waiting in the governor's queue.

Usage: ``python bench/bench_pipeline.py [--quick] [--window S] [--repeats K]``

Starts one gated run (it holds the only ``max_parallel`` slot), one run queued behind it by
the governor and one run ``--after`` the gated one, all through the real CLI in a private
registry; then samples both waiting supervisors' CPU time over a window, and their RSS and
PSS. Prints medians with min and max, and the ratio dependent / queued.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import envnames  # noqa: E402
from runner.registry import Registry  # noqa: E402

GATED = "import os, time\nwhile not os.path.exists(os.environ['GATE']): time.sleep(0.1)\n"


def cli(home: Path, cwd: Path, *args: str) -> str:
    env = {**os.environ, envnames.HOME: str(home), "GATE": str(home.parent / "gate")}
    out = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], cwd=cwd, env=env, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout


def supervisor(reg: Registry, run_id: str, status: str, timeout: float = 30) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = reg.load(run_id)
        if view.status.value == status and view.state is not None:
            return psutil.Process(view.state.supervisor.pid)
        time.sleep(0.1)
    raise SystemExit(f"run {run_id} never became {status}")


def fmt(values: list[float], unit: str) -> str:
    v = sorted(values)
    return f"median {statistics.median(v):.3f} {unit} (min {v[0]:.3f}, max {v[-1]:.3f}, n={len(v)})"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a 2 s window, 3 repeats")
    p.add_argument("--window", type=float, default=10.0, help="CPU sampling window (s)")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    window, repeats = (2.0, 3) if a.quick else (a.window, a.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        home, work = Path(tmp) / "home", Path(tmp) / "work"
        home.mkdir()
        work.mkdir()
        (home / "backprop.toml").write_text("[governor]\nmax_parallel = 1\n")
        (work / "gated.py").write_text(GATED)
        reg = Registry(home)
        try:
            cli(home, work, "run", "--name", "gated", "gated.py")
            supervisor(reg, "000001", "running")
            cli(home, work, "run", "--name", "queued", "gated.py")
            cli(home, work, "run", "--name", "dependent", "--after", "000001", "gated.py")
            procs = {
                "queued (governor)": supervisor(reg, "000002", "queued"),
                "dependent (--after)": supervisor(reg, "000003", "queued"),
            }
            time.sleep(1.0)  # past start-up
            cpu: dict[str, list[float]] = {k: [] for k in procs}
            for _ in range(repeats):
                before = {k: sum(proc.cpu_times()[:2]) for k, proc in procs.items()}
                time.sleep(window)
                for k, proc in procs.items():
                    cpu[k].append((sum(proc.cpu_times()[:2]) - before[k]) / window * 100)
            print(f"waiting supervisors, CPU over {window:.0f} s windows ({repeats} repeats):")
            for k, proc in procs.items():
                mem = proc.memory_full_info()
                print(
                    f"  {k:<20} CPU {fmt(cpu[k], '% of a core')}; RSS {mem.rss / 2**20:.1f} MiB,"
                    f" PSS {mem.pss / 2**20:.1f} MiB, {proc.num_threads()} threads"
                )
            q, d = (statistics.median(v) for v in cpu.values())
            print(f"  dependent / queued CPU: {d / q:.2f}" if q > 0 else "  queued used no CPU")
        finally:
            (home.parent / "gate").write_text("")
            cli(home, work, "wait", "--all-queued", "--timeout", "60s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
