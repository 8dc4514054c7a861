"""Checkpoints that real third-party training code saves by itself, found with no integration.

Each script under ``examples/frameworks/`` is written as its framework's docs write one and
never imports ``runner``. Each run is stopped after its first checkpoint, ``show`` must
report that checkpoint, and ``resume`` with the script's own resume flag and
``{checkpoint}`` (from ``backprop.toml``) must continue from the saved step and complete.
A framework that is not installed skips its test with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import psutil
import pytest

from runner.registry import Registry
from tests.conftest import ROOT, Cli, wait_until
from tui.feed.rows import row_from_view

pytestmark = pytest.mark.slow

FRAMEWORKS = ROOT / "examples" / "frameworks"
# Long enough to be stopped after the first checkpoint (every 10 steps) is found, even unloaded.
LIGHTNING_STEPS = 120
HF_STEPS = 80
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]' installs it)")


def _resume_args(cli: Cli, *args: str) -> None:
    (cli.cwd / "backprop.toml").write_text(f"[run]\nresume_args = {json.dumps(list(args))}\n")


def _start(cli: Cli, script: str, *args: str, env: dict[str, str] | None = None) -> str:
    out = cli(
        "run",
        "--json",
        "--name",
        script.removesuffix(".py"),
        str(FRAMEWORKS / script),
        *args,
        env=env,
    )
    return str(json.loads(out.stdout)["id"])


def _output(cli: Cli, run_id: str) -> str:
    path = cli.home / "runs" / run_id / "output.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _checkpoint_records(cli: Cli, run_id: str) -> list[dict[str, Any]]:
    path = cli.home / "runs" / run_id / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("e") == "checkpoint"]


def _stop_after_first_checkpoint(cli: Cli, run_id: str) -> dict[str, Any]:
    """Wait for ``show`` to count a checkpoint, stop the run gracefully, return ``show``."""

    def counted() -> dict[str, Any] | None:
        d = cli.show(run_id)
        if d["status"] not in ("running", "starting", "queued"):
            raise AssertionError(f"run ended before its first checkpoint was found: {d}")
        return d if d["checkpoints"] >= 1 and d["latest_checkpoint"] else None

    wait_until(counted, timeout=120, interval=0.2, message="the first checkpoint in show")
    cli("stop", run_id)
    return cli.wait_status(run_id, "stopped", timeout=90)


def _resume_and_complete(
    cli: Cli, run_id: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    cli("resume", run_id, env=env)
    return cli.wait_status(run_id, "completed", "failed", timeout=180)


def _resumed_from(cli: Cli, run_id: str) -> str | None:
    events = cli.show(run_id)["events"]
    starts = [e for e in events if e["event"] == "supervisor_started" and e["attempt"] == 2]
    assert starts, events
    value: str | None = starts[-1].get("resume_from")
    return value


def test_plain_torch_save_nanogpt_style(cli: Cli) -> None:
    """``torch.save`` into ``out/ckpt.pt`` after printing "saving checkpoint to out"."""
    _need("torch")
    _resume_args(cli, "--resume", "{checkpoint}")
    run_id = _start(
        cli,
        "nanogpt_style.py",
        "--max-iters",
        "160",
        "--eval-interval",
        "20",
        "--step-time",
        "0.04",
    )
    stopped = _stop_after_first_checkpoint(cli, run_id)
    ckpt = str(cli.cwd / "out" / "ckpt.pt")
    assert stopped["checkpoints"] == 1 and stopped["latest_checkpoint"] == ckpt
    human = cli("show", run_id).stdout
    assert re.search(r"checkpoints\s+1 \(latest .*out/ckpt\.pt\)", human), human
    listed = next(e for e in cli.json("ls") if e["id"] == run_id)
    assert listed["checkpoints"] == 1 and listed["latest_checkpoint"] == ckpt
    row = row_from_view(Registry(cli.home).load(run_id))  # the TUI's tree row
    assert row.checkpoints == 1 and row.latest_checkpoint == "ckpt.pt"
    records = _checkpoint_records(cli, run_id)
    assert records and all(r["path"] == ckpt for r in records)
    assert records[0]["size"] > 0 and records[0]["s"] % 20 == 0, records  # the step it was saved at
    import torch

    saved = torch.load(ckpt, weights_only=True)["iter_num"]
    done = _resume_and_complete(cli, run_id)
    assert done["status"] == "completed" and done["attempt"] == 2, done
    assert _resumed_from(cli, run_id) == ckpt
    out = _output(cli, run_id)
    assert f"resumed at iter {saved}" in out and "done at iter 160" in out, out[-2000:]


def test_lightning_model_checkpoint(cli: Cli) -> None:
    """Lightning's ``ModelCheckpoint`` into ``lightning_logs/version_0/checkpoints``."""
    _need("lightning")
    _resume_args(cli, "--ckpt-path", "{checkpoint}")
    run_id = _start(
        cli,
        "lightning_checkpoint.py",
        "--max-steps",
        str(LIGHTNING_STEPS),
        "--every-n-steps",
        "10",
        "--step-time",
        "0.05",
    )
    stopped = _stop_after_first_checkpoint(cli, run_id)
    latest = stopped["latest_checkpoint"]
    folder = re.escape(str(cli.cwd / "lightning_logs" / "version_0" / "checkpoints"))
    assert re.fullmatch(folder + r"/epoch=\d+-step=(\d+)\.ckpt", latest), latest
    records = _checkpoint_records(cli, run_id)
    steps = [r["s"] for r in records]
    assert min(steps) == 10 and all(s % 10 == 0 for s in steps), records  # from the names
    step = int(re.search(r"step=(\d+)", latest).group(1))  # type: ignore[union-attr]
    done = _resume_and_complete(cli, run_id)
    assert done["status"] == "completed", _output(cli, run_id)[-3000:]
    resumed = _resumed_from(cli, run_id)
    assert resumed is not None and resumed.endswith(".ckpt")
    resumed_step = int(re.search(r"step=(\d+)", resumed).group(1))  # type: ignore[union-attr]
    assert resumed_step >= step
    out = _output(cli, run_id)
    assert (
        f"starting at global step {resumed_step}" in out
        and f"done at global step {LIGHTNING_STEPS}" in out
    )


