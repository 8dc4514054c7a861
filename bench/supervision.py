"""Item 2: the cost of supervision to a trainer printing 10,000 lines a second.

The trainer does a fixed amount of work per step (calibrated here so that, run directly, it
prints about 10,000 training-style lines a second) and prints one line per step; it times its
own loop. Each pair runs it once with stdout going straight to a file (`python t.py > file`,
`PYTHONUNBUFFERED=1` as Backprop sets it) and once under `backprop run` (its supervisor
parses every line into `metrics.jsonl` as it goes); the order within a pair alternates. The
ratio is the supervised loop time over the direct one, pair by pair. The trainer's own CPU
time tells a difference in wall time that is work from one that is waiting for a core (the
supervisor's CPU, shown too, runs on the same machine).

End to end adds `backprop run`'s own start (a Python process), the supervisor's start and
exit bookkeeping, and this script's 20 ms polling of `state.json`: a fixed cost per run,
shown apart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import (
    ROOT,
    Section,
    Table,
    backprop_cli,
    child_env,
    fig,
    med,
    pairwise,
    ratio,
    verdict,
)

sys.path.insert(0, str(ROOT))

from runner.metrics.history import read_history  # noqa: E402
from runner.registry import Registry  # noqa: E402

GOAL = 1.01
RATE = 10_000  # lines per second, run directly

TRAINER = r"""
import sys, time
n, work, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def step(k):
    x = 0
    for j in range(k):
        x += j * j
    return x

loss = 2.5
c0, t0 = time.process_time(), time.perf_counter()
for i in range(1, n + 1):
    step(work)
    loss = loss * 0.9995 + 0.0001
    print(f"step {i} | loss {loss:.5f} | lr 3.0e-04 | {work} ops")
t1, c1 = time.perf_counter(), time.process_time()
with open(out, "w") as f:
    f.write(f"{t1 - t0!r} {c1 - c0!r}")
"""


def loop_times(path: Path) -> tuple[float, float]:
    """The trainer's loop: wall seconds and its own CPU seconds."""
    wall, cpu = path.read_text().split()
    return float(wall), float(cpu)


def direct(work_dir: Path, script: Path, lines: int, work: int) -> tuple[float, float, float]:
    """Loop seconds, end-to-end seconds and the loop's CPU seconds of one direct run."""
    out, timing = work_dir / "direct.log", work_dir / "direct.time"
    env = child_env(PYTHONUNBUFFERED="1")
    t = time.perf_counter()
    with open(out, "wb") as f:
        subprocess.run(
            [sys.executable, str(script), str(lines), str(work), str(timing)],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=work_dir,
            check=True,
            timeout=600,
        )
    total = time.perf_counter() - t
    wall, cpu = loop_times(timing)
    return wall, total, cpu


def supervised(
    home: Path, work_dir: Path, script: Path, lines: int, work: int, k: int
) -> tuple[float, float, float, int, float]:
    """Loop seconds, end-to-end seconds, supervisor CPU seconds, metric records captured and
    the loop's CPU seconds."""
    timing = work_dir / f"sup{k}.time"
    env = child_env(BACKPROP_HOME=str(home))
    env.pop("PYTHONUNBUFFERED", None)
    t = time.perf_counter()
    out = subprocess.run(
        [*backprop_cli(), "run", "--json", "--name", f"chatty-{k}", "--gpus", "0",
         "--python", sys.executable, str(script), str(lines), str(work), str(timing)],
        capture_output=True, text=True, env=env, cwd=work_dir, check=True, timeout=120,
    )  # fmt: skip
    run_id = json.loads(out.stdout)["id"]
    reg = Registry(home)
    sup: psutil.Process | None = None
    cpu = 0.0
    deadline = time.monotonic() + 600
    while True:
        state = reg.read_state(run_id)
        if state is not None and state.status.finished:
            break
        if state is not None and sup is None and state.supervisor is not None:
            try:
                sup = psutil.Process(state.supervisor.pid)
            except psutil.Error:
                pass
        if sup is not None:
            try:
                c = sup.cpu_times()
                cpu = c.user + c.system
            except psutil.Error:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not end")
        time.sleep(0.02)
    total = time.perf_counter() - t
    if state.status.value != "completed":
        raise RuntimeError(f"run {run_id} ended {state.status.value}: {state.reason}")
    records = read_history(reg.run_dir(run_id)).records
    wall, own_cpu = loop_times(timing)
    return wall, total, cpu, records, own_cpu


