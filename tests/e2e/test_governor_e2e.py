"""The governor with real supervisors and the real CLI: queued runs start on their own, in
submission order, with no Backprop process left running but their own supervisors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.model import Status
from runner.registry import Registry, RunView
from tests.conftest import Cli, wait_until

pytestmark = pytest.mark.slow

QUICK = textwrap.dedent(
    """
    import os, sys, time
    print("args", sys.argv[1:], "cuda", repr(os.environ.get("CUDA_VISIBLE_DEVICES")), flush=True)
    time.sleep(0.4)
    print("done", flush=True)
    """
)

GATED = textwrap.dedent(
    """
    import os, time
    gate = os.path.join(os.environ["BACKPROP_RUN_DIR"], "..", "..", "gate")
    while not os.path.exists(gate):
        time.sleep(0.05)
    print("through the gate", flush=True)
    """
)


def configure(home: Path, **governor: Any) -> None:
    lines = ["[governor]", 'poll_interval = "0.2s"']
    lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in governor.items()]
    (home / "backprop.toml").write_text("\n".join(lines).replace("'", '"') + "\n")


def cli_processes(home: Path) -> list[psutil.Process]:
    """Backprop processes under ``home`` that are not supervisors or trainers."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "tui.cli" in cmd and str(home) in cmd:
            found.append(p)
    return found


def views(home: Path, ids: list[str]) -> list[RunView]:
    reg = Registry(home)
    return [reg.load(i) for i in ids]


def wait_all_finished(home: Path, ids: list[str], timeout: float = 40) -> list[RunView]:
    result: list[RunView] = wait_until(
        lambda: (lambda vs: vs if all(v.status.finished for v in vs) else None)(views(home, ids)),
        timeout=timeout,
        interval=0.1,
        message=f"runs {ids} to finish",
    )
    return result


def intervals(vs: list[RunView]) -> list[tuple[float, float]]:
    out = []
    for v in vs:
        assert v.state is not None and v.state.started_at and v.state.ended_at, v
        out.append((v.state.started_at, v.state.ended_at))
    return out


