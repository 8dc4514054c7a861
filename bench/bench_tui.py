"""Benchmark the TUI inside tmux with real rendering.

Measures, for the real console script in a private tmux server:

* live: 16 running runs, each writing 20 metric and 20 output lines a second: the TUI's CPU
  (share of one core), RSS, and bytes written to the terminal (``tmux pipe-pane``);
* idle: only finished runs: CPU and bytes;
* latency: from a metric line appended to a run's ``metrics.jsonl`` to its step on screen
  (``capture-pane`` polled every 10 ms), p50/p95;
* first frame with 10,000 runs: from the start of the console script (the exec after the
  shell's short sleep) to the first frame, and to the tree listing them all;
* scale (``--scale``, alone): the same live load with and without 10,000 finished runs
  beside it, in alternating rounds: CPU medians, their ratio, peak RSS (goals: ratio <= 1.1,
  RSS <= 80 MB). The TUI's work should follow what changes, not how much is registered.
  ``--few 50`` puts 50 finished runs in the small registry: the screen is then as full
  (and the list as scrollable) as with 10,000, so the ratio shows the registry's size alone.

The live runs are written by one helper process that stands in for their supervisors (it is
recorded as their supervisor, so the registry sees them as running) and writes their files
the way the supervisor does. ``--quick`` shortens every phase. Prints median/min/max.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import identity  # noqa: E402
from runner.durable import write_json  # noqa: E402
from runner.model import ProcessIdentity, RunSpec, RunState, Status  # noqa: E402

BACKPROP = shutil.which("backprop") or f"{sys.executable} -m tui.cli"
GOALS = {"cpu": 10.0, "rss": 120.0, "bytes": 50.0, "idle_cpu": 0.5, "p95": 250.0, "first": 1.0,
         "scale_rss": 80.0}  # fmt: skip
PROBE_RUN = "000001"
LIVE_BASE = 900_000  # the scale phase's live runs: newer than its 10,000 finished ones

WRITER = r"""
import json, math, os, sys, time
home, n, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
first = int(sys.argv[4]) if len(sys.argv) > 4 else 2  # run 000001 is the latency probe's
runs = [f"{i:06d}" for i in range(first, first + n)]
# The runs are written after this process starts (they name it as their supervisor): wait
# for their files, or opening them fails and every run shows as lost.
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not all(
    os.path.exists(os.path.join(home, "runs", r, "metrics.jsonl")) for r in runs
):
    time.sleep(0.01)
outs = {r: open(os.path.join(home, "runs", r, "output.log"), "a") for r in runs}
mets = {r: open(os.path.join(home, "runs", r, "metrics.jsonl"), "a") for r in runs}
step, t0, last_summary = 0, time.time(), 0.0
while True:
    step += 1
    now = time.time()
    for k, r in enumerate(runs):
        loss = 2.0 * math.exp(-step / 400) + 0.1 + 0.01 * math.sin(step + k)
        rec = {"a": 1, "s": step, "t": now, "v": {"loss": loss, "lr": 3e-4}}
        mets[r].write(json.dumps(rec) + "\n")
        mets[r].flush()
        outs[r].write(f"step {step:6d} | loss {loss:.4f} | \x1b[36m20.0 it/s\x1b[0m\n")
        outs[r].flush()
    if now - last_summary >= 1.0:
        last_summary = now
        for r in runs:
            tmp = os.path.join(home, "runs", r, ".tmp-summary.json")
            with open(tmp, "w") as f:
                json.dump({"schema": 1, "step": step, "loss": loss, "steps_per_s": rate}, f)
            os.replace(tmp, os.path.join(home, "runs", r, "summary.json"))
    time.sleep(max(0.0, t0 + step / rate - time.time()))
