"""`bench/gpu_check.sh`, the one command for the GPU machine, run here with the fake NVML so it
cannot rot between the rare runs on a real GPU: every step runs (bar the wheel install), the
output folder holds what the device tool brings back, and the verdict is the last line; a
machine without a GPU checked for real gets a FAIL naming each step, and the script goes on
past each failure. The UUID handling runs end to end here too, on two fake GPUs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Cli

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
FAKE_H100 = {
    "name": "Fake H100 80GB HBM3",
    "uuid": "GPU-5b3f0a4e-aaaa-1111-2222-333344445555",
    "memory_total": 81559 << 20,
    "memory_used": 1 << 30,
    "utilization": 37,
    "temperature": 41,
}


def check_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
    env.pop("OUT", None)
    env["PYTHON"] = sys.executable  # the interpreter running this suite runs the check
    env["TMPDIR"] = str(tmp_path)
    # The gpu tests skip here; one file keeps the step's collection short.
    env["GPU_CHECK_TESTS"] = "tests/e2e/test_gpu_real.py"
    return env


def run_check(
    tmp_path: Path, *args: str, timeout: float
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(SCRIPT), str(out), "--no-install", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=check_env(tmp_path),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    return proc, out


def test_the_check_runs_every_step_on_the_fake_and_fills_the_output_folder(tmp_path: Path) -> None:
    fake = tmp_path / "gpus.json"
    fake.write_text(json.dumps([FAKE_H100]))
    proc, out = run_check(tmp_path, "--smoke", "--fake", str(fake), "--budget", "240", timeout=300)
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert last.startswith("GPU CHECK: PASS; pytest: "), last
    assert "; train: completed on cpu" in last and "[fake NVML: no GPU was checked]" in last
    # What the device tool brings back: at most 8 plain files, no folders.
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(
        [
            "summary.txt",
            "check.log",
            "pytest.txt",
            "figures.md",
            "run.txt",
            "screen.svg",
            "screen.txt",
        ]
    )
    assert all((out / f).is_file() for f in files)
    summary = (out / "summary.txt").read_text()
    assert summary.splitlines()[0] == last
    assert "install: skipped (--no-install)" in summary
    assert "skipped" in (out / "pytest.txt").read_text().splitlines()[-1]  # no driver here
    figures = (out / "figures.md").read_text()
    assert "## 5. GPU" in figures and "**Fake NVML**" in figures and "Fake H100" in figures
    assert "steps/s (its own loop, after warm-up)" in figures and "footer live" in figures
    assert "**Failed**" not in figures
    run = json.loads((out / "run.txt").read_text().split("\n\n", 1)[0])
    assert run["status"] == "completed" and run["gpus"] == [0]
    assert run["device"]["cuda_visible_devices"] == "0"  # the governor placed it on the fake GPU
    screen = (out / "screen.txt").read_text()
    assert screen.startswith("GPU0 ") and "80G 41°C" in screen.splitlines()[0]
    assert (out / "screen.svg").read_text().lstrip().startswith("<svg")
    log = (out / "check.log").read_text()
    assert log.strip().splitlines()[-1] == last
    for step in ("imports", "pytest", "train-start", "tui", "train-end", "bench"):
        assert f"== {step}: exit 0" in log, step


def test_without_a_gpu_for_real_it_fails_each_step_and_goes_on(tmp_path: Path) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver")
    proc, out = run_check(tmp_path, "--budget", "30", timeout=120)
    last = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert last.startswith("GPU CHECK: FAIL: "), last
    # Each step failed its own way (no gpu test could run; no GPU to place the run on; the bench
    # never got its turn within the budget) and every one is named: the script went on.
    assert "pytest: " in last and "train" in last and "figures: " in last
    assert (out / "summary.txt").read_text().splitlines()[0] == last
    assert (out / "pytest.txt").is_file() and (out / "check.log").is_file()


def test_cuda_visible_devices_uuids_end_to_end_on_fake_gpus(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = {**FAKE_H100, "uuid": "GPU-5b3f0a4e-bbbb-1111-2222-333344445555", "memory_used": 0}
    fake = tmp_path / "gpus.json"
    fake.write_text(json.dumps([FAKE_H100, other]))  # GPU 1 has more free: the default pick
    monkeypatch.setenv("BACKPROP_FAKE_NVML", str(fake))
    (cli.home / "backprop.toml").write_text('[governor]\npoll_interval = "0.2s"\n')
    script = textwrap.dedent(
        """
        import os
        print("visible", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
        """
    )
    env = {"CUDA_VISIBLE_DEVICES": FAKE_H100["uuid"][:16]}  # a unique prefix, as CUDA takes
    run_id = cli.run_script(script, name="uuid", gpus="1")
    first = cli.wait_status(run_id, "completed")
    assert first["gpus"] == [1]
    (cli.cwd / "v.py").write_text(script)
    chosen = json.loads(cli("run", "--json", "--gpus", "1", "v.py", env=env).stdout)["id"]
    done = cli.wait_status(chosen, "completed")
    assert done["gpus"] == [0]
    assert "visible 0" in cli("logs", chosen).stdout
    absent = json.loads(
        cli("run", "--json", "--gpus", "1", "v.py", env={"CUDA_VISIBLE_DEVICES": "GPU-ffff"}).stdout
    )["id"]
    reason = cli.wait_status(absent, "queued")["reason"]
    assert reason.startswith("CUDA_VISIBLE_DEVICES names GPU-ffff, which is not a GPU of this")
    assert FAKE_H100["uuid"] in reason
    mig = cli("run", "--gpus", "1", "v.py", check=False, env={"CUDA_VISIBLE_DEVICES": "MIG-1"})
    assert mig.returncode == 2 and "MIG device (MIG-1)" in mig.stderr
    cli("stop", absent)  # a queued run blocks the queue behind it
    cli.wait_status(absent, "stopped")
    # The CPU lane hides every GPU anyway: nothing to refuse.
    cpu = cli("run", "--json", "--gpus", "0", "v.py", env={"CUDA_VISIBLE_DEVICES": "MIG-1"})
    assert cli.wait_status(json.loads(cpu.stdout)["id"], "completed")["status"] == "completed"


@pytest.mark.parametrize(
    "args", [[], ["out", "--budget", "soon"], ["out", "--bogus"], ["out", "--fake"]]
)
def test_bad_arguments_exit_2_with_the_usage(tmp_path: Path, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 2 and "bash bench/gpu_check.sh [OUTDIR]" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_scripts_are_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    for script in ("gpu_check.sh", "gpu_wheels.sh"):
        proc = subprocess.run(
            ["shellcheck", str(ROOT / "bench" / script)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout
