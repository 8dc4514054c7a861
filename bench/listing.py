"""Item 3: listing 10,000 finished runs with 1M metric lines, ours against MLflow.

Both stores get the same runs: the same names, groups, learning rates, statuses (completed,
failed, stopped, timeboxed; MLflow's FINISHED, FAILED, KILLED, KILLED) and the same 100 loss
values per run. Ours is written directly in the registry's format (spec, state, summary from
`runner.metrics.summary.SummaryBuilder`, and `metrics.jsonl` in the supervisor's format);
MLflow's through its client and batch API (`create_run`, `log_batch`, `set_terminated`) into
its default local store (`./mlflow.db` in a scratch folder). Only listing is timed:

* a new process each time: `backprop ls --json` against `python -c` calling
  `mlflow.search_runs(search_all_experiments=True)` and printing it as JSON, both to /dev/null;
  ours with the listing cache warm (as it stays) and cold (`index.cache` deleted first);
* in one warm process: `Registry.list_runs()` encoded as `ls --json` encodes it against
  `mlflow.search_runs(...)` returning its DataFrame.

Ratios are MLflow's time over ours, repeat by repeat. Then the TUI's time from its process
start to the first frame, and to the tree counting every run, on the same registry.

    python -m bench.listing mlflow-build DIR RUNS PER_RUN   # the child that fills MLflow
    python -m bench.listing inproc HOME DIR REPEATS OUT     # the in-process pairs
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    EXTRA_HINT,
    Section,
    Table,
    backprop_cli,
    child_env,
    fig,
    med,
    pairwise,
    ratio,
)
from runner.durable import dump_json, write_json  # noqa: E402
from runner.metrics.history import Point, point_record  # noqa: E402
from runner.metrics.summary import SummaryBuilder  # noqa: E402
from runner.model import ProcessIdentity, RunSpec, RunState, Status  # noqa: E402
from runner.registry import INDEX, Registry  # noqa: E402

STATUSES = [Status.COMPLETED, Status.FAILED, Status.STOPPED, Status.TIMEBOXED]
MLFLOW_STATUS = {
    "completed": "FINISHED",
    "failed": "FAILED",
    "stopped": "KILLED",
    "timeboxed": "KILLED",
}
T0 = 1_700_000_000.0

SEARCH = """
import sys, mlflow
df = mlflow.search_runs(search_all_experiments=True, max_results=1_000_000)
sys.stdout.write(df.to_json(orient="records"))
sys.stderr.write(f"rows={len(df)}\\n")
"""


def run_data(i: int, per_run: int) -> dict[str, Any]:
    """Run ``i`` (from 1) as both stores record it."""
    created = T0 + 60.0 * i
    started = created + 1
    scale = 1 + (i % 50) / 100
    return {
        "id": f"{i:06d}",
        "name": f"exp-{i % 97}",
        "group": f"sweep-{i // 100}",
        "lr": f"{1e-3 * (i % 7 + 1):g}",
        "status": STATUSES[i % 4],
        "created": created,
        "started": started,
        "ended": started + per_run,
        "points": [
            (s, started + s, 2.0 * scale * math.exp(-s / (per_run / 3 + 1)) + 0.05)
            for s in range(1, per_run + 1)
        ],
    }


def build_ours(home: Path, runs: int, per_run: int) -> None:
    """Finished runs written directly in the registry's format (not fsynced)."""
    reg = Registry(home)
    reg.ensure()
    gone = ProcessIdentity(pid=999_999, start_ticks=1, boot_id="bench")
    for i in range(1, runs + 1):
        d = run_data(i, per_run)
        folder = reg.runs_dir / d["id"]
        folder.mkdir()
        (folder / "checkpoints").mkdir()
        spec = RunSpec(
            id=d["id"],
            name=d["name"],
            command=("python3", "train.py", "--lr", d["lr"]),
            cwd="/work",
            created_at=d["created"],
            group=d["group"],
        )
        write_json(folder / "spec.json", spec.to_json(), durable=False)
        status: Status = d["status"]
        state = RunState(
            run_id=d["id"],
            attempt=1,
            status=status,
            updated_at=d["ended"],
            supervisor=gone,
            started_at=d["started"],
            ended_at=d["ended"],
            exit_code={"completed": 0, "failed": 1}.get(status.value),
            reason={"completed": "exit 0", "failed": "exit code 1"}.get(status.value, "stopped"),
        )
        write_json(folder / "state.json", state.to_json(), durable=False)
        builder = SummaryBuilder("loss")
        records = []
        for s, t, loss in d["points"]:
            point = Point(1, s, t, {"loss": loss})
            builder.add(point)
            records.append(dump_json(point_record(1, s, t, point.values)))
        with open(folder / "metrics.jsonl", "wb") as f:
            f.write(b"".join(records))
        (folder / "output.log").touch()
        summary = builder.to_json(now=d["ended"], attempt=1, running=False)
        write_json(folder / "summary.json", summary, durable=False)