"""


def make_run(home: Path, run_id: str, status: Status, supervisor: ProcessIdentity) -> None:
    """Write one run's spec and state (not fsynced: a benchmark's throwaway registry)."""
    folder = home / "runs" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    t = 1_700_000_000.0 + int(run_id)
    spec = RunSpec(
        id=run_id, name=f"bench-{run_id}", command=("python3", "train.py"), cwd="/", created_at=t
    )
    write_json(folder / "spec.json", spec.to_json(), durable=False)
    state = RunState(
        run_id=run_id,
        attempt=1,
        status=status,
        updated_at=t,
        supervisor=supervisor,
        started_at=t + 1,
        ended_at=None if status.active else t + 60,
        exit_code=None if status.active else 0,
        reason="" if status.active else "exit code 0",
    )
    write_json(folder / "state.json", state.to_json(), durable=False)
    if not status.active:
        write_json(
            folder / "summary.json",
            {"schema": 1, "step": 100, "loss": 0.25, "best": 0.2},
            durable=False,
        )
    (folder / "output.log").touch()
    (folder / "metrics.jsonl").touch()


class Tmux:
    """A private tmux server with one session running the TUI."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.socket = f"backprop-bench-{uuid.uuid4().hex[:8]}"
        self.size = size
        self.started_at = 0.0  # time.time() when the console script started (see start)

    def run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout

    def start(self, home: Path, pipe: Path) -> psutil.Process:
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TMUX")}
        cmd = f"sleep 0.3; exec {BACKPROP} --home {home} tui"
        subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-s", "b",
             "-x", str(self.size[0]), "-y", str(self.size[1]), cmd],
            check=True, env=env, timeout=10,
        )  # fmt: skip
        self.run("pipe-pane", "-o", "-t", "b", f"cat >> {pipe}")
        pid = int(self.run("display", "-p", "-t", "b", "#{pane_pid}").strip())
        proc = psutil.Process(pid)
        deadline = time.monotonic() + 10
        while "tui" not in " ".join(proc.cmdline()) and time.monotonic() < deadline:
            time.sleep(0.002)  # the shell execs the TUI after its short sleep
        # When the console script started: the pane's process was created by the shell 0.3 s
        # earlier (its sleep lets pipe-pane attach first), so its create_time is not it.
        self.started_at = time.time()
        return proc

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "b")

    def wait(self, text: str, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.screen():
                return time.time()
            time.sleep(0.01)
        raise RuntimeError(f"timed out waiting for {text!r}:\n{self.screen()}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def sample(
    proc: psutil.Process, pipe: Path, seconds: float
) -> tuple[list[float], list[float], float]:
    """CPU % of one core and KB/s to the terminal, per second; peak RSS in MB."""
    cpu, rate, rss = [], [], 0.0
    t = proc.cpu_times()
    busy, size, mark = t.user + t.system, pipe.stat().st_size, time.monotonic()
    end = mark + seconds
    while time.monotonic() < end:
        time.sleep(1.0)
        t = proc.cpu_times()
        now, new_size = time.monotonic(), pipe.stat().st_size
        cpu.append(100 * (t.user + t.system - busy) / (now - mark))
        rate.append((new_size - size) / 1024 / (now - mark))
        rss = max(rss, proc.memory_info().rss / 2**20)
        busy, size, mark = t.user + t.system, new_size, now
    return cpu, rate, rss


def figures(name: str, values: list[float], unit: str, goal: float | None = None) -> None:
    med = statistics.median(values)
    verdict = "" if goal is None else ("  ok" if med <= goal else f"  OVER goal {goal:g}")
    print(
        f"{name:<34} median {med:8.2f} {unit:<5} min {min(values):8.2f}  "
        f"max {max(values):8.2f}{verdict}"
    )


def live_phase(args: argparse.Namespace, work: Path) -> None:
    home = work / "live"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), str(args.runs), str(args.rate)],
        stdin=subprocess.DEVNULL,
    )
    try:
        me = identity.identity_of(writer.pid)
        assert me is not None
        make_run(home, PROBE_RUN, Status.RUNNING, me)
        for i in range(args.runs):
            make_run(home, f"{i + 2:06d}", Status.RUNNING, me)
        tmux, pipe = Tmux((120, 40)), work / "live.bytes"
        pipe.touch()
        proc = tmux.start(home, pipe)
        try:
            tmux.wait(f"Runs {args.runs + 1}")
            time.sleep(2.0)  # past start-up
            cpu, rate, rss = sample(proc, pipe, args.seconds)
            print(f"live: {args.runs} runs x {args.rate:g} metric + {args.rate:g} output lines/s")
            figures("  TUI CPU (% of one core)", cpu, "%", GOALS["cpu"])
            figures("  bytes to the terminal", rate, "KB/s", GOALS["bytes"])
            print(f"  peak RSS {rss:.1f} MB" + ("  ok" if rss <= GOALS["rss"] else "  OVER"))
            latency(tmux, home, args.samples)
        finally:
            tmux.kill()
    finally:
        writer.kill()
        writer.wait()


