"""Supervisors started as forks (runner.forkstart) and as new interpreters, with real processes.

Both paths start a real run that completes; a forked supervisor is detached (own session, not
a session leader, adopted away from its starter), survives the SIGKILL of the process that
forked it, holds nothing of its starter (the dispatcher's lock is free once the dispatcher is
gone), and its trainer inherits no descriptor but stdin, stdout and stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from governor import dispatcher
from runner.registry import Registry
from tests.conftest import Cli, wait_until

pytestmark = pytest.mark.slow

# The trainer reports its own descriptors and its supervisor (its parent) as the kernel sees them.
PROBE = r"""
import json, os, sys, time
sup = os.getppid()
def fds(pid):
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out
mine = fds("self")  # the listing's own descriptor is closed before readlink: not there
doc = {
    "trainer_fds": mine,
    "sup_pid": sup,
    "sup_fds": fds(sup),
    "sup_cmdline": open(f"/proc/{sup}/cmdline", "rb").read().replace(b"\0", b" ").decode(),
    "sup_sid": os.getsid(sup),
    "sup_ppid": int(open(f"/proc/{sup}/stat").read().rsplit(")", 1)[1].split()[1]),
}
open(sys.argv[1], "w").write(json.dumps(doc))
go = sys.argv[2] if len(sys.argv) > 2 else ""
deadline = time.time() + 60
while go and not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.02)
print("step 1 loss 0.5")
"""


def probe(cli: Cli, name: str, *args: str, env: dict[str, str] | None = None) -> tuple[str, Path]:
    script = cli.cwd / "probe.py"
    script.write_text(PROBE)
    out = cli.cwd / f"{name}.json"
    proc = cli("run", "--json", "--name", name, str(script), str(out), *args, env=env)
    return str(json.loads(proc.stdout)["id"]), out


def read_probe(out: Path) -> dict[str, object]:
    text = wait_until(lambda: out.exists() and out.read_text(), message="the trainer's report")
    doc: dict[str, object] = json.loads(text)
    return doc


def assert_detached(doc: dict[str, object], starter_pid: int | None = None) -> None:
    sup = doc["sup_pid"]
    assert doc["sup_sid"] != sup, "a session leader could get a controlling terminal"
    assert doc["sup_sid"] != os.getsid(0), "the supervisor shares the test's session"
    if starter_pid is not None:
        assert doc["sup_ppid"] != starter_pid
    # Nothing but stdin, stdout and stderr reaches the trainer (output.log on 1 and 2).
    fds = doc["trainer_fds"]
    assert isinstance(fds, dict)
    assert sorted(fds, key=int) == ["0", "1", "2"], fds
    assert fds["0"] == "/dev/null" and fds["1"].endswith("output.log")


def test_the_fork_path_and_the_exec_path_both_run_a_run_to_completion(cli: Cli) -> None:
    forked, out_f = probe(cli, "forked")
    execed, out_e = probe(cli, "execed", env={"BACKPROP_START": "exec"})
    doc_f, doc_e = read_probe(out_f), read_probe(out_e)
    for run_id in (forked, execed):
        cli.wait_status(run_id, "completed")
    # A new interpreter is `python -m runner.supervisor.main ... --detach`; a fork shows the
    # same module (its title is set) and never `tui.cli`, the command it was forked from.
    assert "--detach" in str(doc_e["sup_cmdline"])
    assert "--detach" not in str(doc_f["sup_cmdline"])
    assert "runner.supervisor.main" in str(doc_f["sup_cmdline"])
    assert "tui.cli" not in str(doc_f["sup_cmdline"])
    for doc in (doc_f, doc_e):
        assert_detached(doc)
    # The forked supervisor holds nothing of the command's: /dev/null, its log, its run's files.
    run_dir = str(cli.home / "runs" / forked)
    sup_fds = doc_f["sup_fds"]
    assert isinstance(sup_fds, dict)
    for target in sup_fds.values():
        assert (
            target == "/dev/null"
            or target.startswith((run_dir, "pipe:", "anon_inode:"))
            or ("cgroup" in target)
        ), sup_fds


def test_a_forked_supervisor_outlives_the_command_that_forked_it(cli: Cli, home: Path) -> None:
    go = cli.cwd / "go"
    script = cli.cwd / "probe.py"
    script.write_text(PROBE)
    out = cli.cwd / "r.json"
    env = {**os.environ, "BACKPROP_HOME": str(home)}
    env.pop("BACKPROP_START", None)
    # `run --follow` stays alive while its run runs: kill it with SIGKILL under the run.
    follower = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", "--follow", str(script), str(out), str(go)],
        cwd=cli.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        doc = read_probe(out)
        assert "--detach" not in str(doc["sup_cmdline"])  # it is a fork of `backprop run`
        assert_detached(doc, starter_pid=follower.pid)
        follower.send_signal(signal.SIGKILL)
        follower.wait(timeout=10)
        go.touch()
        (run_id,) = Registry(home).ids()
        cli.wait_status(run_id, "completed")
    finally:
        if follower.poll() is None:
            follower.kill()


def test_supervisors_forked_by_the_dispatcher_hold_nothing_of_it(cli: Cli, home: Path) -> None:
    (home / "backprop.toml").write_text("[governor]\nmax_parallel = 1\n")
    go1, go2 = cli.cwd / "go1", cli.cwd / "go2"
    first, out1 = probe(cli, "first", str(go1))  # holds the only slot until `go1` exists
    second, out2 = probe(cli, "second", str(go2))  # queued: the dispatcher starts it
    reg = Registry(home)
    info = wait_until(lambda: dispatcher.alive(reg), message="a dispatcher")
    read_probe(out1)
    go1.touch()
    doc = read_probe(out2)
    assert "--detach" not in str(doc["sup_cmdline"])  # a fork of the dispatcher
    assert "governor.dispatcher" not in str(doc["sup_cmdline"])  # never mistaken for it
    assert_detached(doc, starter_pid=info.pid)
    # SIGKILL the dispatcher under the running supervisor it forked: its lock goes with it
    # (a fork that kept it would block every later dispatcher), the run goes on.
    os.kill(info.pid, signal.SIGKILL)
    wait_until(lambda: dispatcher.alive(reg) is None, message="the dispatcher's lock to be free")
    assert cli.show(second)["status"] == "running"
    go2.touch()
    cli.wait_status(second, "completed")
    cli.wait_status(first, "completed")
