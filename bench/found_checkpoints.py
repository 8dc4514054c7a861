"""The cost of finding checkpoints in a working directory that holds a data set.

``python -m bench.found_checkpoints [--repeats N] [--files N]``: prints the figures.

Two measures, each against an empty working directory:

1. The finder alone (:class:`runner.checkpoints.found.CheckpointFinder`): the time of its
   walks over the first minute of a run (30 walks, one every 2 s), and of one walk once the
   tree is known, for 100,000 files laid out as a data set (``data/train/<class>/<n>.jpg``),
   as a corpus in folders whose names say nothing (``corpus/shard_<k>/<n>.bin``), and in one
   flat folder (``images/<n>.png``).
2. A real run under ``backprop run``: a trainer that does a fixed amount of work per step and
   prints a line per step, in an empty working directory and in the corpus one (the worst
   layout), alternating; the trainer's loop time and the supervisor's CPU time, and their
   ratio to the empty directory's, pair by pair.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import ROOT, backprop_cli, child_env

sys.path.insert(0, str(ROOT))

from runner.checkpoints.found import SCAN_INTERVAL_S, CheckpointFinder  # noqa: E402

TRAINER = r"""
import sys, time
n = int(sys.argv[1])
t0 = time.perf_counter()
for step in range(1, n + 1):
    x = 0
    for j in range(3000):
        x += j * j
    print(f"step {step} | loss: {1.0 / step:.5f}", flush=True)
    time.sleep(0.002)
print(f"loop_s {time.perf_counter() - t0:.6f}")
"""


def make_tree(root: Path, layout: str, files: int) -> None:
    """Fill ``root`` with ``files`` empty files in one of the layouts."""
    if layout == "empty":
        return
    if layout == "flat":
        folder = root / "images"
        folder.mkdir(parents=True)
        for i in range(files):
            (folder / f"{i:06d}.png").touch()
        return
    top, sub, ext = (
        ("data/train", "class", "jpg") if layout == "data" else ("corpus", "shard", "bin")
    )
    per = 1000
    for k in range(max(1, files // per)):
        folder = root / top / f"{sub}_{k:04d}"
        folder.mkdir(parents=True)
        for i in range(per):
            (folder / f"{i:05d}.{ext}").touch()


def finder_cost(root: Path) -> tuple[float, float]:
    """(ms for the first minute's walks, ms for one walk of a known tree)."""
    since = time.time()
    finder = CheckpointFinder(str(root), since=since)
    now = since
    t0 = time.perf_counter()
    for _ in range(30):
        now += SCAN_INTERVAL_S
        finder.poll(now)
    first_minute = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    for _ in range(10):
        now += SCAN_INTERVAL_S
        finder.poll(now)
    return first_minute, (time.perf_counter() - t0) * 100


def supervised_run(work: Path, home: Path, steps: int) -> tuple[float, float]:
    """(trainer loop seconds, supervisor CPU seconds) of one run in ``work``."""
    script = work / "bench_trainer.py"
    script.write_text(TRAINER)
    env = child_env(BACKPROP_HOME=str(home))
    out = subprocess.run(
        [*backprop_cli(), "run", "--json", str(script), str(steps)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = json.loads(out.stdout)["id"]
    run_dir = home / "runs" / run_id
    sup_cpu = 0.0
    proc: psutil.Process | None = None
    while True:
        try:
            state = json.loads((run_dir / "state.json").read_text())
        except (OSError, ValueError):
            state = {}
        pid = (state.get("supervisor") or {}).get("pid")
        if proc is None and pid:
            proc = psutil.Process(pid)
        if proc is not None:
            try:
                t = proc.cpu_times()
                sup_cpu = t.user + t.system
            except psutil.Error:
                pass
        if state.get("status") in ("completed", "failed", "stopped"):
            break
        time.sleep(0.02)
    text = (run_dir / "output.log").read_text()
    loop = float(text.rsplit("loop_s ", 1)[1].split()[0])
    return loop, sup_cpu


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} (min {min(values):.3g}, max {max(values):.3g})"


def _pairs(d: dict[str, list[float]]) -> list[float]:
    return [c / e for c, e in zip(d["corpus"], d["empty"], strict=True)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.found_checkpoints")
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bp-bench-ckpt-") as tmp:
        base = Path(tmp)
        print(f"finder alone ({args.files:,} files; ms, median of {args.repeats})")
        trees: dict[str, Path] = {}
        for layout in ("empty", "data", "corpus", "flat"):
            trees[layout] = base / layout
            trees[layout].mkdir()
            make_tree(trees[layout], layout, args.files)
        empty_first = empty_walk = 0.0
        for layout, root in trees.items():
            runs = [finder_cost(root) for _ in range(args.repeats)]
            first = statistics.median(r[0] for r in runs)
            walk = statistics.median(r[1] for r in runs)
            if layout == "empty":
                empty_first, empty_walk = first, walk
            print(
                f"  {layout:7} first minute {first:8.2f} ms ({first / 60_000:.3%} of a core)"
                f"   one walk {walk:6.3f} ms (x{walk / max(empty_walk, 1e-9):.1f} empty)"
            )
        print(f"  empty first minute: {empty_first:.2f} ms")
        print(f"supervised run, {args.steps} steps, empty cwd vs corpus/ of {args.files:,} files")
        loops: dict[str, list[float]] = {"empty": [], "corpus": []}
        cpus: dict[str, list[float]] = {"empty": [], "corpus": []}
        order: list[str] = []
        for i in range(args.repeats):
            order = ["empty", "corpus"] if i % 2 == 0 else ["corpus", "empty"]
            for layout in order:
                home = base / f"home-{layout}-{i}"
                loop, cpu = supervised_run(trees[layout], home, args.steps)
                loops[layout].append(loop)
                cpus[layout].append(cpu)
        for layout in ("empty", "corpus"):
            print(
                f"  {layout:7} trainer loop s {_median(loops[layout])}"
                f"   supervisor CPU s {_median(cpus[layout])}"
            )
        print(f"  ratio corpus/empty: trainer loop {_median(_pairs(loops))}")
        print(f"  ratio corpus/empty: supervisor CPU {_median(_pairs(cpus))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
