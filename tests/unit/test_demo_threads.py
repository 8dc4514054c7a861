"""The demo shares the CPU out among its concurrent trainers (and keeps a user's choice)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runner import envnames
from tui import demo


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv(envnames.CONFIG, "restored after the test")  # prepare() sets it
    monkeypatch.delenv(demo.OMP_THREADS, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("cpus", "threads"), [(16, "3"), (5, "1"), (2, "1"), (None, "1")])
def test_each_trainer_gets_its_share_of_the_cores(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, cpus: int | None, threads: str
) -> None:
    clean_env.setattr(os, "cpu_count", lambda: cpus)
    demo.prepare(tmp_path / "demo")
    assert os.environ[demo.OMP_THREADS] == threads
    assert os.environ[envnames.CONFIG] == str(tmp_path / "demo" / "backprop.toml")


def test_a_users_own_setting_is_kept(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(demo.OMP_THREADS, "7")
    demo.prepare(tmp_path / "demo")
    assert os.environ[demo.OMP_THREADS] == "7"