def build_mlflow(store: Path, runs: int, per_run: int) -> float:
    """The same runs in MLflow's default local store under ``store``; seconds taken."""
    os.chdir(store)
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    t = time.perf_counter()
    client = MlflowClient()
    exp = client.create_experiment("bench")
    for i in range(1, runs + 1):
        d = run_data(i, per_run)
        run = client.create_run(
            exp,
            run_name=d["name"],
            start_time=int(d["started"] * 1000),
            tags={"group": d["group"]},
        )
        rid = run.info.run_id
        metrics = [Metric("loss", v, int(ts * 1000), s) for s, ts, v in d["points"]]
        client.log_batch(rid, metrics=metrics, params=[Param("lr", d["lr"])])
        client.set_terminated(
            rid, status=MLFLOW_STATUS[d["status"].value], end_time=int(d["ended"] * 1000)
        )
        if i % 1000 == 0:
            print(f"  mlflow: {i} runs", file=sys.stderr, flush=True)
    return time.perf_counter() - t


def in_process(home: Path, store: Path | None, repeats: int) -> dict[str, list[float]]:
    """Pairs of in-process listings, each side warm (ours alone without ``store``)."""
    reg = Registry(home)

    def ours() -> int:
        views = reg.list_runs()
        text = "[" + ",".join(v.to_json_text() for v in views) + "]\n"
        return len(text)

    sides: list[Any] = [ours]
    if store is not None:
        os.chdir(store)
        import mlflow

        def theirs() -> int:
            return len(mlflow.search_runs(search_all_experiments=True, max_results=1_000_000))

        sides.append(theirs)
    for side in sides:
        side()
    times: list[list[float]] = [[] for _ in sides]
    for k in range(repeats):
        order = list(range(len(sides)))
        for j in order if k % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            sides[j]()
            times[j].append(time.perf_counter() - t)
    return {"ours": times[0], "mlflow": times[1] if len(times) > 1 else []}


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    elapsed = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {out.returncode}: {out.stderr.strip()[-300:]}")
    return elapsed, out.stderr


def first_frames(home: Path, runs: int, repeats: int) -> tuple[list[float], list[float]]:
    from bench.terminal import Pane, tui_command

    frame, listed = [], []
    for _ in range(repeats):
        pane = Pane((120, 40))
        proc = pane.start_command(tui_command(home), env=child_env())
        try:
            started = proc.create_time()
            frame.append(pane.wait("Runs", timeout=60) - started)
            listed.append(pane.wait(f"Runs {runs}", timeout=60) - started)
        finally:
            pane.kill()
    return frame, listed


def mlflow_missing() -> str | None:
    import importlib.util

    return None if importlib.util.find_spec("mlflow") else EXTRA_HINT