def test_hf_trainer_checkpoint_folders(cli: Cli) -> None:
    """HF Trainer's ``output_dir/checkpoint-N/`` folders, a tiny GPT-2 built from a config."""
    _need("transformers")
    _need("accelerate")
    _resume_args(cli, "--resume-from-checkpoint", "{checkpoint}")
    run_id = _start(
        cli,
        "hf_trainer.py",
        "--max-steps",
        str(HF_STEPS),
        "--save-steps",
        "10",
        "--step-time",
        "0.08",
        env=OFFLINE,
    )
    stopped = _stop_after_first_checkpoint(cli, run_id)
    latest = stopped["latest_checkpoint"]
    m = re.fullmatch(re.escape(str(cli.cwd)) + r"/hf_out/checkpoint-(\d+)", latest)
    assert m and (Path(latest) / "trainer_state.json").is_file(), latest
    records = _checkpoint_records(cli, run_id)
    assert records[0]["s"] == 10 and records[0]["size"] > 0, records
    done = _resume_and_complete(cli, run_id, env=OFFLINE)
    assert done["status"] == "completed", _output(cli, run_id)[-3000:]
    resumed = _resumed_from(cli, run_id)
    assert resumed is not None
    resumed_step = int(resumed.rsplit("-", 1)[1])
    assert resumed_step >= int(m.group(1))
    out = _output(cli, run_id)
    assert (
        f"starting at global step {resumed_step}" in out
        and f"done at global step {HF_STEPS}" in out
    )


