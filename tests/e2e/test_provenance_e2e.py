"""Provenance end to end: a dirty git tree is recorded at submit, shown, compared, bundled."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from runner import provenance
from tests.conftest import Cli

SCRIPT = "import sys\nprint('args', sys.argv[1:])\nprint('loss: 0.25')\n"


def git(cwd: Path, *args: str) -> str:
    who = {"NAME": "t", "EMAIL": "t@t"}
    env = {
        **os.environ,
        **{f"GIT_{r}_{k}": v for r in ("AUTHOR", "COMMITTER") for k, v in who.items()},
    }
    return subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()


def dirty_repo(cwd: Path) -> tuple[Path, str]:
    git(cwd, "init", "-q", "-b", "main")
    script = cwd / "train.py"
    script.write_text(SCRIPT)
    git(cwd, "add", "train.py")
    git(cwd, "commit", "-qm", "first")
    script.write_text(SCRIPT + "# tuned the schedule\n")  # uncommitted: the tree is dirty
    return script, git(cwd, "rev-parse", "HEAD")


def test_compare_of_two_runs_of_a_dirty_tree_shows_arguments_and_commit(cli: Cli) -> None:
    script, head = dirty_repo(cli.cwd)
    a = cli.json("run", str(script), "--lr", "0.1", "--layers", "4")["id"]
    b = cli.json("run", str(script), "--lr", "0.2", "--layers", "4")["id"]
    for run_id in (a, b):
        cli.wait_status(run_id, "completed")

    shown = cli.show(a)["provenance"]
    assert shown["git"]["commit"] == head and shown["git"]["branch"] == "main"
    assert shown["git"]["dirty"] is True and shown["git"]["diff_truncated"] is False
    assert shown["packages"]["torch"]  # read from metadata, the supervisor never imported it
    diff = cli.home / "runs" / a / "git.diff"
    assert "+# tuned the schedule" in diff.read_text()
    assert stat.S_IMODE(diff.stat().st_mode) == 0o600
    human = cli("show", a).stdout
    assert f"{head[:12]} on main (dirty" in human

    result = cli.json("compare", a, b)
    assert result["arguments"] == {"lr": ["0.1", "0.2"]}
    assert result["provenance"]["commit"] == [head, head]
    assert result["provenance"]["dirty"] == [True, True]
    assert result["metrics"]["final loss"] == [0.25, 0.25]
    table = cli("compare", a, b).stdout
    assert "lr" in table and "0.1" in table and "0.2" in table and head[:12] in table
    assert "layers" not in table  # equal: not shown


def test_provenance_travels_in_a_bundle(cli: Cli, tmp_path: Path) -> None:
    script, head = dirty_repo(cli.cwd)
    run_id = cli.json("run", str(script))["id"]
    cli.wait_status(run_id, "completed")
    bundle = tmp_path / "run.tar.gz"
    cli("export", run_id, "-o", str(bundle))
    new_id = cli.json("import", str(bundle))["id"]
    assert cli.show(new_id)["provenance"]["git"]["commit"] == head
    assert (cli.home / "runs" / new_id / "git.diff").read_text() == (
        cli.home / "runs" / run_id / "git.diff"
    ).read_text()


def test_outside_git_and_a_big_diff(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    info, diff = provenance.git_info(plain)
    assert info is None and diff == b""
    repo = tmp_path / "repo"
    repo.mkdir()
    script, _ = dirty_repo(repo)
    script.write_text("x = 1\n" * 50_000)
    info, diff = provenance.git_info(repo, diff_limit=4096)
    assert info is not None and info["dirty"] is True and info["diff_truncated"] is True
    assert len(diff) == 4096
    doc = provenance.record(tmp_path, plain, ["python3", "x.py"], None)
    assert doc["git"] is None
    assert json.loads((tmp_path / "provenance.json").read_text())["git"] is None
    assert ("commit", "not a git tree") in provenance.describe(doc)


def test_the_helpers_yield_to_the_starting_trainer(tmp_path: Path) -> None:
    """Provenance is collected while the run's trainer starts: its helper processes run at a
    lower priority (an interpreter that reports its own niceness as its version shows it)."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "{\\"python\\": \\"$(nice)\\", \\"packages\\": {}}"\n')
    fake.chmod(0o755)
    doc = provenance.interpreter_versions(str(fake))
    assert doc is not None
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert int(doc["python"]) == min(19, mine + provenance.BACKGROUND_NICE)
