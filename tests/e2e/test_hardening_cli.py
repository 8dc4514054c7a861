"""Issue 12, tried as a hostile or unlucky user would, through the real ``backprop`` command.

Item 1: secrets stay private (the issue's reproduction, literally). Item 5: ``rm`` never
orphans a live trainer. Item 8: names cannot pose as ids. Item 11: ``backprop ls | head -1``
exits quietly.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

from runner import identity
from runner.registry import Registry
from tests.conftest import ROOT, Cli, wait_until

SECRETS = ("hunter2", "s3cr3t")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _run_under_umask_0(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BACKPROP_HOME": str(cli.home), "MY_SECRET_TOKEN": "hunter2"}
    return subprocess.run(
        ["bash", "-c", 'umask 000; exec "$0" -m tui.cli "$@"', sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cli.cwd,
        timeout=60,
        check=True,
    )


def test_secrets_stay_private(cli: Cli, tmp_path: Path) -> None:
    (cli.cwd / "train.py").write_text("print('step 1 loss 0.5')\n")
    out = _run_under_umask_0(cli, "run", "--env", "API_KEY=s3cr3t", "train.py")
    run_id = out.stdout.split()[2]
    cli.wait_status(run_id, "completed")
    folder = cli.home / "runs" / run_id
    spec = (folder / "spec.json").read_text()
    assert '"API_KEY":"s3cr3t"' in spec and "hunter2" in spec  # kept for resumes, privately
    assert _mode(cli.home) == 0o700 and _mode(cli.home / "runs") == 0o700
    assert _mode(folder) == 0o700 and _mode(folder / "spec.json") == 0o600
    # Nothing prints a value unless asked.
    for args in (("show", run_id), ("show", "--json", run_id), ("ls",), ("ls", "--json")):
        text = cli(*args).stdout
        assert not any(s in text for s in SECRETS), args
    assert cli.show(run_id)["env"]["API_KEY"] == "***"
    shown = cli("show", "--show-env", run_id).stdout
    assert "API_KEY=s3cr3t" in shown and "MY_SECRET_TOKEN=hunter2" in shown
    # export leaves the environment out, says so, and the bundle imports.
    bundle = tmp_path / "b.tar.gz"
    proc = cli("export", run_id, "-o", str(bundle))
    assert "environment was left out" in proc.stderr and "--with-env" in proc.stderr
    assert _mode(bundle) == 0o600
    with tarfile.open(bundle) as tar:
        content = b"".join(
            f.read() for m in tar.getmembers() if m.isfile() and (f := tar.extractfile(m))
        )
    assert not any(s.encode() in content for s in SECRETS)
    new_id = cli.json("import", str(bundle))["id"]
    imported = cli.show(new_id)
    assert imported["status"] == "completed" and imported["env"] == {}
    with_env = tmp_path / "e.tar.gz"
    assert "left out" not in cli("export", "--with-env", run_id, "-o", str(with_env)).stderr
    with tarfile.open(with_env) as tar:
        member = tar.extractfile(f"{run_id}/spec.json")
        assert member is not None and b"s3cr3t" in member.read()


def test_rm_refuses_a_lost_run_whose_trainer_lives_and_force_stops_it(cli: Cli) -> None:
    run_id = cli.run_script("import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    cli.wait_status(run_id, "running")
    reg = Registry(cli.home)
    state = wait_until(lambda: (s := reg.read_state(run_id)) and s.trainer and s)
    os.kill(state.supervisor.pid, signal.SIGKILL)
    wait_until(lambda: not identity.matches(state.supervisor), message="supervisor gone")
    assert identity.matches(state.trainer)
    proc = cli("rm", run_id, check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "trainer" in proc.stderr and "--force" in proc.stderr
    assert (cli.home / "runs" / run_id / "spec.json").is_file()
    assert identity.matches(state.trainer)  # not orphaned, not touched
    proc = cli("rm", "--force", run_id)
    assert "removed run" in proc.stdout
    assert not identity.matches(state.trainer)
    assert not (cli.home / "runs" / run_id).exists()


def test_names_that_read_as_ids_are_refused(cli: Cli) -> None:
    (cli.cwd / "t.py").write_text("pass\n")
    proc = cli("run", "--name", "000001", "t.py", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "looks like a run id" in proc.stderr
    assert cli.json("ls") == []


def _ls_into_a_closed_pipe(cli: Cli, *args: str) -> subprocess.CompletedProcess[bytes]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head -1`) is gone before the first byte
    try:
        return subprocess.run(
            [sys.executable, "-m", "tui.cli", "ls", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env={**os.environ, "BACKPROP_HOME": str(cli.home), "PYTHONPATH": str(ROOT)},
            timeout=60,
        )
    finally:
        os.close(write_end)


def test_ls_into_a_closed_pipe_exits_quietly(cli: Cli) -> None:
    (cli.cwd / "t.py").write_text("pass\n")
    for _ in range(3):
        cli("run", "t.py")
    for args in ((), ("--json",)):
        proc = _ls_into_a_closed_pipe(cli, *args)
        assert proc.stderr == b"", proc.stderr
        assert proc.returncode == 128 + signal.SIGPIPE
    shell = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m tui.cli ls | head -1'],
        capture_output=True,
        text=True,
        env={**os.environ, "BACKPROP_HOME": str(cli.home)},
        cwd=cli.cwd,
        timeout=60,
    )
    assert shell.stderr == "" and shell.stdout.startswith("ID")


def test_rm_force_stops_a_supervised_run_then_removes_it(cli: Cli) -> None:
    run_id = cli.run_script("import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    cli.wait_status(run_id, "running")
    state = wait_until(lambda: (s := Registry(cli.home).read_state(run_id)) and s.trainer and s)
    refused = cli("rm", run_id, check=False)
    assert refused.returncode == 1 and "stop it first or use rm --force" in refused.stderr
    assert "removed run" in cli("rm", "--force", run_id).stdout
    assert not identity.matches(state.trainer) and not identity.matches(state.supervisor)
    assert not (cli.home / "runs" / run_id).exists()
