# over 400 lines: one benchmark section; each tool's loop, setup and timing live together
"""Item 1: the cost of logging one metric inside a training loop, ours against the usual tools.

Every tool runs the same loop over the same precomputed values in one child process; only
the call in the loop's body differs, written the way each tool's documentation writes it:

    for i in range(1, n + 1):
        report(step=i, loss=values[i])                    # runner.report
        print(dumps({"step": i, "loss": values[i]}))      # a JSON line our capture parses
        writer.add_scalar("loss", values[i], i)           # TensorBoard (torch's SummaryWriter)
        log_metric("loss", values[i], step=i)             # MLflow, default local store
        log({"loss": values[i]}, step=i)                  # W&B offline (run.log), trackio local

Per repeat and tool, the tool's set-up and one first call (step 0) are outside the timing;
the timed region is calls 1..n **plus the tool's finish** (`reporting.shutdown()`,
`writer.close()`, `mlflow.end_run()`, `run.finish()`, `trackio.finish()`), so that what each
keeps in memory or hands to a thread is written before the clock stops. The figure is that
time divided by n. The print goes to a file opened as Backprop gives a trainer its stdout
(unbuffered, `PYTHONUNBUFFERED=1`). Tools take turns within a repeat (the order rotates),
and each peer's ratio to ours is taken repeat by repeat.

    python -m bench.logging_cost --calls N --repeats R --out results.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runner import envnames

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    EXTRA_HINT,
    Section,
    Table,
    child_env,
    fig,
    med,
    number,
    pairwise,
    ratio,
    verdict,
)

SETUP_TIMEOUT_S = 120

# name -> (distribution for its version, loop body)
TOOLS: dict[str, tuple[str | None, str]] = {
    "empty call": (None, "empty(step=i, loss=values[i])"),
    "runner.report": ("backprop", "report(step=i, loss=values[i])"),
    "print JSON line": (None, 'print(dumps({"step": i, "loss": values[i]}))'),
    "TensorBoard": ("tensorboard", 'add_scalar("loss", values[i], i)'),
    "MLflow": ("mlflow", 'log_metric("loss", values[i], step=i)'),
    "W&B offline": ("wandb", 'log({"loss": values[i]}, step=i)'),
    "trackio": ("trackio", 'log({"loss": values[i]}, step=i)'),
}
NEEDS = {
    "TensorBoard": "tensorboard",
    "MLflow": "mlflow",
    "W&B offline": "wandb",
    "trackio": "trackio",
}


def make_loop(body: str, names: dict[str, Any]) -> Callable[[int, list[float]], None]:
    """Compile ``for i in range(1, n + 1): BODY`` with the tool's call bound as a local."""
    args = ", ".join(f"{k}={k}" for k in names)
    src = (
        f"def loop(n, values, {args}):\n"
        f"    for i in range(1, n + 1):\n"
        f"        {body}\n"
    )  # fmt: skip
    scope: dict[str, Any] = {}
    exec(compile(src, f"<loop {body}>", "exec"), names, scope)
    fn: Callable[[int, list[float]], None] = scope["loop"]
    return fn


def empty(step: int | None = None, **metrics: float) -> None:
    """The floor: a call with runner.report's signature that does nothing."""


