"""Backprop against the real driver: what it shows and does agrees with ``nvidia-smi`` and CUDA.

Marked ``gpu``; each test skips, with the reason, without an NVIDIA driver (``nvidia-smi`` and
NVML) and, where it trains, without a CUDA build of torch. ``bench/gpu_check.sh`` runs them on
the GPU machine. Tolerances, and why:

* name and UUID: exact (the footer's tooltip names each GPU; its line has no room);
* memory used: 0.3 GiB (another process may allocate between the two reads; the footer
  prints one decimal of GiB); memory total: exact to 1 MiB in the data, to the GiB printed;
* utilisation: 15 points (NVML and nvidia-smi each average over their own sample window);
* temperature: 3 °C (two reads a moment apart);
* a run's VRAM in NVML against what PyTorch reserved: at least that, at most 1.5 GiB more
  (the CUDA context and cuBLAS workspace are not in PyTorch's count).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, wait_until

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "train_gpu.py")
GIB = 1 << 30
MIB = 1 << 20
SMALL = ["--width", "256", "--batch", "256"]


def nvidia_smi() -> list[dict[str, str]]:
    """One row per GPU, as nvidia-smi reports it now (skips the test without a driver)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        pytest.skip("no NVIDIA driver: nvidia-smi is not installed")
    fields = "index,uuid,name,memory.used,memory.total,memory.free,utilization.gpu,temperature.gpu"
    out = subprocess.run(
        [smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0 or not out.stdout.strip():
        pytest.skip(f"nvidia-smi failed: {out.stderr.strip()[:200]}")
    keys = fields.split(",")
    return [
        dict(zip(keys, (c.strip() for c in line.split(",")), strict=True))
        for line in out.stdout.strip().splitlines()
    ]


def cuda_torch() -> None:
    try:
        import torch
    except ImportError:
        pytest.skip("torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} sees no CUDA GPU")


@pytest.fixture(autouse=True)
def real_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real driver only: never a fake left in the environment."""
    monkeypatch.delenv("BACKPROP_FAKE_NVML", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def configure(home: Path, **governor: str | int) -> None:
    lines = ["[governor]", 'poll_interval = "0.2s"', 'sample_interval = "1s"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in governor.items()]
    (home / "backprop.toml").write_text("\n".join(lines) + "\n")


def output_json(cli: Cli, run_id: str) -> list[dict[str, Any]]:
    text = (cli.home / "runs" / run_id / "output.log").read_text(errors="replace")
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def event(cli: Cli, run_id: str, name: str, timeout: float = 90) -> dict[str, Any]:
    found: dict[str, Any] = wait_until(
        lambda: next((x for x in output_json(cli, run_id) if x.get("event") == name), None),
        timeout=timeout,
        interval=0.2,
        message=f"run {run_id} to print its {name!r} line",
    )
    return found


def submit(cli: Cli, *args: str) -> str:
    return str(cli.json("run", *args)["id"])


# --- the footer against nvidia-smi ------------------------------------------------------------

FOOTER = re.compile(
    r"GPU(?P<index>\d+) \S*\s*(?P<util>\d+|---)% +"
    r"(?P<used>[\d.]+)/(?P<total>\d+)G (?:(?P<temp>\d+)°C)?"
)


def test_footer_agrees_with_nvidia_smi(home: Path) -> None:
    smi_before = nvidia_smi()
    from runner.registry import Registry
    from tui.app import build_app
    from tui.widgets.gpu_footer import GpuFooter

    async def footer() -> tuple[list[str], Any, str]:
        app = build_app(Registry(home))
        async with app.run_test(size=(120, 36)) as pilot:
            widget = app.query_one(GpuFooter)
            deadline = time.monotonic() + 20
            while not widget.gpu.gpus and time.monotonic() < deadline:
                await pilot.pause(0.1)
            await pilot.pause()
            lines = widget.render().plain.splitlines()  # type: ignore[union-attr]
            return lines, widget.gpu, str(widget.tooltip)

    lines, snap, names = asyncio.run(footer())
    smi = nvidia_smi()
    assert snap.gpus, f"the footer shows no GPU: {snap.error} ({lines})"
    assert len(snap.gpus) == len(smi) == len(smi_before)
    for info, row, line in zip(snap.gpus, smi, lines, strict=False):
        m = FOOTER.match(line)
        assert m, f"footer line not understood: {line!r}"
        assert int(m["index"]) == info.index == int(row["index"])
        assert info.name == row["name"] and info.uuid == row["uuid"]
        assert f"GPU{row['index']}: {row['name']} ({row['uuid']}" in names  # the tooltip
        assert abs(info.memory_total / MIB - float(row["memory.total"])) <= 1, (info, row)
        assert int(m["total"]) == round(float(row["memory.total"]) * MIB / GIB)
        assert abs(float(m["used"]) - float(row["memory.used"]) * MIB / GIB) <= 0.3, (line, row)
        assert abs(info.memory_used / GIB - float(row["memory.used"]) * MIB / GIB) <= 0.3
        if row["utilization.gpu"] not in ("[N/A]", "N/A"):
            assert m["util"] != "---", line
            assert abs(int(m["util"]) - float(row["utilization.gpu"])) <= 15, (line, row)
        if row["temperature.gpu"] not in ("[N/A]", "N/A"):
            assert m["temp"] is not None, line
            assert abs(int(m["temp"]) - float(row["temperature.gpu"])) <= 3, (line, row)


# --- placement and VRAM of a real CUDA run ----------------------------------------------------


def test_a_gpus_1_run_is_placed_and_its_vram_shows_under_it(cli: Cli) -> None:
    smi = nvidia_smi()
    cuda_torch()
    configure(cli.home)
    run_id = submit(
        cli,
        "--gpus",
        "1",
        "--vram",
        "4G",
        EXAMPLE,
        "--hold-gib",
        "2",
        "--min-seconds",
        "120",
        *SMALL,
    )
    device = event(cli, run_id, "device")
    holding = event(cli, run_id, "holding")
    placed = cli.show(run_id)
    index = int(device["cuda_visible_devices"])  # the governor's choice, as an index
    assert placed["status"] == "running" and placed["gpus"] == [index]
    assert device["device"] == "cuda:0"
    row = next(r for r in smi if int(r["index"]) == index)
    assert device.get("uuid", row["uuid"]) == row["uuid"]  # CUDA's device 0 is that GPU

    def run_memory() -> int | None:
        status = cli.json("status")
        gpu = next(g for g in status["gpus"] if g["index"] == index)
        mine = [p["memory"] for p in gpu["processes"] if p["run_id"] == run_id]
        return sum(mine) if mine and sum(mine) >= holding["reserved"] else None

    seen = wait_until(run_memory, timeout=30, interval=0.5, message="the run's VRAM in NVML")
    assert holding["reserved"] >= 2 * GIB
    assert seen - holding["reserved"] <= 1.5 * GIB, (seen, holding)
    cli("stop", run_id)
    done = cli.wait_status(run_id, "stopped", timeout=60)
    assert done["status"] == "stopped"


def test_allocating_past_the_gpu_fails_with_cuda_out_of_memory(cli: Cli) -> None:
    nvidia_smi()
    cuda_torch()
    configure(cli.home)
    run_id = submit(cli, "--gpus", "1", "--vram", "1G", EXAMPLE, "--oom")
    done = cli.wait_status(run_id, "failed", "completed", timeout=90)
    assert done["status"] == "failed"
    assert "CUDA out of memory" in done["reason"], done["reason"]


# --- admission against the real free memory; one GPU shared or waited for ----------------------


def test_vram_admission_uses_the_real_free_memory(cli: Cli) -> None:
    smi = nvidia_smi()
    cuda_torch()
    configure(cli.home, vram_margin="512M")
    if len(smi) != 1:
        pytest.skip("written for a machine with one GPU")
    free_gib = float(smi[0]["memory.free"]) * MIB / GIB
    too_much = f"{int(free_gib) + 1}G"  # more than free, less than the card would be misleading
    queued = submit(cli, "--gpus", "1", "--vram", too_much, EXAMPLE, "--steps", "50", *SMALL)
    info = cli.wait_status(queued, "queued", timeout=30)
    m = re.search(r"GPU 0: ([\d.]+) GiB free after reservations", info["reason"])
    assert m, info["reason"]
    assert abs(float(m[1]) - free_gib) <= 1.0, (info["reason"], smi)
    cli("stop", queued)  # a queued run blocks those behind it (FIFO): out of the way first
    cli.wait_status(queued, "stopped", timeout=30)
    fits = f"{max(1, int(free_gib) - 4)}G"
    admitted = submit(cli, "--gpus", "1", "--vram", fits, EXAMPLE, "--steps", "50", *SMALL)
    assert cli.wait_status(admitted, "completed", timeout=90)["status"] == "completed"


def test_a_second_run_waits_for_the_gpu_then_starts_and_small_ones_share(cli: Cli) -> None:
    smi = nvidia_smi()
    cuda_torch()
    if len(smi) != 1:
        pytest.skip("written for a machine with one GPU")
    configure(cli.home, vram_margin="512M", settle="10m")
    total_gib = float(smi[0]["memory.total"]) * MIB / GIB
    big = f"{int(total_gib * 0.55)}G"  # two of these cannot share the card
    first = submit(cli, "--gpus", "1", "--vram", big, EXAMPLE, "--min-seconds", "300", *SMALL)
    event(cli, first, "device")
    # The README: runs share a GPU when their requests fit (max_runs_per_gpu 0: no cap).
    small = submit(cli, "--gpus", "1", "--vram", "1G", EXAMPLE, "--steps", "50", *SMALL)
    shared = cli.wait_status(small, "completed", timeout=90)
    assert shared["gpus"] == cli.show(first)["gpus"] == [0]
    assert cli.show(first)["status"] == "running"
    second = submit(cli, "--gpus", "1", "--vram", big, EXAMPLE, "--steps", "50", *SMALL)
    waiting = cli.wait_status(second, "queued", timeout=30)
    assert "GPU 0:" in waiting["reason"] and "free after reservations" in waiting["reason"]
    assert cli.show(first)["status"] == "running"  # it waited on a live run, not a gone one
    cli("stop", first)
    cli.wait_status(first, "stopped", timeout=60)
    assert cli.wait_status(second, "completed", timeout=120)["status"] == "completed"


# --- CUDA_VISIBLE_DEVICES given as UUIDs ----------------------------------------------------------


def test_cuda_visible_devices_as_uuids_is_honoured_or_refused_clearly(cli: Cli) -> None:
    smi = nvidia_smi()
    cuda_torch()
    configure(cli.home)
    target = smi[-1]
    uuid = target["uuid"]
    env = {"CUDA_VISIBLE_DEVICES": uuid}
    run_id = str(
        json.loads(
            cli("run", "--json", "--gpus", "1", EXAMPLE, "--steps", "50", *SMALL, env=env).stdout
        )["id"]
    )
    device = event(cli, run_id, "device")
    assert device["cuda_visible_devices"] == target["index"]
    assert device.get("uuid", uuid) == uuid
    assert cli.wait_status(run_id, "completed", timeout=90)["status"] == "completed"

    prefix = uuid[: len("GPU-") + 8]
    short = cli(
        "run",
        "--json",
        "--gpus",
        "1",
        EXAMPLE,
        "--steps",
        "20",
        *SMALL,
        env={"CUDA_VISIBLE_DEVICES": prefix},
    )
    short_id = str(json.loads(short.stdout)["id"])
    assert event(cli, short_id, "device")["cuda_visible_devices"] == target["index"]

    absent = "GPU-00000000-0000-0000-0000-000000000000"
    missing = cli("run", "--json", "--gpus", "1", EXAMPLE, env={"CUDA_VISIBLE_DEVICES": absent})
    info = cli.wait_status(str(json.loads(missing.stdout)["id"]), "queued", timeout=30)
    assert (
        f"CUDA_VISIBLE_DEVICES names {absent}, which is not a GPU of this machine" in info["reason"]
    )
    assert uuid in info["reason"]  # it lists the GPUs there are

    mig = cli(
        "run", "--gpus", "1", EXAMPLE, check=False, env={"CUDA_VISIBLE_DEVICES": "MIG-" + uuid[4:]}
    )
    assert mig.returncode == 2 and "MIG device" in mig.stderr, mig.stderr
    cli("stop", str(json.loads(missing.stdout)["id"]))