def run(quick: bool, repeats: int) -> Section:
    from bench.terminal import tmux_missing

    runs = 300 if quick else 10_000
    per_run = 100
    sec = Section(f"3. Listing at scale: {runs:,} runs, {runs * per_run:,} metric lines")
    sec.text(__doc__.split("\n\n", 1)[1].split("\n\n    python")[0].strip())
    with tempfile.TemporaryDirectory(prefix="backprop-bench-ls-") as tmp:
        work = Path(tmp)
        home, store = work / "home", work / "mlflow"
        store.mkdir()
        t = time.perf_counter()
        build_ours(home, runs, per_run)
        built = time.perf_counter() - t
        time.sleep(2.2)  # past the listing cache's settle window
        env = child_env(BACKPROP_HOME=str(home))
        ls = [*backprop_cli(), "ls", "--json"]
        timed(ls, env, ROOT)  # primes the listing cache
        out = subprocess.run(ls, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        listed = len(json.loads(out.stdout))
        assert listed == runs, f"ls listed {listed} of {runs} runs"

        missing = mlflow_missing()
        ml_build = None
        if missing is None:
            try:
                child = subprocess.run(
                    [sys.executable, "-m", "bench.listing", "mlflow-build", str(store),
                     str(runs), str(per_run)],
                    env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=3600,
                )  # fmt: skip
                if child.returncode != 0:
                    raise RuntimeError(child.stderr.strip().splitlines()[-1])
                ml_build = float(child.stdout.strip().splitlines()[-1])
            except Exception as exc:
                missing = f"failed to fill its store: {type(exc).__name__}: {exc}"[:300]
        search = [sys.executable, "-c", SEARCH]
        warm, cold, theirs = [], [], []
        for k in range(repeats):
            steps = ["warm", "cold", "mlflow"]
            shift = k % 3
            for step in steps[shift:] + steps[:shift]:
                if step == "warm":
                    warm.append(timed(ls, env, ROOT)[0])
                elif step == "cold":
                    (home / INDEX).unlink(missing_ok=True)
                    cold.append(timed(ls, env, ROOT)[0])
                    timed(ls, env, ROOT)  # warm again (the cold run rebuilt it, to be sure)
                elif missing is None:
                    try:
                        elapsed, err = timed(search, child_env(), store)
                        rows = int(err.rsplit("rows=", 1)[1].split()[0])
                        if rows != runs:
                            raise RuntimeError(f"search_runs returned {rows} of {runs} runs")
                        theirs.append(elapsed)
                    except Exception as exc:
                        missing = f"search failed: {type(exc).__name__}: {exc}"[:300]
        inproc: dict[str, list[float]] | None = None
        out_file = work / "inproc.json"
        child = subprocess.run(
            [sys.executable, "-m", "bench.listing", "inproc", str(home),
             str(store) if missing is None else "-", str(repeats), str(out_file)],
            env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=1800,
        )  # fmt: skip
        if child.returncode == 0:
            inproc = json.loads(out_file.read_text())
        else:
            sec.text(f"The in-process pairs failed: {child.stderr.strip()[-300:]}")

        frames: tuple[list[float], list[float]] | None = None
        no_tmux = tmux_missing()
        if no_tmux is None:
            frames = first_frames(home, runs, repeats)

    note = f"Our registry was written in {built:.1f} s"
    note += f"; MLflow's store was filled in {ml_build:.0f} s." if ml_build else "."
    note += f" `backprop ls --json` listed all {runs:,} runs"
    note += "; MLflow's search returned all of them." if theirs else "."
    sec.text(note)
    tbl = sec.table(
        Table(["listing", "Backprop, s", "MLflow `search_runs`, s", "MLflow ÷ Backprop"])
    )
    why = missing or ""
    tbl.add(
        "new process, cache warm",
        fig(warm),
        fig(theirs) if theirs else why,
        ratio(pairwise(theirs, warm)) if theirs else "",
    )
    tbl.add(
        "new process, cache cold",
        fig(cold),
        fig(theirs) if theirs else why,
        ratio(pairwise(theirs, cold)) if theirs else "",
    )
    if inproc is not None:
        tbl.add(
            "in one warm process",
            fig(inproc["ours"]),
            fig(inproc["mlflow"]) if inproc["mlflow"] else why,
            ratio(pairwise(inproc["mlflow"], inproc["ours"])) if inproc["mlflow"] else "",
        )
    if theirs:
        sec.headline.append(
            f"listing {runs:,} runs: `backprop ls --json` is "
            f"{med(pairwise(theirs, warm)):.1f}× faster than MLflow's `search_runs` in a new "
            f"process ({med(warm):.2f} s against {med(theirs):.2f} s)"
        )
    else:
        sec.headline.append(
            f"listing {runs:,} runs: `backprop ls --json` {med(warm):.2f} s; MLflow: {why}"
        )
    t2 = sec.table(Table(["TUI on the same registry", "seconds"]))
    if frames is not None:
        t2.add("process start → first frame", fig(frames[0]))
        t2.add(f"process start → tree counting all {runs:,} runs", fig(frames[1]))
        sec.headline.append(
            f"TUI first frame on {runs:,} runs: {med(frames[0]):.2f} s; all listed "
            f"{med(frames[1]):.2f} s"
        )
    else:
        t2.add("process start → first frame", f"not run: {no_tmux}")
    return sec


def main() -> int:
    cmd = sys.argv[1]
    if cmd == "mlflow-build":
        store, runs, per_run = Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        print(build_mlflow(store, runs, per_run))
    elif cmd == "inproc":
        home_arg, store_arg, repeats, out = sys.argv[2:6]
        store_path = None if store_arg == "-" else Path(store_arg)
        result = in_process(Path(home_arg), store_path, int(repeats))
        Path(out).write_text(json.dumps(result))
    else:
        raise SystemExit(f"unknown command {cmd!r}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "section":
        print(run("--quick" in sys.argv, 5).markdown())
    else:
        raise SystemExit(main())