class Tool:
    """One tool's set-up, loop and finish for one repeat."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.work = work / name.replace(" ", "_").replace("&", "")
        self.work.mkdir(parents=True, exist_ok=True)
        self.rep = 0

    def setup(self) -> tuple[Callable[[int, list[float]], None], Callable[[], None]]:
        """Start a run; return the loop (call 0 already made) and the finish."""
        self.rep += 1
        setups = {
            "empty call": self._empty,
            "runner.report": self._report,
            "print JSON line": self._print,
            "TensorBoard": self._tensorboard,
            "MLflow": self._mlflow,
            "W&B offline": self._wandb,
            "trackio": self._trackio,
        }
        return setups[self.name]()

    # each returns (loop, finish) after the set-up and the step-0 call

    def _empty(self) -> tuple[Callable[[int, list[float]], None], Callable[[], None]]:
        loop = make_loop(TOOLS["empty call"][1], {"empty": empty})
        empty(step=0, loss=0.0)
        return loop, lambda: None

    def _report(self) -> tuple[Callable[[int, list[float]], None], Callable[[], None]]:
        from runner import report
        from runner.metrics import reporting

        run_dir = self.work / f"rep{self.rep}"
        run_dir.mkdir()
        os.environ[envnames.RUN_DIR] = str(run_dir)
        report(step=0, loss=0.0)  # the first call sets up (file, thread)
        assert reporting.is_active()
        return make_loop(TOOLS["runner.report"][1], {"report": report}), reporting.shutdown

    def _print(self) -> tuple[Callable[[int, list[float]], None], Callable[[], None]]:
        # Under Backprop a trainer's stdout is a file and PYTHONUNBUFFERED=1: the same here.
        raw = open(self.work / f"output{self.rep}.log", "wb", buffering=0)  # noqa: SIM115
        out = io.TextIOWrapper(raw, write_through=True)
        saved = sys.stdout
        sys.stdout = out
        print(json.dumps({"step": 0, "loss": 0.0}))

        def finish() -> None:
            sys.stdout = saved
            out.close()

        return make_loop(TOOLS["print JSON line"][1], {"dumps": json.dumps}), finish

    def _tensorboard(self) -> tuple[Callable[[int, list[float]], None], Callable[[], None]]:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.work / f"rep{self.rep}"))
        writer.add_scalar("loss", 0.0, 0)
        loop = make_loop(TOOLS["TensorBoard"][1], {"add_scalar": writer.add_scalar})
        return loop, writer.close

    def _mlflow(self) -> tuple[Callable[[int, list[float]], None], Callable[[], None]]:
        import mlflow

        os.chdir(self.work)  # the default store is ./mlflow.db (or ./mlruns, by version)
        mlflow.start_run(run_name=f"bench-{self.rep}")
        mlflow.log_metric("loss", 0.0, step=0)
        return make_loop(TOOLS["MLflow"][1], {"log_metric": mlflow.log_metric}), mlflow.end_run

    def _wandb(self) -> tuple[Callable[[int, list[float]], None], Callable[[], None]]:
        import wandb

        run = wandb.init(
            project="bench",
            name=f"bench-{self.rep}",
            mode="offline",
            dir=str(self.work),
            settings=wandb.Settings(console="off", silent=True),
        )
        run.log({"loss": 0.0}, step=0)
        return make_loop(TOOLS["W&B offline"][1], {"log": run.log}), run.finish

    def _trackio(self) -> tuple[Callable[[int, list[float]], None], Callable[[], None]]:
        import trackio

        with contextlib.redirect_stdout(io.StringIO()):
            trackio.init(
                project="bench",
                name=f"bench-{self.rep}",
                embed=False,
                auto_log_gpu=False,
                auto_log_cpu=False,
            )
        trackio.log({"loss": 0.0}, step=0)

        def finish() -> None:
            with contextlib.redirect_stdout(io.StringIO()):
                trackio.finish()

        return make_loop(TOOLS["trackio"][1], {"log": trackio.log}), finish


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def values_for(n: int) -> list[float]:
    return [2.0 * math.exp(-i / (n / 4 + 1)) + 0.1 + 0.01 * math.sin(i) for i in range(n + 1)]


def available(name: str) -> str | None:
    """Why ``name`` cannot run here, or ``None``."""
    import importlib.util

    dist = NEEDS.get(name)
    if dist is not None and importlib.util.find_spec(dist) is None:
        return EXTRA_HINT
    if name == "TensorBoard" and importlib.util.find_spec("torch") is None:
        return "not installed: its SummaryWriter (torch.utils.tensorboard) needs torch"
    return None


def measure(calls: int, repeats: int, work: Path) -> dict[str, Any]:
    # Set before any peer is imported: their stores and caches go to the scratch folder.
    os.environ.update(
        {
            "TRACKIO_DIR": str(work / "trackio"),
            "HF_HOME": str(work / "hf"),
            "WANDB_MODE": "offline",
            "WANDB_DIR": str(work / "wandb"),
            "WANDB_SILENT": "true",
            "WANDB_DISABLE_GIT": "true",
            "GIT_PYTHON_REFRESH": "quiet",
            "MLFLOW_TRACKING_URI": "",
        }
    )
    os.environ.pop("MLFLOW_TRACKING_URI")
    os.environ.pop(envnames.RUN_DIR, None)
    values = values_for(calls)
    names = list(TOOLS)
    out: dict[str, Any] = {"calls": calls, "repeats": repeats, "tools": {}}
    tools = {}
    for name in names:
        reason = available(name)
        out["tools"][name] = {"error": reason, "per_call": [], "finish": [], "setup": []}
        if reason is None:
            tools[name] = Tool(name, work)
    for rep in range(repeats):
        live = [n for n in names if n in tools]
        shift = rep % max(1, len(live))
        for name in live[shift:] + live[:shift]:
            entry = out["tools"][name]
            try:
                with deadline(SETUP_TIMEOUT_S + calls // 10):
                    t0 = time.perf_counter()
                    loop, finish = tools[name].setup()
                    t1 = time.perf_counter()
                    loop(calls, values)
                    t2 = time.perf_counter()
                    finish()
                    t3 = time.perf_counter()
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                entry["error"] = f"failed: {type(exc).__name__}: {exc}".splitlines()[0][:300]
                entry["trace"] = traceback.format_exc()[-2000:]
                del tools[name]
                continue
            entry["setup"].append(t1 - t0)
            entry["per_call"].append((t3 - t1) / calls)
            entry["finish"].append(t3 - t2)
    return out


def capture_cost(calls: int, repeats: int) -> list[float]:
    """Seconds per line for our capture (in the supervisor) to turn printed lines into points."""
    from runner.metrics.capture_noise import NoiseFilter
    from runner.metrics.parsers import LineSplitter, StepTracker, parse_line

    values = values_for(calls)
    data = "".join(json.dumps({"step": i, "loss": values[i]}) + "\n" for i in range(1, calls + 1))
    blob = data.encode()
    per_line = []
    for _ in range(repeats):
        t = time.perf_counter()
        splitter, tracker, noise = LineSplitter(), StepTracker(), NoiseFilter()
        for line in splitter.feed(blob):
            if noise.skip(line):
                continue
            parsed = parse_line(line)
            if parsed is not None and parsed.checkpoint is None:
                tracker.resolve(parsed)
        per_line.append((time.perf_counter() - t) / calls)
    return per_line


# --- the parent's side: run the child, make the section ------------------------------------

PEERS = ("TensorBoard", "MLflow", "W&B offline", "trackio")
GOAL = 25.0


def run(quick: bool, repeats: int) -> Section:
    calls = 200 if quick else 2000
    sec = Section("1. Cost of logging one metric inside a training loop")
    sec.text(__doc__.split("\n\n", 1)[1].split("\n\n    python -m")[0].strip())
    with tempfile.TemporaryDirectory(prefix="backprop-bench-log-") as tmp:
        out = Path(tmp) / "result.json"
        child = subprocess.run(
            [sys.executable, "-m", "bench.logging_cost", "--calls", str(calls),
             "--repeats", str(repeats), "--out", str(out)],
            cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        if child.returncode != 0 or not out.exists():
            tail = (child.stderr or child.stdout).strip()[-500:]
            raise RuntimeError(f"the measuring process exited {child.returncode}: {tail}")
        result = json.loads(out.read_text())
    tools = result["tools"]
    ours = tools["runner.report"]["per_call"]
    sec.text(
        f"{calls:,} calls per loop, {repeats} repeats; µs per call is the loop plus the "
        "finish, divided by the calls. Versions are in the machine table above."
    )
    t = sec.table(
        Table(
            [
                "tool",
                "µs per call (finish included)",
                "µs per call, loop only",
                "finish, ms",
                "set-up, s (not included)",
                "÷ runner.report (pairwise)",
            ]
        )
    )
    fastest: tuple[float, str, list[float]] | None = None
    for name, entry in tools.items():
        per = entry["per_call"]
        if entry["error"] or len(per) < repeats:
            why = entry["error"] or "failed"
            t.add(name, why, "", "", "", "")
            continue
        loop_only = [(p * calls - f) / calls for p, f in zip(per, entry["finish"], strict=True)]
        rel = pairwise(per, ours)
        t.add(
            name,
            fig(per, 1e6),
            fig(loop_only, 1e6),
            fig(entry["finish"], 1e3),
            fig(entry["setup"]),
            "1×" if name == "runner.report" else ratio(rel),
        )
        if name in PEERS and (fastest is None or med(per) < fastest[0]):
            fastest = (med(per), name, rel)
    cap = result["capture_per_line"]
    sec.text(
        f"The printed JSON line is parsed by our capture in the run's supervisor, another "
        f"process: {number(med(cap) * 1e6)} µs per line there "
        f"(min {number(min(cap) * 1e6)}, max {number(max(cap) * 1e6)})."
    )
    ours_us = med(ours) * 1e6
    if fastest is None:
        sec.text(f"Goal: ≥ {GOAL:g}× cheaper than the fastest peer: not checked (no peer ran).")
        sec.headline.append(
            f"logging a metric: `runner.report` {number(ours_us)} µs per call; no peer ran "
            f"(pip install 'backprop[bench]')"
        )
    else:
        _, name, rel = fastest
        ok = med(rel) >= GOAL
        sec.text(
            f"Goal: ≥ {GOAL:g}× cheaper than the fastest peer ({name}): {verdict(ok)} "
            f"({number(med(rel))}× by the median of the pairwise ratios)."
        )
        sec.headline.append(
            f"logging a metric: `runner.report` {number(ours_us)} µs per call, "
            f"{number(med(rel))}× cheaper than the fastest peer ({name}, "
            f"{number(fastest[0] * 1e6)} µs) (goal ≥ {GOAL:g}×: {verdict(ok)})"
        )
    return sec


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="backprop-bench-log-") as tmp:
        here = os.getcwd()
        try:
            result = measure(a.calls, a.repeats, Path(tmp))
        finally:
            os.chdir(here)
        result["capture_per_line"] = capture_cost(max(a.calls, 20_000), a.repeats)
    Path(a.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
