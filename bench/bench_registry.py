"""Registry and supervisor costs: ``backprop ls --json`` over many runs, supervisor RSS and CPU.

Usage: ``python bench/bench_registry.py [--quick] [--runs N] [--repeats K]``

Prints medians with min and max, and ratios to a baseline measured in the same process
(interpreter start-up for ``ls``; an idle ``sleep`` process for the supervisor's footprint).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from runner import envnames

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.durable import write_json  # noqa: E402
from runner.model import ProcessIdentity, RunSpec, RunState, Status  # noqa: E402
from runner.registry import INDEX, Registry  # noqa: E402

STATUSES = [Status.COMPLETED, Status.FAILED, Status.STOPPED, Status.TIMEBOXED]


def fmt(values: list[float], unit: str, scale: float = 1.0) -> str:
    v = sorted(x * scale for x in values)
    return f"median {statistics.median(v):.3f} {unit} (min {v[0]:.3f}, max {v[-1]:.3f}, n={len(v)})"


def build_registry(home: Path, runs: int, metric_lines: int) -> None:
    """Write ``runs`` finished runs with ``metric_lines`` history lines in all (not fsynced)."""
    reg = Registry(home)
    reg.ensure()
    me = ProcessIdentity(pid=12345, start_ticks=1, boot_id="bench")
    per_run = max(1, metric_lines // runs)
    now = time.time() - 86400
    for i in range(1, runs + 1):
        run_id = f"{i:06d}"
        folder = reg.runs_dir / run_id
        folder.mkdir()
        (folder / "checkpoints").mkdir()
        spec = RunSpec(
            id=run_id,
            name=f"exp-{i % 97}",
            command=("python3", "train.py", "--lr", str(1e-3 * (i % 7 + 1))),
            cwd="/work",
            created_at=now + i,
            group=f"sweep-{i // 100}",
        )
        write_json(folder / "spec.json", spec.to_json(), durable=False)
        st = RunState(
            run_id=run_id,
            attempt=1 + i % 3,
            status=STATUSES[i % 4],
            updated_at=now + i + 60,
            supervisor=me,
            started_at=now + i + 1,
            ended_at=now + i + 60,
            exit_code=0,
            reason="exit 0",
        )
        write_json(folder / "state.json", st.to_json(), durable=False)
        write_json(
            folder / "summary.json",
            {
                "schema": 1,
                "attempt": 1,
                "step": per_run,
                "primary": "loss",
                "loss": 1.0 / (1 + i % 50),
                "best": 0.01,
                "metrics": {"loss": 0.5, "lr": 1e-3},
                "checkpoints": i % 5,
                "health": [],
                "records": per_run,
            },
            durable=False,
        )
        with open(folder / "metrics.jsonl", "w") as f:
            f.writelines(
                f'{{"a":1,"s":{s},"t":{now + s},"v":{{"loss":{1 / (s + 1):.5f}}}}}\n'
                for s in range(per_run)
            )


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def bench_ls(runs: int, metric_lines: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        t0 = time.perf_counter()
        build_registry(home, runs, metric_lines)
        print(
            f"registry: {runs} runs, {metric_lines} metric lines, built in "
            f"{time.perf_counter() - t0:.1f} s"
        )
        env = {**os.environ, envnames.HOME: str(home)}
        ls = [sys.executable, "-m", "tui.cli", "ls", "--json"]
        baseline = [sys.executable, "-c", "import json, argparse"]
        (home / INDEX).unlink(missing_ok=True)
        cold = timed(ls, env)  # builds the listing cache
        warm, base = [], []
        for _ in range(repeats):
            warm.append(timed(ls, env))
            base.append(timed(baseline, env))
        uncached = []
        for _ in range(max(3, repeats // 2)):
            (home / INDEX).unlink(missing_ok=True)
            uncached.append(timed(ls, env))
        med_w, med_b = statistics.median(warm), statistics.median(base)
        print(f"ls --json, {runs} runs, cache warm : {fmt(warm, 's')}  (goal <= 0.3 s)")
        print(
            f"ls --json, {runs} runs, no cache   : {fmt(uncached, 's')}  (first run {cold:.3f} s)"
        )
        print(f"python start-up baseline           : {fmt(base, 's')}")
        print(f"ratio ls(warm) / interpreter start : {med_w / med_b:.2f}x")


def sample_process(proc: psutil.Process, seconds: float) -> tuple[float, float, float]:
    """CPU percent of one core over ``seconds``; RSS and PSS in MB at the end.

    PSS splits shared pages (libpython, libc) among the processes mapping them: with many
    supervisors it is closer to what each one really costs than RSS.
    """
    c0 = sum(proc.cpu_times()[:2])
    time.sleep(seconds)
    c1 = sum(proc.cpu_times()[:2])
    full = proc.memory_full_info()
    return 100.0 * (c1 - c0) / seconds, full.rss / 1e6, getattr(full, "pss", full.rss) / 1e6


def bench_supervisor(window: float, repeats: int) -> None:
    chatty = (
        "import sys, time\n"
        "t = time.time()\n"
        "i = 0\n"
        "while time.time() - t < 60:\n"
        "    for _ in range(100):\n"
        "        i += 1\n"
        "        print(f'step {i} loss: {1 / i:.5f} lr=0.001')\n"
        "    time.sleep(0.01)\n"
    )
    idle = "import time\ntime.sleep(60)\n"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, envnames.HOME: str(home)}
        for label, code in (("idle trainer", idle), ("trainer printing ~10k lines/s", chatty)):
            script = Path(tmp) / "t.py"
            script.write_text(code)
            out = subprocess.run(
                [sys.executable, "-m", "tui.cli", "run", "--json", str(script)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            run_id = out.split('"id": "')[1].split('"')[0]
            reg = Registry(home)
            deadline = time.time() + 20
            state = reg.read_state(run_id)
            while (state is None or state.status is not Status.RUNNING) and time.time() < deadline:
                time.sleep(0.05)
                state = reg.read_state(run_id)
            assert state is not None and state.status is Status.RUNNING
            sup = psutil.Process(state.supervisor.pid)
            ref = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            cpu, rss, pss, ref_rss = [], [], [], []
            for _ in range(repeats):
                c, r, p = sample_process(sup, window)
                cpu.append(c)
                rss.append(r)
                pss.append(p)
                ref_rss.append(psutil.Process(ref.pid).memory_info().rss / 1e6)
            ref.kill()
            subprocess.run(
                [sys.executable, "-m", "tui.cli", "stop", "--force", run_id],
                env=env,
                capture_output=True,
                check=False,
            )
            print(
                f"supervisor, {label}: CPU {fmt(cpu, '% of a core')}; "
                f"RSS {fmt(rss, 'MB')} (goal <= 20 MB, ~0 %); PSS {fmt(pss, 'MB')}"
            )
            print(
                f"  ratio RSS supervisor / bare python sleeping: "
                f"{statistics.median(rss) / statistics.median(ref_rss):.2f}x"
            )
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (for the test suite)")
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    a = p.parse_args()
    runs = a.runs or (300 if a.quick else 10_000)
    repeats = a.repeats or (5 if a.quick else 7)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    bench_ls(runs, runs * 100, repeats)
    bench_supervisor(0.5 if a.quick else 3.0, repeats)


if __name__ == "__main__":
    main()
