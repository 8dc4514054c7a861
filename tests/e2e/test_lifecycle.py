"""The run lifecycle with real processes, real signals and the real CLI.

Trainers are tiny Python scripts; each test has its own registry (the ``home`` fixture), and
every process left under it is killed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from runner import identity
from runner.control import run_actions
from runner.durable import write_json
from runner.model import ProcessIdentity, RunSpec, RunState, Status
from runner.registry import Registry
from tests.conftest import Cli, wait_until

pytestmark = pytest.mark.slow

# A trainer that prints a step a tick, writes its pid, and saves a checkpoint on Ctrl-C.
TRAINER = textwrap.dedent(
    """
    import os, sys, time, signal
    run_dir = os.environ["BACKPROP_RUN_DIR"]
    ckpt_dir = os.environ["BACKPROP_CHECKPOINT_DIR"]
    open(os.path.join(run_dir, "trainer.pid"), "w").write(str(os.getpid()))
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    start = 0
    resume = os.environ.get("BACKPROP_RESUME_FROM")
    if resume:
        start = int(open(resume).read()) + 1
        print("resumed from", resume, "at step", start, flush=True)
    step = start
    try:
        for step in range(start, steps):
            print(f"step {step} loss: {1.0 / (step + 1):.5f}")
            sys.stdout.flush()
            if step % 5 == 0:
                path = os.path.join(ckpt_dir, f"ckpt-{step:06d}.txt")
                tmp = path + ".tmp"
                open(tmp, "w").write(str(step))
                os.replace(tmp, path)
            time.sleep(0.05)
    except KeyboardInterrupt:
        path = os.path.join(ckpt_dir, "interrupted.txt")
        open(path, "w").write(str(step))
        print("checkpoint saved on interrupt", flush=True)
        sys.exit(0)
    """
)


def state_of(cli: Cli, run_id: str) -> RunState:
    state = Registry(cli.home).read_state(run_id)
    assert state is not None
    return state


def trainer_pid(cli: Cli, run_id: str) -> int:
    path = cli.home / "runs" / run_id / "trainer.pid"
    return int(wait_until(lambda: path.is_file() and path.read_text(), message="trainer pid"))


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_run_completes_and_ls_reports_it(cli: Cli) -> None:
    run_id = cli.run_script(TRAINER, "12")
    d = cli.wait_status(run_id, "completed")
    assert d["exit_code"] == 0 and d["attempt"] == 1 and d["reason"] == "exit 0"
    assert d["started_at"] >= d["created_at"] and d["ended_at"] >= d["started_at"]
    listing = cli.json("ls")
    assert [r["id"] for r in listing] == [run_id]
    for key in (
        "id",
        "name",
        "status",
        "reason",
        "attempt",
        "command",
        "step",
        "loss",
        "checkpoints",
        "created_at",
        "started_at",
        "ended_at",
        "exit_code",
    ):
        assert key in listing[0]
    out = cli("logs", run_id).stdout
    assert "step 11 loss" in out


def test_kill_9_of_launcher_leaves_run_supervised(cli: Cli) -> None:
    script = cli.cwd / "t.py"
    script.write_text(TRAINER)
    env = {**os.environ, "BACKPROP_HOME": str(cli.home)}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", "--follow", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cli.cwd,
        stdin=subprocess.DEVNULL,
    )
    run_id = wait_until(lambda: Registry(cli.home).ids(), message="a run")[0]
    cli.wait_status(run_id, "running")
    launcher.kill()
    launcher.wait()
    pid = trainer_pid(cli, run_id)
    log = cli.home / "runs" / run_id / "output.log"
    size = log.stat().st_size
    wait_until(lambda: log.stat().st_size > size + 100, message="output to keep growing")
    assert pid_alive(pid)
    assert identity.matches(state_of(cli, run_id).supervisor)
    assert cli.show(run_id)["status"] == "running"
    cli("stop", run_id)
    d = cli.wait_status(run_id, "stopped")
    assert "stopped by user" in d["reason"]


@pytest.mark.tmux
def test_tmux_server_killed_under_launcher(cli: Cli) -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux not installed")
    script = cli.cwd / "t.py"
    script.write_text(TRAINER)
    sock = f"bp-test-{os.getpid()}"
    cmd = f"BACKPROP_HOME={cli.home} {sys.executable} -m tui.cli run --follow {script} 60"
    subprocess.run(
        ["tmux", "-L", sock, "new-session", "-d", "-x", "80", "-y", "24", cmd],
        check=True,
        cwd=cli.cwd,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )
    try:
        run_id = wait_until(lambda: Registry(cli.home).ids(), message="a run")[0]
        cli.wait_status(run_id, "running")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], check=False)
    pid = trainer_pid(cli, run_id)
    assert pid_alive(pid)
    d = cli.wait_status(run_id, "completed", timeout=30)
    assert d["exit_code"] == 0


def test_graceful_stop_sends_sigint_once_even_from_background_launcher(cli: Cli) -> None:
    """A launcher started with '&' from a script has SIGINT ignored; the trainer must not."""
    script = cli.cwd / "graceful.py"
    script.write_text(
        textwrap.dedent(
            """
        import os, signal, sys, time
        run_dir = os.environ["BACKPROP_RUN_DIR"]
        hits = os.path.join(run_dir, "sigint.txt")
        def on_int(signum, frame):
            with open(hits, "a") as f:
                f.write("hit\\n")
            raise KeyboardInterrupt
        signal.signal(signal.SIGINT, on_int) if signal.getsignal(signal.SIGINT) \
            is signal.default_int_handler else None
        open(os.path.join(run_dir, "ready"), "w").write(str(signal.getsignal(signal.SIGINT)))
        try:
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            t = time.time()
            while time.time() - t < 1.0:  # stay alive: a second SIGINT would be counted
                time.sleep(0.05)
            path = os.path.join(os.environ["BACKPROP_CHECKPOINT_DIR"], "on-interrupt.ckpt")
            open(path, "w").write("saved")
            sys.exit(0)
        """
        )
    )
    shell = f"{sys.executable} -m tui.cli run --json --name graceful {script} > id.json &\nwait\n"
    subprocess.run(
        ["sh", "-c", shell],
        check=True,
        cwd=cli.cwd,
        env={**os.environ, "BACKPROP_HOME": str(cli.home)},
    )
    run_id = json.loads((cli.cwd / "id.json").read_text())["id"]
    run_dir = cli.home / "runs" / run_id
    ready = wait_until(
        lambda: (run_dir / "ready").is_file() and (run_dir / "ready").read_text(),
        message="trainer ready",
    )
    assert "on_int" in ready  # SIGINT was not ignored, so the handler went in
    cli("stop", run_id)
    d = cli.wait_status(run_id, "stopped")
    assert (run_dir / "sigint.txt").read_text().count("hit") == 1
    assert (run_dir / "checkpoints" / "on-interrupt.ckpt").read_text() == "saved"
    assert d["exit_code"] == 0  # the script exited 0, yet it is "stopped", not "completed"
    assert "stopped by user" in d["reason"]


def test_stubborn_trainer_is_killed_on_schedule_with_its_whole_tree(cli: Cli) -> None:
    (cli.cwd / "backprop.toml").write_text('[run]\ngrace_int = "1s"\ngrace_term = "1s"\n')
    script = cli.cwd / "stubborn.py"
    script.write_text(
        textwrap.dedent(
            """
        import os, signal, subprocess, sys, time
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        stubborn = ("import signal, time\\n"
                    "signal.signal(signal.SIGINT, signal.SIG_IGN)\\n"
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
                    "time.sleep(600)\\n")
        child = subprocess.Popen([sys.executable, "-c", stubborn])
        grandchild = subprocess.Popen([sys.executable, "-c", stubborn], start_new_session=True)
        with open(os.path.join(os.environ["BACKPROP_RUN_DIR"], "pids"), "w") as f:
            f.write(f"{os.getpid()} {child.pid} {grandchild.pid}")
        time.sleep(600)
        """
        )
    )
    run_id = cli.json("run", str(script))["id"]
    pids_file = cli.home / "runs" / run_id / "pids"
    pids = [
        int(p)
        for p in wait_until(
            lambda: pids_file.is_file() and pids_file.read_text().split(), message="pids"
        )
    ]
    assert len(pids) == 3
    wait_until(lambda: all(pid_alive(p) for p in pids), message="all three alive")
    t0 = time.time()
    cli("stop", run_id)
    d = cli.wait_status(run_id, "stopped", timeout=20)
    assert d["signal"] == signal.SIGKILL
    assert "stopped (forced: SIGKILL)" in d["reason"]
    assert d["ended_at"] - t0 >= 2.0 - 0.2  # 1 s after SIGINT, then 1 s after SIGTERM
    assert d["ended_at"] - t0 < 8.0
    wait_until(
        lambda: not any(pid_alive(p) for p in pids), timeout=5, message="the whole tree to be gone"
    )
    signals = [e["signal"] for e in cli.show(run_id)["events"] if e["event"] == "signal"]
    assert signals == ["SIGINT", "SIGTERM", "SIGKILL"]


def test_force_stop_kills_at_once(cli: Cli) -> None:
    run_id = cli.run_script(TRAINER)
    cli.wait_status(run_id, "running")
    pid = trainer_pid(cli, run_id)
    cli("stop", "--force", run_id)
    d = cli.wait_status(run_id, "stopped", timeout=10)
    assert d["signal"] == signal.SIGKILL and "(forced: SIGKILL)" in d["reason"]
    assert not pid_alive(pid)
    assert not (cli.home / "runs" / run_id / "checkpoints" / "interrupted.txt").exists()


def test_time_limit_ends_timeboxed(cli: Cli) -> None:
    run_id = cli.run_script(TRAINER, timeout="1s")
    d = cli.wait_status(run_id, "timeboxed", timeout=20)
    assert d["timeout_s"] == 1.0
    assert 1.0 <= d["ended_at"] - d["started_at"] < 6.0
    assert "time limit" in d["reason"]
    # The trainer's own interrupt handler ran (graceful sequence, not a kill).
    assert (cli.home / "runs" / run_id / "checkpoints" / "interrupted.txt").is_file()


def test_pause_and_continue(cli: Cli) -> None:
    run_id = cli.run_script(TRAINER)
    cli.wait_status(run_id, "running")
    pid = trainer_pid(cli, run_id)
    run_actions.pause(Registry(cli.home), run_id, reason="paused by the governor: GPU at 91°C")
    d = cli.wait_status(run_id, "paused")
    assert d["reason"] == "paused by the governor: GPU at 91°C"
    cli("continue", run_id)
    cli.wait_status(run_id, "running")
    cli("pause", run_id)
    assert cli.wait_status(run_id, "paused")["reason"] == "paused by user"
    wait_until(
        lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, message="trainer stopped"
    )
    log = cli.home / "runs" / run_id / "output.log"
    size = log.stat().st_size
    time.sleep(0.3)  # a paused trainer must write nothing during this window
    assert log.stat().st_size == size
    cli("continue", run_id)
    cli.wait_status(run_id, "running")
    wait_until(lambda: log.stat().st_size > size, message="output to resume")
    assert cli("pause", "999999", check=False).returncode == 1


def test_kill_9_of_supervisor_is_re_adopted_never_left_unsupervised(cli: Cli) -> None:
    run_id = cli.run_script(TRAINER)
    cli.wait_status(run_id, "running")
    pid = trainer_pid(cli, run_id)
    sup = state_of(cli, run_id).supervisor
    os.kill(sup.pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(sup.pid), message="supervisor gone")
    # The next command re-adopts: a new supervisor, the same trainer, never "running" alone.
    d = cli.wait_status(run_id, "running")
    new = wait_until(
        lambda: (lambda s: s.supervisor if s.supervisor.pid != sup.pid else None)(
            state_of(cli, run_id)
        ),
        message="a new supervisor",
    )
    assert identity.matches(new) and state_of(cli, run_id).trainer.pid == pid  # type: ignore[union-attr]
    assert "adopted" in [e["event"] for e in cli.show(run_id)["events"]]
    cli("stop", "--force", run_id)
    d = cli.wait_status(run_id, "stopped")
    assert not pid_alive(pid) and d["reason"].startswith("stopped (forced")


# A trainer that replaces itself by one without Backprop's environment: nothing marks it as
# the run's, so no new supervisor may take it over; it stays "lost", never "running".
UNMARKED = textwrap.dedent(
    """
    import os, sys
    os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)"], {})
    """
)


def test_kill_9_of_supervisor_of_unmarked_trainer_is_lost_never_running(cli: Cli) -> None:
    run_id = cli.run_script(UNMARKED)
    cli.wait_status(run_id, "running")
    state = state_of(cli, run_id)
    assert state.trainer is not None
    pid = state.trainer.pid
    os.kill(state.supervisor.pid, signal.SIGKILL)
    d = cli.wait_status(run_id, "lost", timeout=10)
    assert "trainer pid" in d["reason"]  # the trainer lives on, and the reason says so
    assert pid_alive(pid) and state_of(cli, run_id).supervisor == state.supervisor
    out = cli("stop", "--force", run_id).stdout  # kills the unsupervised trainer by identity
    assert "ended 1 process" in out
    wait_until(lambda: not pid_alive(pid), message="trainer gone")
    d = cli.show(run_id)
    assert d["status"] == "lost" and "without recording an exit" in d["reason"]
    # Its time stops at its last sign of life instead of counting on.
    assert d["ended_at"] is not None and d["ended_at"] <= time.time()


def test_crash_exits_record_code_and_signal(cli: Cli) -> None:
    code_id = cli.run_script("import sys\nprint('boom')\nsys.exit(3)\n", name="exit3")
    sig_id = cli.run_script(
        "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", name="segv"
    )
    d = cli.wait_status(code_id, "failed")
    assert d["exit_code"] == 3 and d["signal"] is None and d["reason"] == "exit 3"
    d = cli.wait_status(sig_id, "failed")
    assert d["signal"] == signal.SIGSEGV and d["exit_code"] is None
    assert "SIGSEGV" in d["reason"]


def test_missing_command_fails_cleanly(cli: Cli) -> None:
    proc = cli("run", "definitely-not-a-command-xyz", check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "command not found" in proc.stderr


def test_resume_after_kill_9_continues_from_checkpoint(cli: Cli) -> None:
    run_id = cli.run_script(TRAINER, "40")
    run_dir = cli.home / "runs" / run_id
    wait_until(
        lambda: len(list((run_dir / "checkpoints").glob("ckpt-*.txt"))) >= 3,
        message="three checkpoints",
    )
    sup = state_of(cli, run_id).supervisor
    pid = trainer_pid(cli, run_id)
    os.kill(sup.pid, signal.SIGKILL)
    os.killpg(pid, signal.SIGKILL)
    d = cli.wait_status(run_id, "lost", timeout=10)
    latest = max((run_dir / "checkpoints").glob("ckpt-*.txt"))
    saved_step = int(latest.read_text())
    out = cli.json("resume", run_id)
    assert out["attempt"] == 2 and out["resume_from"] == str(latest)
    d = cli.wait_status(run_id, "completed", timeout=30)
    assert d["attempt"] == 2
    log = (run_dir / "output.log").read_text()
    assert f"at step {saved_step + 1}" in log
    assert "step 39 loss" in log
    events = [e["event"] for e in cli.show(run_id)["events"]]
    assert events.count("started") == 2


def test_output_cap_keeps_head_and_tail(cli: Cli) -> None:
    (cli.cwd / "backprop.toml").write_text('[run]\noutput_cap = "64K"\n')
    code = "import sys\nfor i in range(20000):\n    print(f'line {i:06d} ' + 'x' * 40)\n"
    run_id = cli.run_script(code, name="chatty")
    cli.wait_status(run_id, "completed")
    text = (cli.home / "runs" / run_id / "output.log").read_text()
    assert len(text) <= 64 * 1024
    assert text.startswith("line 000000 ")
    assert "line 019999 " in text and "bytes omitted here" in text


def test_fork_records_lineage_and_changes_arguments(cli: Cli) -> None:
    script = "import sys, os\nprint('args', sys.argv[1:], os.environ.get('BACKPROP_RESUME_FROM'))\n"
    (cli.cwd / "f.py").write_text(script)
    parent = cli.json("run", "--name", "base", str(cli.cwd / "f.py"), "--lr", "0.1")["id"]
    cli.wait_status(parent, "completed")
    ckpt = cli.home / "runs" / parent / "checkpoints" / "c1.pt"
    ckpt.write_text("x")
    child = cli.json("fork", parent, "--lr", "0.01", "--extra")
    assert child["parent"] == parent and child["checkpoint"] == str(ckpt)
    d = cli.wait_status(child["id"], "completed")
    assert d["parent"] == {"run_id": parent, "checkpoint": str(ckpt)}
    assert d["command"][-3:] == ["--lr", "0.01", "--extra"]
    log = cli("logs", child["id"]).stdout
    assert "'--lr', '0.01', '--extra'" in log and str(ckpt) in log


def test_resume_args_template_is_applied(cli: Cli) -> None:
    (cli.cwd / "backprop.toml").write_text('[run]\nresume_args = ["--resume", "{checkpoint}"]\n')
    (cli.cwd / "r.py").write_text("import sys\nprint('argv', sys.argv[1:])\nsys.exit(1)\n")
    run_id = cli.json("run", str(cli.cwd / "r.py"))["id"]
    cli.wait_status(run_id, "failed")
    ckpt = cli.home / "runs" / run_id / "checkpoints" / "last.pt"
    ckpt.write_text("x")
    cli("resume", run_id)
    cli.wait_status(run_id, "failed")
    assert f"argv ['--resume', '{ckpt}']" in cli("logs", run_id).stdout


def test_export_import_rm_round_trip(cli: Cli, tmp_path: Path) -> None:
    run_id = cli.run_script(TRAINER, "6")
    cli.wait_status(run_id, "completed")
    bundle = tmp_path / "run.tar.gz"
    cli("export", run_id, "-o", str(bundle))
    new_id = cli.json("import", str(bundle))["id"]
    assert new_id != run_id
    a, b = cli.show(run_id), cli.show(new_id)
    assert (a["status"], a["command"], a["exit_code"]) == (
        b["status"],
        b["command"],
        b["exit_code"],
    )
    assert cli("logs", new_id).stdout == cli("logs", run_id).stdout
    cli("rm", run_id)
    assert [r["id"] for r in cli.json("ls")] == [new_id]
    running = cli.run_script(TRAINER)
    cli.wait_status(running, "running")
    proc = cli("rm", running, check=False)
    assert proc.returncode == 1 and "stop it first" in proc.stderr
    assert (cli.home / "runs" / running / "spec.json").is_file()


def test_usage_errors_exit_2_and_failures_exit_1(cli: Cli) -> None:
    assert cli("run", "--timeout", "soon", "x.py", check=False).returncode == 2
    assert cli("run", "--name", "../../x", "true", check=False).returncode == 2
    assert cli("bogus-command", check=False).returncode == 2
    proc = cli("show", "424242", check=False)
    assert proc.returncode == 1 and "no run with id 424242" in proc.stderr
    assert cli("stop", "nope", check=False).returncode == 1
    assert cli("init").returncode == 0
    assert "[run]" in (cli.cwd / "backprop.toml").read_text()
    assert cli("init", check=False).returncode == 1  # exists: refuses without --force


def _forge(
    home: Path,
    run_id: str,
    supervisor: ProcessIdentity,
    trainer: ProcessIdentity | None,
    status: Status = Status.RUNNING,
) -> None:
    reg = Registry(home)
    reg.ensure()
    (reg.runs_dir / run_id).mkdir()
    reg.create(
        RunSpec(id=run_id, name="forged", command=("true",), cwd="/", created_at=time.time() - 3600)
    )
    write_json(
        reg.run_dir(run_id) / "state.json",
        RunState(
            run_id=run_id,
            attempt=1,
            status=status,
            updated_at=time.time(),
            supervisor=supervisor,
            trainer=trainer,
        ).to_json(),
    )


VICTIM = textwrap.dedent(
    """
    import signal, sys, time
    hits = sys.argv[1]
    def note(signum, frame):
        with open(hits, "a") as f:
            f.write(f"{signum}\\n")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP):
        signal.signal(s, note)
    print("ready", flush=True)
    time.sleep(600)
    """
)


def test_forged_state_files_cause_no_signal(cli: Cli, tmp_path: Path) -> None:
    hits = tmp_path / "hits"
    victim = subprocess.Popen(
        [sys.executable, "-c", VICTIM, str(hits)], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert victim.stdout is not None and victim.stdout.readline().strip() == b"ready"
        real = identity.identity_of(victim.pid)
        assert real is not None
        boot = identity.boot_id()
        forged = {
            "000001": ProcessIdentity(victim.pid, real.start_ticks + 1, boot),  # wrong start
            "000002": ProcessIdentity(victim.pid, real.start_ticks, "other-boot"),  # other boot
            "000003": ProcessIdentity(0, 0, boot),
            "000004": ProcessIdentity(1, identity.start_ticks(1) or 0, boot),
            "000005": ProcessIdentity(-1, 0, boot),
            "000006": ProcessIdentity(-victim.pid, real.start_ticks, boot),
        }
        for run_id, ident in forged.items():
            _forge(cli.home, run_id, ident, ident)
        listing = {r["id"]: r for r in cli.json("ls")}
        assert listing["000002"]["reason"] == "host rebooted"
        for run_id in forged:
            assert listing[run_id]["status"] == "lost", run_id
            cli("stop", run_id, check=False)
            cli("stop", "--force", run_id, check=False)
            cli("pause", run_id, check=False)
        assert victim.poll() is None
        assert not hits.exists() or hits.read_text() == ""
    finally:
        victim.kill()
        victim.wait()


def test_supervisor_has_no_listening_socket(cli: Cli) -> None:
    run_id = cli.run_script(TRAINER)
    cli.wait_status(run_id, "running")
    sup = psutil.Process(state_of(cli, run_id).supervisor.pid)
    for proc in [sup, *sup.children(recursive=True)]:
        assert proc.net_connections(kind="all") == []


def test_follow_streams_output_and_ctrl_c_stops_gracefully(cli: Cli) -> None:
    script = cli.cwd / "t.py"
    script.write_text(TRAINER)
    env = {**os.environ, "BACKPROP_HOME": str(cli.home)}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", "--follow", str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cli.cwd,
    )
    assert launcher.stdout is not None
    first = launcher.stdout.readline()
    assert "submitted" in first and "Ctrl-C stops it gracefully" in first
    assert launcher.stdout.readline().startswith("step 0 loss")
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=30)
    assert launcher.returncode == 1  # the run did not complete
    assert "checkpoint saved on interrupt" in out
    assert "stopping gracefully" in err
    run_id = Registry(cli.home).ids()[0]
    assert cli.show(run_id)["status"] == "stopped"
    assert out.rstrip().endswith(f"run {run_id} stopped: stopped by user; exit 0")
