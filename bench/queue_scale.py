"""Item 6: the queue at sweep scale: what waiting costs, how fast it drains, how fast it starts.

* **Waiting**: 1,000 and 10,000 runs queued behind `max_parallel 1` (one run holds the slot).
  Every Backprop process that exists because of the queue (the dispatcher; a queued run has
  none) is measured: PSS, and CPU over an idle window (60 s; 5 s with `--quick`, and 100 and
  1,000 runs). Before the dispatcher each queued run was its own supervisor, ~13.5 MB PSS and
  0.1 % of a core each (measured on this machine: 100 queued = 1,348 MB). The figures in
  this table are single measurements (the window is the repeat).
* **Submitting**: `backprop run --sweep` of 1,000 runs (100 with `--quick`), wall time of the
  command, which returns once every spec and place in the queue is durable.
* **Draining**: trivial runs (`true`) with `max_parallel 8` and a fast bucket: runs started per
  second, from the first start to the last.
* **Starting**: `backprop run` of a run that fits, from the command's start to the trainer's
  first line of code (it writes `time.time()` first thing). Before the dispatcher: 318 ms
  median on this machine (274–394), taken with every Backprop module compiled from source at
  each start (this sandbox sets `PYTHONDONTWRITEBYTECODE=1` and the install is editable);
  the report measures from bytecode, as a `pip install` leaves it, and shows that case too.
* **Idle CPU**: a queue that waits only for events (a run's end) sleeps on its FIFO and on a
  pidfd per running supervisor (a SIGKILL is an event too), looks at a few `stat`s every
  15 s (`backprop.toml` edited) and runs a full round only then or every 5 minutes
  (`governor/quiet.py`); before, a full round ran every 5 s (~1 % of a core).
"""

from __future__ import annotations

import json
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
    source_only_copy,
    verdict,
)

sys.path.insert(0, str(ROOT))

from governor import dispatcher  # noqa: E402
from runner import envnames  # noqa: E402
from runner.registry import Registry  # noqa: E402

GOAL_PSS_MB = 50.0
GOAL_CPU = 0.5  # percent of one core
GOAL_DRAIN = 20.0
GOAL_SUBMIT_S = 2.0
GOAL_START_MS = 200.0
MB = 1e6


def cli(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*backprop_cli(), *args],
        env=child_env(BACKPROP_HOME=str(home)),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"backprop {args[0]} failed: {proc.stderr.strip()[-300:]}")
    return proc


def configure(home: Path, **governor: object) -> None:
    lines = ["[governor]"] + [f"{k} = {json.dumps(v)}" for k, v in governor.items()]
    (home / "backprop.toml").write_text("\n".join(lines) + "\n")


def sweep(n: int) -> list[str]:
    return ["--sweep", "i=" + ",".join(str(i) for i in range(n))]


def queue_processes(home: Path) -> list[psutil.Process]:
    """Every process that exists because of the queue: the dispatcher, if one runs.

    Found by the lock it holds and the identity it records (the short-lived parent of its
    detaching fork also names ``governor.dispatcher`` on its command line).
    """
    info = dispatcher.alive(Registry(home))
    if info is None or info.pid <= 0:
        return []
    try:
        return [psutil.Process(info.pid)]
    except psutil.NoSuchProcess:
        return []


def cpu_of(procs: list[psutil.Process]) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in procs)


def settle(procs: list[psutil.Process], quiet_s: float = 2.0, limit_s: float = 60.0) -> None:
    """Wait until the dispatcher's start and first round are over: its CPU time has not
    moved for ``quiet_s`` (a fixed sleep let both fall into the idle window on a loaded
    machine: a first round over 10,000 entries alone is ~100 ms of CPU)."""
    last, since = cpu_of(procs), time.monotonic()
    deadline = since + limit_s
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_of(procs)
        if now != last:
            last, since = now, time.monotonic()


def waiting(n: int, window_s: float, work: Path) -> tuple[float, float, int, float]:
    """PSS (bytes), CPU (% of a core) over the window, processes, and the submit time."""
    with tempfile.TemporaryDirectory(dir=work) as d:
        home = Path(d) / "home"
        home.mkdir()
        configure(home, max_parallel=1, bucket_capacity=1000, bucket_rate=1000.0)
        cli(home, "run", "--name", "holder", "sleep", "3600", cwd=Path(d))
        t = time.perf_counter()
        cli(home, "run", "--name", "q", *sweep(n), "true", cwd=Path(d))
        submit_s = time.perf_counter() - t
        deadline = time.monotonic() + 30
        procs: list[psutil.Process] = []
        while time.monotonic() < deadline and not procs:
            procs = queue_processes(home)
            time.sleep(0.1)
        settle(procs)
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in procs)
        t0 = time.monotonic()
        time.sleep(window_s)
        cpu = sum(sum(p.cpu_times()[:2]) for p in procs) - cpu0
        pct = 100.0 * cpu / (time.monotonic() - t0)
        pss = float(sum(p.memory_full_info().pss for p in procs))
        cli(home, "stop", "1", cwd=Path(d))
        for p in procs:
            p.kill()
        return pss, pct, len(procs), submit_s