def calibrate(work_dir: Path, script: Path) -> tuple[int, float]:
    """Work per step for about RATE lines/s run directly; and the rate reached.

    Each probe is the fastest of three runs, so a burst of load elsewhere does not skew it.
    """
    probe = 2000

    def per_line(work: int) -> float:
        return min(direct(work_dir, script, probe, work)[0] for _ in range(3)) / probe

    lo_w, hi_w = 10, 1000
    lo, hi = per_line(lo_w), per_line(hi_w)
    per_op = max(1e-12, (hi - lo) / (hi_w - lo_w))
    base = lo - per_op * lo_w
    work = max(1, round((1 / RATE - base) / per_op))
    for _ in range(2):  # refine: scale the work part to the target
        got = per_line(work)
        work = max(1, round(work * (1 / RATE - base) / max(1e-9, got - base)))
    return work, 1 / per_line(work)


def run(quick: bool, repeats: int) -> Section:
    sec = Section("2. Cost of supervision: 10,000 lines a second under `backprop run`")
    sec.text(__doc__.split("\n\n", 1)[1].strip())
    seconds = 0.5 if quick else 2.0
    lines = int(RATE * seconds)
    repeats = repeats if quick else max(repeats, 15)  # the goal is 1 %: many short pairs
    with tempfile.TemporaryDirectory(prefix="backprop-bench-sup-") as tmp:
        work_dir = Path(tmp)
        home = work_dir / "home"
        script = work_dir / "chatty.py"
        script.write_text(TRAINER)
        work, rate = calibrate(work_dir, script)
        d_loop, d_total, s_loop, s_total, s_cpu, captured = [], [], [], [], [], []
        d_own, s_own = [], []
        for k in range(repeats):
            for mode in ("direct", "supervised") if k % 2 == 0 else ("supervised", "direct"):
                if mode == "direct":
                    loop, total, own = direct(work_dir, script, lines, work)
                    d_loop.append(loop)
                    d_total.append(total)
                    d_own.append(own)
                else:
                    loop, total, cpu, records, own = supervised(
                        home, work_dir, script, lines, work, k
                    )
                    s_loop.append(loop)
                    s_own.append(own)
                    s_total.append(total)
                    s_cpu.append(cpu)
                    captured.append(records)
    loop_ratio = pairwise(s_loop, d_loop)
    total_ratio = pairwise(s_total, d_total)
    sec.text(
        f"{lines:,} lines per run ({work} work units per step; run directly at calibration it "
        f"printed {rate:,.0f} lines/s), {repeats} pairs. Every supervised run captured "
        + (
            f"all {lines:,} lines as metric records."
            if all(r == lines for r in captured)
            else f"{min(captured):,}–{max(captured):,} of {lines:,} lines as metric records."
        )
    )
    t = sec.table(Table(["", "direct to a file", "under `backprop run`", "ratio (pairwise)"]))
    t.add("trainer's loop, s", fig(d_loop), fig(s_loop), ratio(loop_ratio))
    t.add("trainer's own CPU time, s", fig(d_own), fig(s_own), ratio(pairwise(s_own, d_own)))
    t.add("lines/s", fig([lines / x for x in d_loop]), fig([lines / x for x in s_loop]), "")
    t.add("end to end, s", fig(d_total), fig(s_total), ratio(total_ratio))
    t.add(
        "supervisor CPU, % of one core over the loop",
        "",
        fig([100 * c / x for c, x in zip(s_cpu, s_loop, strict=True)]),
        "",
    )
    ok = med(loop_ratio) <= GOAL
    sec.text(
        f"Goal: loop wall-time ratio ≤ {GOAL}: {verdict(ok)} "
        f"(median {med(loop_ratio):.3f}; end to end {med(total_ratio):.3f}, which includes "
        f"the fixed start and exit costs of a {seconds:g} s run)."
    )
    sec.headline.append(
        f"supervision: a trainer printing 10,000 lines/s runs {med(loop_ratio):.3f}× as long "
        f"under `backprop run` as writing to a file (goal ≤ {GOAL}: {verdict(ok)})"
    )
    return sec


if __name__ == "__main__":
    os.chdir(ROOT)
    s = run("--quick" in sys.argv, 5)
    print(s.markdown())