def latency_samples(
    wait: Callable[..., float], home: Path, samples: int, run_id: str = PROBE_RUN
) -> list[float]:
    """Milliseconds from a metric line with a new step of ``run_id`` to that step on screen.

    ``wait(text, timeout=...)`` returns the wall time ``text`` was first seen on screen.
    """
    path = home / "runs" / run_id / "metrics.jsonl"
    found = []
    for k in range(samples):
        step = 50_000 + k * 7
        with open(path, "a") as f:
            t0 = time.time()
            f.write(json.dumps({"a": 1, "s": step, "t": t0, "v": {"loss": 0.5}}) + "\n")
        seen = wait(f" {step} ", timeout=10)
        found.append(1000 * (seen - t0))
        time.sleep(0.13 + (k % 5) * 0.05)  # not in step with any timer
    return found


def latency(tmux: Tmux, home: Path, samples: int) -> None:
    """Append a metric line with a new step to the probe run; time until it is on screen."""
    found = sorted(latency_samples(tmux.wait, home, samples))
    p95 = found[min(len(found) - 1, int(round(0.95 * (len(found) - 1))))]
    figures("  metric line -> on screen", found, "ms")
    print(f"  p95 {p95:.0f} ms" + ("  ok" if p95 <= GOALS["p95"] else "  OVER goal 250"))


def idle_phase(args: argparse.Namespace, work: Path) -> None:
    home = work / "idle"
    gone = ProcessIdentity(pid=999_999, start_ticks=1, boot_id="bench")
    for i in range(50):
        make_run(home, f"{i + 1:06d}", Status.COMPLETED, gone)
    tmux, pipe = Tmux((120, 40)), work / "idle.bytes"
    pipe.touch()
    proc = tmux.start(home, pipe)
    try:
        tmux.wait("Runs 50")
        time.sleep(3.0)
        cpu, rate, rss = sample(proc, pipe, args.idle_seconds)
        print("idle: 50 finished runs")
        figures("  TUI CPU (% of one core)", cpu, "%", GOALS["idle_cpu"])
        figures("  bytes to the terminal", rate, "KB/s")
        print(f"  RSS {rss:.1f} MB")
    finally:
        tmux.kill()


def first_frame_phase(args: argparse.Namespace, work: Path) -> None:
    home = work / "many"
    gone = ProcessIdentity(pid=999_999, start_ticks=1, boot_id="bench")
    t = time.monotonic()
    for i in range(args.many):
        make_run(home, f"{i + 1:06d}", Status.COMPLETED, gone)
    print(f"first frame: {args.many} finished runs (written in {time.monotonic() - t:.1f} s)")
    time.sleep(2.2)  # let the listing cache's settle window pass, then prime it once
    subprocess.run([*BACKPROP.split(), "--home", str(home), "ls", "--json"],
                   capture_output=True, check=True)  # fmt: skip
    frame, listed = [], []
    for _ in range(args.first_samples):
        tmux, pipe = Tmux((120, 40)), work / "many.bytes"
        pipe.touch()
        tmux.start(home, pipe)
        try:
            started = tmux.started_at  # the exec of the console script, not the shell's start
            frame.append(tmux.wait("Runs") - started)
            listed.append(tmux.wait(f"Runs {args.many}") - started)
        finally:
            tmux.kill()
    figures("  process start -> first frame", frame, "s", GOALS["first"])
    figures(f"  process start -> {args.many} listed", listed, "s")


