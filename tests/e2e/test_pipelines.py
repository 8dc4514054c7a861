"""Pipelines with real supervisors and the real CLI: runs that wait for runs, ``wait``,
and refusals at submit."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from runner.registry import Registry
from tests.conftest import ROOT, Cli

pytestmark = pytest.mark.slow

# Fails until a file named "ok" exists next to the registry, then completes.
FLAKY = textwrap.dedent(
    """
    import os, sys, time
    time.sleep(0.3)
    ok = os.path.join(os.environ["BACKPROP_HOME"], "..", "ok")
    print("flaky", "ok" if os.path.exists(ok) else "failing", flush=True)
    sys.exit(0 if os.path.exists(ok) else 3)
    """
)
# Waits for a file named "gate" next to the registry.
GATED = textwrap.dedent(
    """
    import os, time
    gate = os.path.join(os.environ["BACKPROP_HOME"], "..", "gate")
    while not os.path.exists(gate):
        time.sleep(0.05)
    print("through the gate", flush=True)
    """
)
ECHO = "import sys\nprint('args', sys.argv[1:], flush=True)\n"


def output(home: Path, run_id: str) -> str:
    path = home / "runs" / run_id / "output.log"
    return path.read_text() if path.exists() else ""


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.torch
def test_train_then_evaluate_then_report(cli: Cli, home: Path) -> None:
    """A -> B (--after A, gets A's checkpoint) -> C (--after B): each starts only after the
    one before completed; ``wait --group`` exits 0 as the last one ends."""
    pytest.importorskip("torch")
    examples = ROOT / "examples"
    train = cli.json(
        "run", "--name", "train", "--group", "pipe",
        str(examples / "train_helpers.py"), "--steps", "60", "--ckpt-every", "30",
        "--step-time", "0.02",
    )["id"]  # fmt: skip
    evaluate = cli.json(
        "run", "--after", "train", "--name", "eval", "--group", "pipe",
        str(examples / "evaluate.py"), "--checkpoint", "{after.checkpoint}",
    )["id"]  # fmt: skip
    (cli.cwd / "report.py").write_text(ECHO)
    report = cli.json(
        "run", "--after", evaluate, "--name", "report", "--group", "pipe",
        "report.py", "{after.run_dir}",
    )["id"]  # fmt: skip
    waiting = cli.wait_status(evaluate, "queued")
    assert waiting["reason"].startswith(f"waiting for {train} (")
    assert waiting["after"] == [{"id": train, "kind": "ok"}]
    listed = {d["id"]: d for d in cli.json("ls")}
    assert listed[train]["dependents"] == [evaluate]

    done = cli("wait", "--group", "pipe", "--timeout", "120s", timeout=150)
    assert done.returncode == 0, done.stderr
    assert [ln.split()[:2] for ln in done.stdout.splitlines()] == [
        [train, "completed"],
        [evaluate, "completed"],
        [report, "completed"],
    ]
    reg = Registry(home)
    a, b, c = (reg.load(i).state for i in (train, evaluate, report))
    assert a and b and c and a.ended_at and b.started_at and b.ended_at and c.started_at
    assert a.ended_at <= b.started_at and b.ended_at <= c.started_at
    ckpt = home / "runs" / train / "checkpoints"
    assert f"evaluated {ckpt}/" in output(home, evaluate)
    assert "eval_loss" in cli.show(evaluate)["metrics"]
    assert str(home / "runs" / evaluate) in output(home, report)


def test_a_failed_dependency_skips_its_dependents_and_resume_requeues_them(
    cli: Cli, home: Path
) -> None:
    """A fails: B (--after A) and C (--after B) end skipped, never run, with reasons naming
    the dependency; D (--after-any A) runs; ``wait`` exits 1. Resuming A once it can
    succeed queues B and C again, and they run."""
    a = cli.run_script(FLAKY, name="prepare", group="g")
    (cli.cwd / "echo.py").write_text(ECHO)
    b = cli.json("run", "--after", a, "--group", "g", "--name", "b", "echo.py")["id"]
    c = cli.json("run", "--after", b, "--group", "g", "--name", "c", "echo.py")["id"]
    d = cli.json("run", "--after-any", a, "--group", "g", "--name", "d", "echo.py")["id"]

    waited = cli("wait", "--json", "--group", "g", check=False)
    assert waited.returncode == 1, waited.stderr
    ended = {str(e["id"]): e for e in lines(waited.stdout)}
    assert set(ended) == {a, b, c, d}
    assert ended[a]["status"] == "failed"
    assert ended[b]["status"] == "skipped"
    assert ended[b]["reason"] == f"dependency {a} failed: exit 3"
    assert ended[c]["status"] == "skipped"
    assert str(ended[c]["reason"]).startswith(f"dependency {b} skipped: dependency {a} failed")
    assert ended[d]["status"] == "completed"
    for skipped in (b, c):
        shown = cli.show(skipped)
        assert shown["started_at"] is None and output(home, skipped) == ""
    assert "skipped" in cli("ls", "--status", "skipped").stdout

    (home.parent / "ok").write_text("")
    resumed = cli.json("resume", a)
    assert resumed["requeued"] == [b, c]
    waited = cli("wait", a, b, c, "--timeout", "60s", timeout=90)
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert "args []" in output(home, c)


def test_waiting_costs_nothing_and_wait_times_out(cli: Cli, home: Path) -> None:
    """A waiting dependent holds no process (the dispatcher decides it, without a busy poll)
    and survives kill -9 of the dispatcher; ``wait`` gives up with 124 at its timeout and
    returns 0 as soon as the runs end."""
    from governor import dispatcher

    a = cli.run_script(GATED, name="gated")
    (cli.cwd / "echo.py").write_text(ECHO)
    b = cli.json("run", "--after", a, "--name", "after-gated", "echo.py")["id"]
    cli.wait_status(a, "running")
    assert cli.wait_status(b, "queued")["reason"] == f"waiting for {a} (running)"
    registry = Registry(home)
    assert registry.load(b).state is None  # no supervisor: nothing of it runs yet
    info = dispatcher.alive(registry)
    assert info is not None and info.pid > 0
    proc = psutil.Process(info.pid)
    before = proc.cpu_times()
    started = time.monotonic()
    timed_out = cli("wait", b, "--timeout", "1s", check=False)
    assert timed_out.returncode == 124
    assert "still waiting for" in timed_out.stderr
    time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
    after = proc.cpu_times()
    used = (after.user + after.system) - (before.user + before.system)
    assert used < 0.05, f"the dispatcher used {used:.3f} s of CPU in 2 s for one dependent"

    # kill -9 of the dispatcher loses nothing: the dependency is in the spec, the run in the
    # queue; the next command starts a new dispatcher, which waits again.
    proc.kill()
    proc.wait(10)
    shown = cli.wait_status(b, "queued")
    assert shown["after"] == [{"id": a, "kind": "ok"}]
    assert shown["reason"] == f"waiting for {a} (running)"
    deadline = time.monotonic() + 20
    while (info := dispatcher.alive(registry)) is None or info.pid in (0, proc.pid):
        assert time.monotonic() < deadline, "no new dispatcher after the kill"
        cli("ls")
        time.sleep(0.1)

    (home.parent / "gate").write_text("")
    t0 = time.monotonic()
    done = cli("wait", b, "--timeout", "30s", timeout=60)
    assert done.returncode == 0 and done.stdout.split()[:2] == [b, "completed"]
    assert time.monotonic() - t0 < 15  # woken by the dependency's end


def test_unknown_ids_and_cycles_are_refused_at_submit(cli: Cli, home: Path) -> None:
    (cli.cwd / "echo.py").write_text(ECHO)
    before = sorted(p.name for p in (home / "runs").glob("*")) if (home / "runs").exists() else []
    unknown = cli("run", "--after", "4242", "echo.py", check=False)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "backprop: error: --after: no run with id 4242"
    bad = cli("run", "--after-any", "nobody", "echo.py", check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    after = sorted(p.name for p in (home / "runs").glob("*")) if (home / "runs").exists() else []
    assert after == before  # nothing was allocated for a refused run

    x = cli.json("run", "--name", "x", "echo.py")["id"]
    y = cli.json("run", "--after", x, "--name", "y", "echo.py")["id"]
    swept = cli.json("run", "--after", x, "--sweep", "k=1,2", "echo.py")
    cli("wait", x, y, *swept["ids"])
    for run_id in swept["ids"]:  # every run of a sweep waits for the same dependency
        assert cli.show(run_id)["after"] == [{"id": x, "kind": "ok"}]
    placeholder = cli("run", "--after", x, "echo.py", "{after[1].checkpoint}", check=False)
    assert placeholder.returncode == 2 and "only 1 dependenc" in placeholder.stderr
    # Specs are never rewritten, so a cycle only comes from edited or foreign files.
    spec_path = home / "runs" / x / "spec.json"
    spec = json.loads(spec_path.read_text())
    spec["after"] = [{"id": y, "kind": "ok"}]
    spec_path.write_text(json.dumps(spec))
    cycle = cli("run", "--after", y, "echo.py", check=False)
    assert cycle.returncode == 2
    assert cycle.stderr.strip() == f"backprop: error: dependency cycle: {y} -> {x} -> {y}"
