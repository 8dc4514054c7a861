"""Private by default (issue 12 item 1): the registry 0700, files that hold an environment 0600.

``spec.json`` holds the submitter's environment (tokens, keys); it was written 0644 in 0755
folders, readable by every user who could enter the home folder.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner import privacy
from runner.durable import write_json
from runner.model import RunSpec
from runner.registry import Registry


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_a_new_registry_and_run_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    reg = Registry(tmp_path / "home")
    run_id = reg.allocate_id()
    spec = RunSpec(
        id=run_id,
        name="t",
        command=("true",),
        cwd="/",
        created_at=time.time(),
        env={"API_KEY": "s3cr3t"},
    )
    folder = reg.create(spec)
    assert mode(reg.root) == 0o700 and mode(reg.runs_dir) == 0o700
    assert mode(folder) == 0o700
    assert mode(folder / "checkpoints") == 0o700 and mode(folder / "requests") == 0o700
    assert mode(folder / "spec.json") == 0o600


def test_an_atomic_replace_keeps_the_asked_mode_not_the_old_files(
    tmp_path: Path, umask: int
) -> None:
    path = tmp_path / "spec.json"
    path.write_text("{}")
    path.chmod(0o644)
    write_json(path, {"env": {"K": "v"}})
    assert mode(path) == 0o600
    write_json(path, {"shared": True}, mode=0o660)
    assert mode(path) == 0o660  # exactly, even under umask 077


def test_a_looser_existing_registry_is_tightened(tmp_path: Path) -> None:
    root = tmp_path / "home"
    root.mkdir()
    root.chmod(0o755)
    Registry(root).ensure()
    assert mode(root) == 0o700
    assert privacy.tighten_root(root) is None  # once private, nothing more to do


def test_a_registry_that_is_not_ours_is_warned_about_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "home"
    (root / "runs").mkdir(parents=True)
    root.chmod(0o755)
    (root / "runs").chmod(0o755)
    monkeypatch.setattr(os, "getuid", lambda: os.stat(root).st_uid + 1)
    monkeypatch.setattr(privacy, "_warned", set())
    privacy.tighten_registry(root)
    privacy.tighten_registry(root)
    err = capsys.readouterr().err
    assert err.count("open to others") == 1 and mode(root / "runs") == 0o755


def test_a_root_that_is_not_only_a_registry_is_never_chmodded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(privacy, "_warned", set())
    shared_tmp = tmp_path / "tmp"
    shared_tmp.mkdir()
    shared_tmp.chmod(0o1777)  # BACKPROP_HOME=/tmp by mistake
    project = tmp_path / "project"
    project.mkdir()
    project.chmod(0o755)
    (project / "train.py").write_text("")
    (project / "runs").mkdir(mode=0o755)  # made by an older Backprop: tightened
    (project / "runs").chmod(0o755)
    for root in (shared_tmp, project):
        reg = Registry(root)
        reg.ensure()
        assert mode(reg.runs_dir) == 0o700
    assert mode(shared_tmp) == 0o1777 and mode(project) == 0o755
    assert capsys.readouterr().err == ""  # runs/ is private: nothing to warn about


def test_masked_env_names_without_values() -> None:
    env = {"HF_TOKEN": "hf_x", "PATH": "/bin"}
    assert privacy.masked_env(env) == {"HF_TOKEN": "***", "PATH": "***"}
    assert privacy.masked_env(env, show=True) == env