def test_torchrun_two_ranks_stop_gracefully(cli: Cli) -> None:
    """``torchrun --standalone --nproc_per_node=2``: each rank gets SIGINT once, rank 0 saves."""
    _need("torch")
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    out = cli(
        "run",
        "--json",
        "--name",
        "ddp",
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        str(FRAMEWORKS / "ddp_torchrun.py"),
        "--out-dir",
        "out",
        "--signal-dir",
        "signals",
    )
    run_id = str(json.loads(out.stdout)["id"])
    wait_until(
        lambda: "step 5 loss" in _output(cli, run_id), timeout=120, interval=0.2, message="step 5"
    )
    cli("stop", run_id)
    d = cli.wait_status(run_id, "stopped", timeout=90)
    signals = [e["signal"] for e in cli.show(run_id)["events"] if e["event"] == "signal"]
    assert signals == ["SIGINT"], signals  # graceful: no SIGTERM or SIGKILL was needed
    for rank in (0, 1):
        lines = (cli.cwd / "signals" / f"rank{rank}.txt").read_text().splitlines()
        assert len(lines) == 1 and lines[0].startswith("SIGINT"), (rank, lines)
    ckpt = cli.cwd / "out" / "ckpt.pt"
    import torch

    assert torch.load(ckpt, weights_only=True)["step"] >= 5
    d = wait_until(
        lambda: (lambda s: s if s["checkpoints"] >= 1 else None)(cli.show(run_id)),
        timeout=10,
        message="the checkpoint counted",
    )
    assert d["latest_checkpoint"] == str(ckpt)
    assert not _processes_of(cli.home, run_id), "processes of the run are left"


def _processes_of(home: Path, run_id: str) -> list[int]:
    """Every process started for the run (the trainer's environment names it)."""
    left = []
    for p in psutil.process_iter(["pid"]):
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("BACKPROP_RUN_ID") == run_id and env.get("BACKPROP_HOME") == str(home):
            left.append(p.pid)
    return [pid for pid in left if pid != os.getpid()]


def test_checkpoint_glob_counts_what_no_rule_knows(cli: Cli) -> None:
    """``--checkpoint-glob`` on the command line, and ``checkpoint_glob`` in backprop.toml."""
    (cli.cwd / "backprop.toml").write_text('[run]\ncheckpoint_glob = "snapshots/*.npy"\n')
    script = textwrap.dedent(
        """
        import os, time
        os.makedirs("snapshots", exist_ok=True)
        for name in ("a.npy", "b.keras", "c.txt"):
            open(os.path.join("snapshots", name), "wb").write(b"x" * 10)
        time.sleep(0.5)
        """
    )
    (cli.cwd / "snap.py").write_text(script)
    out = cli("run", "--json", "--checkpoint-glob", "snapshots/*.keras", str(cli.cwd / "snap.py"))
    run_id = str(json.loads(out.stdout)["id"])
    d = cli.wait_status(run_id, "completed", timeout=60)
    assert d["checkpoints"] == 2, d
    found = sorted(Path(r["path"]).name for r in _checkpoint_records(cli, run_id))
    assert found == ["a.npy", "b.keras"]
    bad = cli("run", "--json", str(cli.cwd / "snap.py"), check=False)
    assert bad.returncode == 0  # the toml is valid; a wrong one is refused in one line:
    (cli.cwd / "backprop.toml").write_text("[run]\ncheckpoint_glob = 3\n")
    bad = cli("run", str(cli.cwd / "snap.py"), check=False)
    assert bad.returncode != 0 and "checkpoint_glob" in bad.stderr and bad.stderr.count("\n") == 1
    (cli.cwd / "backprop.toml").unlink()
    bad = cli("run", "--checkpoint-glob", "[z-a]", str(cli.cwd / "snap.py"), check=False)
    assert bad.returncode == 2 and "--checkpoint-glob" in bad.stderr, bad.stderr
