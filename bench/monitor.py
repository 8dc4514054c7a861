"""Item 4: what the monitor costs to keep open, next to `htop` (or `btop`) over the same period.

The TUI and the reference monitor each run in their own private tmux server of the same size
(120×40), side by side over the same seconds; each pane's output is copied to a file
(`tmux pipe-pane`) to count the bytes sent to the terminal. Once a second: CPU (share of one
core, user + system) and bytes/s of each; RSS is the peak. Two phases:

* **live**: 16 running runs, each writing 20 metric and 20 output lines a second (one helper
  process writes their files the way their supervisors would, and is recorded as their
  supervisor, so they list as running);
* **idle**: 50 finished runs, nothing changing.

Update latency: a metric line with a new step is appended to a running run's `metrics.jsonl`
and the time until that step is on screen is taken (`tmux capture-pane` polled every 10 ms),
during the live phase and at idle (a sleeping helper then stands in for the run's
supervisor). The reference monitor shows no runs, so it has no such latency; its redraw
interval is given instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.bench_tui import PROBE_RUN, WRITER, latency_samples, make_run
from bench.common import ROOT, Section, Table, child_env, fig, med, number, tool_version, verdict
from bench.terminal import Pane, tmux_missing, tui_command

sys.path.insert(0, str(ROOT))

from runner import identity  # noqa: E402
from runner.model import ProcessIdentity, Status  # noqa: E402

LIVE_RUNS = 16
RATE = 20.0
IDLE_RUNS = 50
# The TUI issue's goals (bench/bench_tui.py GOALS): live CPU, RSS, bytes, idle CPU, p95.
GOAL_CPU, GOAL_RSS, GOAL_BYTES, GOAL_IDLE_CPU, GOAL_P95 = 10.0, 120.0, 50.0, 0.5, 250.0


@dataclass
class Watched:
    """A monitor being sampled: its process and the file its terminal output goes to."""

    label: str
    proc: psutil.Process
    pipe: Path
    cpu: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    rss: float = 0.0
    busy_s: float = 0.0  # CPU seconds over the whole window (finer than per-second ticks)
    window_s: float = 0.0

    @property
    def mean_cpu(self) -> float:
        return 100 * self.busy_s / self.window_s if self.window_s else 0.0


def sample(watched: list[Watched], seconds: float) -> None:
    """Per-second CPU % of one core and KB/s to the terminal of each, over the same seconds."""
    marks = []
    for w in watched:
        t = w.proc.cpu_times()
        marks.append((t.user + t.system, w.pipe.stat().st_size))
    mark = start = time.monotonic()
    end = mark + seconds
    while time.monotonic() < end - 0.01:
        time.sleep(max(0.0, mark + 1.0 - time.monotonic()))
        now = time.monotonic()
        for k, w in enumerate(watched):
            t = w.proc.cpu_times()
            busy, size = t.user + t.system, w.pipe.stat().st_size
            w.cpu.append(100 * (busy - marks[k][0]) / (now - mark))
            w.rate.append((size - marks[k][1]) / 1024 / (now - mark))
            w.rss = max(w.rss, w.proc.memory_info().rss / 2**20)
            w.busy_s += busy - marks[k][0]
            w.window_s = now - start
            marks[k] = (busy, size)
        mark = now


def latency(pane: Pane, home: Path, samples: int, run_id: str) -> list[float]:
    """Milliseconds from a metric line with a new step of ``run_id`` to that step on screen."""
    return latency_samples(pane.wait, home, samples, run_id)


def p95(values: list[float]) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]


def reference_monitor(work: Path) -> tuple[str, list[str], str] | str:
    """(label, command, redraw interval) of htop or btop; or why neither can run."""
    htop, btop = shutil.which("htop"), shutil.which("btop")
    if htop:
        version = tool_version(["htop", "--version"]) or "htop"
        return version, [htop], "1.5 s (its default delay)"
    if btop:
        version = "btop " + (tool_version(["btop", "--version"]) or "")
        return version.strip(), [btop], "2 s (its default update_ms)"
    return "unavailable: neither htop nor btop is installed (apt-get install htop)"


def reference_env(work: Path) -> dict[str, str]:
    home = work / "refhome"  # its own HOME: the reference saves no settings of the user's
    home.mkdir(exist_ok=True)
    return {**child_env(), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def start_pair(
    home: Path, work: Path, tag: str, ref: tuple[str, list[str], str] | str
) -> tuple[Pane, Watched, Pane | None, Watched | None]:
    pane, pipe = Pane((120, 40)), work / f"{tag}-tui.bytes"
    proc = pane.start_command(tui_command(home), pipe=pipe, env=child_env())
    tui = Watched("Backprop TUI", proc, pipe)
    if isinstance(ref, str):
        return pane, tui, None, None
    rpane, rpipe = Pane((120, 40)), work / f"{tag}-ref.bytes"
    rproc = rpane.start_command(ref[1], pipe=rpipe, env=reference_env(work))
    return pane, tui, rpane, Watched(ref[0], rproc, rpipe)


def phase(
    label: str,
    home: Path,
    work: Path,
    ref: tuple[str, list[str], str] | str,
    seconds: float,
    wait_text: str,
    before_latency: Callable[[], None],
    samples: int,
    probe: str,
) -> tuple[list[Watched], list[float]]:
    pane, tui, rpane, rwatch = start_pair(home, work, label, ref)
    try:
        pane.wait(wait_text, timeout=60)
        time.sleep(2.0)  # past start-up
        watched = [tui] + ([rwatch] if rwatch else [])
        sample(watched, seconds)
        before_latency()
        lat = latency(pane, home, samples, probe)
        return watched, lat
    finally:
        pane.kill()
        if rpane is not None:
            rpane.kill()


def run(quick: bool, repeats: int) -> Section:
    sec = Section("4. The monitor's own cost, next to htop")
    sec.text(__doc__.split("\n\n", 1)[1].strip())
    no_tmux = tmux_missing()
    if no_tmux:
        sec.text(f"Not run: {no_tmux}.")
        sec.headline.append(f"monitor cost: not run ({no_tmux})")
        return sec
    seconds = max(repeats, 6 if quick else 30)
    idle_seconds = max(repeats, 6 if quick else 20)
    samples = max(repeats, 8 if quick else 40)
    with tempfile.TemporaryDirectory(prefix="backprop-bench-mon-") as tmp:
        work = Path(tmp)
        ref = reference_monitor(work)
        # live
        live = work / "live"
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(live), str(LIVE_RUNS), str(RATE)],
            stdin=subprocess.DEVNULL,
        )
        try:
            me = identity.identity_of(writer.pid)
            assert me is not None
            make_run(live, PROBE_RUN, Status.RUNNING, me)
            for i in range(LIVE_RUNS):
                make_run(live, f"{i + 2:06d}", Status.RUNNING, me)
            live_w, live_lat = phase(
                "live",
                live,
                work,
                ref,
                seconds,
                f"Runs {LIVE_RUNS + 1}",
                lambda: None,
                samples,
                PROBE_RUN,
            )
        finally:
            writer.kill()
            writer.wait()
        # idle
        idle = work / "idle"
        gone = ProcessIdentity(pid=999_999, start_ticks=1, boot_id="bench")
        for i in range(IDLE_RUNS):
            make_run(idle, f"{i + 1:06d}", Status.COMPLETED, gone)
        probe = f"{IDLE_RUNS + 1:06d}"  # the newest: at the top of the tree
        sleeper = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)"], stdin=subprocess.DEVNULL
        )
        try:
            sleeping = identity.identity_of(sleeper.pid)
            assert sleeping is not None

            def add_probe() -> None:  # after the idle sampling: one running run to update
                make_run(idle, probe, Status.RUNNING, sleeping)
                time.sleep(1.5)

            idle_w, idle_lat = phase(
                "idle",
                idle,
                work,
                ref,
                idle_seconds,
                f"Runs {IDLE_RUNS}",
                add_probe,
                samples,
                probe,
            )
        finally:
            sleeper.kill()
            sleeper.wait()

    ref_label = ref if isinstance(ref, str) else ref[0]
    sec.text(
        f"Live: {seconds:g} s of samples; idle: {idle_seconds:g} s; {samples} latency samples "
        f"per phase. Reference: {ref_label}. Figures: median (min–max) of the per-second "
        "samples; RSS is the peak."
    )
    headers = ["", "Backprop TUI, live", "Backprop TUI, idle"]
    has_ref = not isinstance(ref, str)
    if has_ref:
        headers += [f"{ref_label}, live", f"{ref_label}, idle"]
    t = sec.table(Table(headers))

    def row(
        name: str, get: Callable[[Watched], str], tui_extra: tuple[str, str] = ("", "")
    ) -> None:
        cells = [get(live_w[0]) + tui_extra[0], get(idle_w[0]) + tui_extra[1]]
        if has_ref:
            cells += [get(live_w[1]), get(idle_w[1])]
        t.add(name, *cells)

    row("CPU, % of one core, per second", lambda w: fig(w.cpu, digits=2))
    row("CPU, % of one core, whole window", lambda w: number(w.mean_cpu, 2))
    row("RSS peak, MiB", lambda w: number(w.rss))
    row("to the terminal, KB/s", lambda w: fig(w.rate, digits=2))
    lat_cells = [
        f"{fig(live_lat, digits=3)}; p95 {p95(live_lat):.0f}",
        f"{fig(idle_lat, digits=3)}; p95 {p95(idle_lat):.0f}",
    ]
    if has_ref:
        assert not isinstance(ref, str)
        lat_cells += [f"n/a: redraws every {ref[2]}"] * 2
    t.add("update latency, ms", *lat_cells)
    if has_ref:
        t2 = sec.table(Table(["Backprop TUI ÷ reference", "live", "idle"]))
        for name, get in (
            ("CPU (whole window)", lambda w: w.mean_cpu),
            ("RSS", lambda w: w.rss),
            ("bytes to the terminal", lambda w: med(w.rate)),
        ):
            cells = []
            for ws in (live_w, idle_w):
                a, b = get(ws[0]), get(ws[1])
                cells.append(f"{number(a / b)}×" if b > 0 else "— (reference: 0)")
            t2.add(name, *cells)
    else:
        sec.text(f"Reference monitor: {ref}.")
    checks = [
        ("live CPU", med(live_w[0].cpu), GOAL_CPU, "%"),
        ("idle CPU", med(idle_w[0].cpu), GOAL_IDLE_CPU, "%"),
        ("RSS", max(live_w[0].rss, idle_w[0].rss), GOAL_RSS, " MiB"),
        ("live bytes", med(live_w[0].rate), GOAL_BYTES, " KB/s"),
        ("live latency p95", p95(live_lat), GOAL_P95, " ms"),
    ]
    sec.text(
        "The TUI issue's goals: "
        + "; ".join(
            f"{name} ≤ {goal:g}{unit}: {verdict(value <= goal)} ({value:.3g}{unit})"
            for name, value, goal, unit in checks
        )
        + "."
    )
    head = (
        f"monitor: with 16 live runs the TUI takes {live_w[0].mean_cpu:.1f} % of a core, "
        f"{live_w[0].rss:.0f} MiB and {med(live_w[0].rate):.0f} KB/s to the terminal, "
        f"update latency p95 {p95(live_lat):.0f} ms; idle {idle_w[0].mean_cpu:.2f} % of a core"
    )
    if has_ref:
        head += (
            f" ({ref_label} in the same tmux size: {live_w[1].mean_cpu:.2f} % of a core, "
            f"{live_w[1].rss:.0f} MiB, {med(live_w[1].rate):.1f} KB/s)"
        )
    sec.headline.append(head)
    return sec


if __name__ == "__main__":
    os.chdir(ROOT)
    print(run("--quick" in sys.argv, 5).markdown())
