"""Metrics end to end: the real CLI runs the examples (real PyTorch on CPU) and lists them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from runner.metrics.history import read_history
from tests.conftest import ROOT, Cli, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.torch]
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _needs_torch() -> None:
    pytest.importorskip("torch")


def checkpoint_files(run_dir: Path) -> list[Path]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def listed(cli: Cli, run_id: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = cli.json("ls")
    return next(e for e in entries if e["id"] == run_id)


def test_helpers_stop_and_resume_continue_one_history(cli: Cli) -> None:
    script = str(EXAMPLES / "train_helpers.py")
    run_id = cli.json(
        "run",
        "--name",
        "helpers",
        script,
        "--steps",
        "250",
        "--step-time",
        "0.02",
        "--ckpt-every",
        "20",
        "--keep",
        "3",
    )["id"]
    run_dir = cli.home / "runs" / run_id
    wait_until(lambda: checkpoint_files(run_dir), timeout=40, message="a first checkpoint")
    cli("stop", run_id)
    stopped = cli.wait_status(run_id, "stopped", timeout=40)
    # The graceful stop saved the step it finished: nothing is lost.
    last_ckpt = checkpoint_files(run_dir)[-1]
    match = re.search(r"(\d+)\.pt$", last_ckpt.name)
    assert match is not None and int(match.group(1)) == stopped["step"]
    assert 0 < stopped["step"] < 250

    cli("resume", run_id)
    done = cli.wait_status(run_id, "completed", timeout=40)

    history = read_history(run_dir)
    steps = [p.step for p in history.points]
    assert steps == list(range(1, 251))  # continuous, strictly increasing across attempts
    assert {p.attempt for p in history.points} == {1, 2}
    first_of_second = next(p.step for p in history.points if p.attempt == 2)
    assert first_of_second == stopped["step"] + 1
    assert done["attempt"] == 2 and done["step"] == 250
    assert done["loss"] == pytest.approx(history.points[-1].values["loss"])
    assert done["total_steps"] == 250 and done["progress"] == 1.0
    entry = listed(cli, run_id)
    assert entry["checkpoints"] == len(checkpoint_files(run_dir)) == 3
    assert entry["step"] == 250 and entry["loss"] == done["loss"]
    assert entry["latest_checkpoint"] == str(checkpoint_files(run_dir)[-1])
    assert entry["health"] == []


def test_plain_output_without_integration_shows_step_and_loss(cli: Cli) -> None:
    script = str(EXAMPLES / "train_plain.py")
    run_id = cli.json("run", "--name", "plain", script, "--steps", "200", "--log-every", "20")["id"]
    done = cli.wait_status(run_id, "completed", timeout=40)
    entry = listed(cli, run_id)
    assert entry["step"] == 200 and isinstance(entry["loss"], float)
    assert entry["total_steps"] == 200 and entry["progress"] == 1.0
    assert set(entry["metrics"]) >= {"loss", "val_loss", "epoch"}
    assert entry["loss"] != entry["metrics"]["val_loss"]
    history = read_history(cli.home / "runs" / run_id)
    assert [p.step for p in history.points] == list(range(20, 201, 20))
    assert done["checkpoints"] == 0 and done["health"] == []


def test_failing_example_ends_failed_with_nan_and_a_reason(cli: Cli) -> None:
    script = str(EXAMPLES / "train_fail.py")
    run_id = cli.json("run", "--name", "fail", script, "--steps", "300", "--nan-at", "120")["id"]
    failed = cli.wait_status(run_id, "failed", timeout=40)
    assert "nan" in failed["health"]
    assert failed["reason"] == "FloatingPointError: loss is nan at step 120; exit 1"
    assert failed["step"] == 120 and failed["loss"] is None
    assert failed["best_loss"] is not None
    assert listed(cli, run_id)["health"] == failed["health"]