def _scale_round(home: Path, work: Path, args: argparse.Namespace) -> tuple[list[float], float]:
    """One TUI on ``home`` with ``args.runs`` live runs written: CPU per second, peak RSS."""
    # The live runs are the newest (at the top of the list, on screen), as when one trains.
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(home), str(args.runs), str(args.rate), str(LIVE_BASE)],
        stdin=subprocess.DEVNULL,
    )
    try:
        me = identity.identity_of(writer.pid)
        assert me is not None
        for i in range(args.runs):
            make_run(home, f"{LIVE_BASE + i:06d}", Status.RUNNING, me)
        tmux, pipe = Tmux((120, 40)), work / "scale.bytes"
        pipe.touch()
        proc = tmux.start(home, pipe)
        try:
            tmux.wait(f"{args.runs} running", timeout=60)
            time.sleep(3.0)  # past start-up (the first listing of a big registry)
            cpu, _, rss = sample(proc, pipe, args.seconds)
        finally:
            tmux.kill()
    finally:
        writer.kill()
        writer.wait()
    return cpu, rss


def scale_phase(args: argparse.Namespace, work: Path) -> None:
    """Live runs alone, then beside 10,000 finished ones, in alternating rounds."""
    alone, big = work / "alone", work / "big"
    gone = ProcessIdentity(pid=999_999, start_ticks=1, boot_id="bench")
    for i in range(args.many):
        make_run(big, f"{i + 1:06d}", Status.COMPLETED, gone)
    for i in range(args.few):  # enough to fill the screen: then both draw the same rows
        make_run(alone, f"{i + 1:06d}", Status.COMPLETED, gone)
    time.sleep(2.2)  # the listing cache's settle window, then prime it once
    subprocess.run([*BACKPROP.split(), "--home", str(big), "ls", "--json"],
                   capture_output=True, check=True)  # fmt: skip
    cpu: dict[Path, list[float]] = {alone: [], big: []}
    rss = {alone: 0.0, big: 0.0}
    for _ in range(args.rounds):
        for home in (alone, big):
            c, r = _scale_round(home, work, args)
            cpu[home] += c
            rss[home] = max(rss[home], r)
    a, b = statistics.median(cpu[alone]), statistics.median(cpu[big])
    print(f"scale: {args.runs} live runs, beside {args.few} and beside {args.many:,} finished")
    figures(f"  TUI CPU, beside {args.few}", cpu[alone], "%")
    figures(f"  TUI CPU, beside {args.many:,}", cpu[big], "%")
    ratio = b / a if a > 0 else float("inf")
    print(f"  CPU ratio (medians) {ratio:.2f}" + ("  ok" if ratio <= 1.1 else "  OVER goal 1.1"))
    print(f"  peak RSS beside {args.few}: {rss[alone]:.1f} MB, "
          f"beside {args.many:,}: {rss[big]:.1f} MB"
          + ("  ok" if rss[big] <= GOALS["scale_rss"] else "  OVER goal 80"))  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases (about a minute)")
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--rate", type=float, default=20.0, help="lines per second per run")
    parser.add_argument("--scale", action="store_true", help="only the scale phase")
    parser.add_argument("--rounds", type=int, default=3, help="scale phase: rounds of each")
    parser.add_argument(
        "--few",
        type=int,
        default=0,
        help="scale phase: finished runs beside the live ones in "
        "the small registry (0: the live runs alone; 50: a full screen, as in the big one)",
    )
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("bench_tui: tmux is not installed")
        return 1
    args.seconds = 8 if args.quick else 30
    args.idle_seconds = 6 if args.quick else 20
    args.samples = 10 if args.quick else 40
    args.first_samples = 1 if args.quick else 3
    args.many = 10_000
    with tempfile.TemporaryDirectory(prefix="backprop-bench-") as tmp:
        work = Path(tmp)
        if args.scale:
            scale_phase(args, work)
            return 0
        live_phase(args, work)
        idle_phase(args, work)
        first_frame_phase(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