def drain(n: int, work: Path) -> float:
    """Starts per second with max_parallel 8."""
    with tempfile.TemporaryDirectory(dir=work) as d:
        home = Path(d) / "home"
        home.mkdir()
        configure(home, max_parallel=8, bucket_capacity=1000, bucket_rate=1000.0)
        cli(home, "run", "--name", "d", *sweep(n), "true", cwd=Path(d))
        reg = Registry(home)
        ids = reg.ids()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            views = [reg.load(i) for i in ids]
            if all(v.status.finished for v in views):
                break
            time.sleep(0.5)
        starts = sorted(v.state.started_at for v in views if v.state and v.state.started_at)
        if len(starts) < 2 or starts[-1] <= starts[0]:
            raise RuntimeError("the drain did not start its runs")
        for p in queue_processes(home):
            p.kill()
        return (len(starts) - 1) / (starts[-1] - starts[0])


TRAINER = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time()))\n"


def start_latency(repeats: int, work: Path, *, from_source: bool = False) -> list[float]:
    """Seconds from ``backprop run`` to the trainer's first line of code.

    ``from_source``: Backprop's modules compiled at every start (see
    :func:`bench.common.source_only_copy`), as the figures before this table's were taken.
    """
    out = []
    with tempfile.TemporaryDirectory(dir=work) as d:
        home = Path(d) / "home"
        home.mkdir()
        # Runs that fit now: with the default bucket (8, then 1 a second) every run after the
        # 16th or so of this loop waited ~0.5 s for a token (the rate limit, not the start).
        configure(home, bucket_capacity=1000, bucket_rate=1000.0)
        script = Path(d) / "first.py"
        script.write_text(TRAINER)
        extra = {envnames.HOME: str(home)}
        if from_source:
            code = source_only_copy(Path(d) / "src")
            extra.update(PYTHONPATH=str(code), PYTHONDONTWRITEBYTECODE="1")
        for k in range(repeats):
            mark = Path(d) / f"t{k}"
            env = child_env(**extra)
            t0 = time.time()
            subprocess.run(
                [*backprop_cli(), "run", str(script), str(mark)],
                env=env,
                cwd=d,
                capture_output=True,
                check=True,
                stdin=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (mark.exists() and mark.read_text()):
                time.sleep(0.005)
            out.append(float(mark.read_text()) - t0)
            time.sleep(0.3)  # the run ends; the next one starts on a quiet machine
    return out


def run(quick: bool, repeats: int) -> Section:
    sec = Section("6. The queue at sweep scale")
    sec.text(__doc__.split("\n\n", 1)[1].strip() if __doc__ else "")
    work = Path(tempfile.mkdtemp(prefix="bp-queue-bench-"))
    sizes = (100, 1000) if quick else (1000, 10_000)
    window = 3.0 if quick else 60.0
    t = sec.table(
        Table(["queued runs", "queue processes", "PSS total (MB)", "CPU idle (% of a core)"])
    )
    last = (0.0, 0.0)
    for n in sizes:
        pss, pct, nproc, _ = waiting(n, window, work)
        t.add(f"{n:,}", nproc, f"{pss / MB:.1f}", f"{pct:.2f}")
        last = (pss, pct)
    goal_n = f"{sizes[-1]:,}"
    sec.text(
        f"Goal with {goal_n} queued: ≤ {GOAL_PSS_MB:g} MB PSS in total "
        f"{verdict(last[0] / MB <= GOAL_PSS_MB)}, ≤ {GOAL_CPU:g} % of a core idle "
        f"{verdict(last[1] <= GOAL_CPU)} (over {window:g} s)."
    )
    sub_n = 100 if quick else 1000
    sub = submit_times(sub_n, repeats, work)
    n_drain = 20 if quick else 200
    rates = [drain(n_drain, work) for _ in range(repeats if quick else max(repeats, 5))]
    lat = start_latency(repeats if quick else max(repeats, 21), work)
    lat_src = start_latency(repeats if quick else max(repeats, 11), work, from_source=True)
    t2 = sec.table(Table(["what", "figure", "goal"]))
    t2.add(
        f"submit a {sub_n:,}-run sweep (s)",
        fig(sub),
        f"≤ {GOAL_SUBMIT_S:g} s for 1,000 " + verdict(sub_n < 1000 or med(sub) <= GOAL_SUBMIT_S),
    )
    t2.add(
        f"drain, max_parallel 8, {n_drain} trivial runs (starts/s)",
        fig(rates),
        f"≥ {GOAL_DRAIN:g} " + verdict(med(rates) >= GOAL_DRAIN),
    )
    t2.add(
        "submit → trainer's first line (ms)",
        fig(lat, 1000),
        f"≤ {GOAL_START_MS:g} ms " + verdict(med(lat) * 1000 <= GOAL_START_MS),
    )
    t2.add(
        "the same, every module compiled from source at each start (ms)",
        fig(lat_src, 1000),
        "(how the 318 ms before was taken)",
    )
    sec.headline.append(
        f"queue: {goal_n} queued runs cost {last[0] / MB:.0f} MB PSS and {last[1]:.2f} % of a "
        f"core; drain {med(rates):.0f} starts/s; submit → first line {med(lat) * 1000:.0f} ms"
    )
    return sec


def submit_times(n: int, repeats: int, work: Path) -> list[float]:
    """Wall times of ``backprop run --sweep`` of ``n`` runs that all queue (one registry)."""
    with tempfile.TemporaryDirectory(dir=work) as d:
        home = Path(d) / "home"
        home.mkdir()
        configure(home, max_parallel=1)
        cli(home, "run", "--name", "holder", "sleep", "3600", cwd=Path(d))
        took = []
        for _ in range(repeats):
            t = time.perf_counter()
            cli(home, "run", "--name", "q", *sweep(n), "true", cwd=Path(d))
            took.append(time.perf_counter() - t)
        cli(home, "stop", "1", cwd=Path(d))
        for p in queue_processes(home):
            p.kill()
        return took