def events_of(cli: Cli, run_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = cli.show(run_id)["events"]
    return events


def test_three_runs_with_max_parallel_one_run_one_after_another(cli: Cli, home: Path) -> None:
    configure(home, max_parallel=1)
    # The first waits for a gate, so that the others queue however slow the submissions are
    # (on a loaded machine the first two could end before the third was submitted).
    ids = [cli.run_script(GATED, name="seq0")]
    ids += [cli.run_script(QUICK, str(i), name=f"seq{i}") for i in (1, 2)]
    assert cli_processes(home) == []  # the CLI has returned; only supervisors remain
    (home / "gate").touch()
    vs = wait_all_finished(home, ids)
    assert [v.status for v in vs] == [Status.COMPLETED] * 3
    spans = intervals(vs)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start  # never overlapped, and in submission order
    queued = [e for e in events_of(cli, ids[2]) if e["event"] == "queued"]
    assert queued and "max_parallel 1 reached" in queued[0]["reason"]


def test_sweep_runs_as_one_group_through_the_queue(cli: Cli, home: Path) -> None:
    configure(home, max_parallel=2)
    script = cli.cwd / "train.py"
    script.write_text(QUICK.replace("time.sleep(0.4)", "time.sleep(1.0)"))
    # The issue's own spelling: --sweep after the script is still Backprop's option.
    out = json.loads(
        cli(
            "run", "--json", str(script), "--sweep", "lr=1e-3,3e-4", "--sweep", "batch=32,64"
        ).stdout
    )
    ids, group = out["ids"], out["group"]
    assert len(ids) == 4 and group == "train-sweep"
    vs = wait_all_finished(home, ids)
    assert all(v.status is Status.COMPLETED for v in vs)
    listed = {r["id"] for r in cli.json("ls", "--group", group)}
    assert listed == set(ids)
    spans = intervals(vs)
    for t in sorted(s for s, _ in spans):
        assert sum(1 for s, e in spans if s <= t < e) <= 2
    # FIFO: no run overtakes an earlier one. Two runs admitted in the same round (both slots
    # freed together) may be admitted a poll apart in either order; an overtaking run would
    # hold the slot for its whole 1 s run.
    admitted = [next(e["t"] for e in events_of(cli, i) if e["event"] == "admitted") for i in ids]
    for earlier, later in zip(admitted, admitted[1:], strict=False):
        assert earlier <= later + 0.5
    outputs = [(Registry(home).run_dir(i) / "output.log").read_text() for i in ids]
    expected = [
        ["--lr", "1e-3", "--batch", "32"],
        ["--lr", "1e-3", "--batch", "64"],
        ["--lr", "3e-4", "--batch", "32"],
        ["--lr", "3e-4", "--batch", "64"],
    ]
    for text, args in zip(outputs, expected, strict=True):
        assert f"args {args!r}" in text


def run_processes(home: Path, marker: str) -> list[psutil.Process]:
    """Processes of this registry whose command line contains ``marker``."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if marker in cmd and str(home) in cmd:
            found.append(p)
    return found


def test_queued_runs_hold_no_process_and_survive_the_dispatchers_death(
    cli: Cli, home: Path
) -> None:
    # Was: a queued run's own supervisor killed while waiting does not block the queue. There
    # is no such process any more; what can die now is the dispatcher.
    configure(home, max_parallel=1)
    first = cli.run_script(GATED, name="gated")
    waiting = [cli.run_script(QUICK, name=f"w{i}") for i in range(3)]
    for rid in waiting:
        cli.wait_status(rid, "queued")
    assert (
        len(run_processes(home, "runner.supervisor.main")) == 1
    )  # the gated run's supervisor only

    def the_dispatcher() -> list[psutil.Process] | None:
        # It forks once to detach: its parent, same command line, may still be on its way out.
        found = run_processes(home, "governor.dispatcher")
        info = cli.json("status")["dispatcher"]
        return found if len(found) == 1 and info and info["pid"] == found[0].pid else None

    dispatchers = wait_until(the_dispatcher)
    assert cli.json("status")["dispatcher"]["queued"] == 3
    dispatchers[0].kill()
    dispatchers[0].wait(5)
    (home / "gate").touch()
    cli.wait_status(first, "completed")
    assert all(Registry(home).load(r).status is Status.QUEUED for r in waiting)
    cli("ls")  # any command finds runs waiting without a dispatcher and starts one
    vs = wait_all_finished(home, waiting)
    assert [v.status for v in vs] == [Status.COMPLETED] * 3
    assert cli.json("status")["queue"] == []


def test_start_runs_a_queued_run_now(cli: Cli, home: Path) -> None:
    configure(home, max_parallel=1)
    first = cli.run_script(GATED, name="gated")
    second = cli.run_script(QUICK, name="second")
    cli.wait_status(second, "queued")
    cli("start", second)
    done = cli.wait_status(second, "completed")
    assert Registry(home).load(first).status is Status.RUNNING  # it overtook the limit
    admitted = [e for e in done["events"] if e["event"] == "admitted"]
    assert admitted[0]["reason"].startswith("started by request (limits bypassed)")
    (home / "gate").touch()
    wait_all_finished(home, [first])


def test_status_json_reports_host_gpus_bucket_and_queue(cli: Cli, home: Path) -> None:
    configure(home, max_parallel=1, bucket_capacity=5)
    first = cli.run_script(GATED, name="gated")
    second = cli.run_script(QUICK, name="second")
    cli.wait_status(second, "queued")
    rep = cli.json("status")
    host = rep["host"]
    assert host["cpu_count"] >= 1 and 0 < host["ram_available"] <= host["ram_total"]
    assert set(host) == {"cpu_percent", "load1", "cpu_count", "ram_total", "ram_available"}
    if rep["gpu_error"] is not None and not rep["gpus"]:
        assert rep["gpu_error"]  # this machine: no GPU, and why
    else:
        assert rep["gpus"]
    assert rep["bucket"]["capacity"] == 5 and rep["bucket"]["tokens"] <= 5
    assert rep["running"] == 1 and rep["max_parallel"] == 1
    assert [r["run_id"] for r in rep["reservations"]] == [first]
    assert [(q["id"], q["name"], q["reason"]) for q in rep["queue"]] == [
        (second, "second", "max_parallel 1 reached (1 running)")
    ]
    human = cli("status").stdout
    assert "queue   1 waiting" in human and second in human
    (home / "gate").touch()
    wait_all_finished(home, [first, second])


def test_cpu_lane_and_gpu_request_without_gpu(cli: Cli, home: Path) -> None:
    if cli.json("status")["gpus"]:
        pytest.skip("this machine has a GPU")
    cpu = cli.run_script(QUICK, name="cpu", gpus="0")
    wanted = cli.run_script(QUICK, name="wants_gpu", gpus="1")
    view = cli.wait_status(wanted, "queued")
    assert view["reason"].startswith("needs 1 GPU; this machine has none (NVML: ")
    done = cli.wait_status(cpu, "completed")
    assert "cuda ''" in (Registry(home).run_dir(cpu) / "output.log").read_text()
    admitted = [e for e in done["events"] if e["event"] == "admitted"][0]
    assert admitted["reason"].endswith("env CUDA_VISIBLE_DEVICES=")
    cli("start", wanted)
    cli.wait_status(wanted, "completed")
    assert "cuda None" in (Registry(home).run_dir(wanted) / "output.log").read_text()


HELD = textwrap.dedent(
    """
    import os, time
    go = os.path.join(os.environ["BACKPROP_RUN_DIR"], "go")
    print("running", flush=True)
    while not os.path.exists(go):
        time.sleep(0.05)
    """
)


def loaded(pid: int, name: str) -> bool:
    return any(name in m.path for m in psutil.Process(pid).memory_maps())


def test_a_supervisor_never_loads_the_governor_and_is_started_once(cli: Cli, home: Path) -> None:
    # Was: an admitted supervisor re-executes itself to shed the probes. It never loads them
    # now: admission happens before it exists.
    configure(home, max_parallel=1)
    reg = Registry(home)
    first = cli.run_script(HELD, name="first")
    second = cli.run_script(HELD, name="second")
    cli.wait_status(second, "queued")
    assert reg.read_state(second) is None  # nothing runs for a queued run
    (reg.run_dir(first) / "go").touch()
    cli.wait_status(second, "running")
    running = reg.read_state(second)
    assert running is not None and running.queued_at is not None
    pid = running.supervisor.pid
    assert not loaded(pid, "psutil") and not loaded(pid, "pynvml")
    assert "governor" not in " ".join(psutil.Process(pid).cmdline())
    assert reg.supervisor_locked(second)
    names = [e["event"] for e in events_of(cli, second)]
    assert names.count("supervisor_started") == 1 and names.count("admitted") == 1
    assert names.count("queued") == 1
    # A second supervisor for the same attempt (a dispatcher restarted mid-start) backs off.
    from runner.control.spawn import spawn_supervisor

    spawn_supervisor(reg, second, attempt=1)
    log = reg.run_dir(second) / "supervisor.log"
    wait_until(lambda: "already has a supervisor" in log.read_text())
    # Control still reaches it: a graceful stop ends the run as stopped, then releases it.
    cli("stop", second)
    done = cli.wait_status(second, "stopped")
    assert done["exit_code"] is not None or done["signal"] is not None
    assert cli.json("status")["reservations"] == []
    spawn_supervisor(reg, second, attempt=1)  # after its end: started already, nothing to do
    wait_until(lambda: "was started already" in log.read_text())
    assert [e["event"] for e in events_of(cli, second)].count("started") == 1
