"""A deterministic registry with one run in every status, for screenshots and snapshot tests.

Files are written the way the runner writes them (``runner.model`` records through
``runner.durable``), with fixed timestamps. Runs that must look alive (running, paused,
queued) name the calling process as their supervisor, so the registry's reconcile sees a
live supervisor for as long as that process lives.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from governor.fake_nvml import FakeNvml
from governor.probes import GpuSnapshot, HostInfo, probe_gpus
from runner import identity
from runner.durable import append_jsonl, write_json
from runner.model import Lineage, ProcessIdentity, Resources, RunSpec, RunState, Status
from runner.registry import Registry

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
NOW = T0 + 3 * 3600.0
GIB = 1024**3


def frozen_clock() -> float:
    """The screenshots' "now"."""
    return NOW


def _curve(step: int, seed: int, scale: float = 2.4) -> float:
    return scale * math.exp(-step / (120 + 25 * seed)) + 0.08 + 0.04 * math.sin(step / 9 + seed)


def _write_run(
    registry: Registry,
    run_id: str,
    name: str,
    *,
    status: Status,
    created: float,
    steps: int = 0,
    seed: int = 0,
    group: str | None = None,
    reason: str = "",
    attempt: int = 1,
    exit_code: int | None = None,
    signal: int | None = None,
    ended: float | None = None,
    timeout_s: float | None = None,
    gpus: tuple[int, ...] = (),
    parent: Lineage | None = None,
    output: list[str] | None = None,
    checkpoints: int = 0,
    health: tuple[str, ...] = (),
    vram: int | None = None,
    args: tuple[str, ...] = ("--lr", "3e-4", "--batch", "64"),
) -> None:
    folder = registry.runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "checkpoints").mkdir(exist_ok=True)
    (folder / "requests").mkdir(exist_ok=True)
    script = f"/home/ml/project/{name.split(' ')[0].split('-')[0]}.py"
    spec = RunSpec(
        id=run_id,
        name=name,
        command=("/usr/bin/python3", "-u", script, *args),
        cwd="/home/ml/project",
        created_at=created,
        timeout_s=timeout_s,
        group=group,
        parent=parent,
        resources=Resources(gpus=len(gpus) or None, vram_bytes=vram),
        script=script,
    )
    write_json(folder / "spec.json", spec.to_json())
    alive = status in (Status.RUNNING, Status.PAUSED, Status.QUEUED)
    me = identity.identity_of(os.getpid())
    assert me is not None
    supervisor = me if alive else ProcessIdentity(pid=31337, start_ticks=1, boot_id="old-boot")
    started = None if status is Status.QUEUED else created + 5
    state = RunState(
        run_id=run_id,
        attempt=attempt,
        status=status,
        updated_at=ended or NOW,
        supervisor=supervisor,
        reason=reason,
        trainer=None if status is Status.QUEUED else ProcessIdentity(4242, 1, "old-boot"),
        queued_at=created + 1,
        started_at=started,
        ended_at=ended,
        exit_code=exit_code,
        signal=signal,
        timeout_s=timeout_s,
        gpus=gpus,
    )
    write_json(folder / "state.json", state.to_json())
    records = []
    for s in range(0, steps + 1 if steps else 0, 5):
        loss = _curve(s, seed)
        records.append(
            {
                "a": 1 if attempt == 1 or s < steps // 2 else attempt,
                "s": s,
                "t": created + 5 + s * 0.5,
                "v": {
                    "loss": round(loss, 5),
                    "val_loss": round(loss * 1.08 + 0.02, 5),
                    "lr": 3e-4 * (1 - s / (steps * 1.2 + 1)),
                },
            }
        )
    if records:
        append_jsonl(folder / "metrics.jsonl", records)
        losses = [r["v"]["loss"] for r in records]
        write_json(
            folder / "summary.json",
            {
                "schema": 1,
                "step": steps,
                "loss": losses[-1],
                "best": min(losses),
                "metrics": records[-1]["v"],
                "steps_per_s": 2.0,
                "total_steps": 2000,
                "progress": steps / 2000,
                "eta_s": (2000 - steps) / 2.0 if status is Status.RUNNING else None,
                "checkpoints": checkpoints,
                "latest_checkpoint": f"checkpoints/step_{steps - steps % 100}.pt"
                if checkpoints
                else None,
                "health": list(health),
            },
        )
    lines = (
        output
        if output is not None
        else [f"step {s} loss {_curve(s, seed):.4f}" for s in range(0, steps + 1, 25)]
    )
    with open(folder / "output.log", "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


def running_output() -> list[str]:
    """Output with colour, a progress bar redrawn in place, and hostile escapes."""
    lines = [
        "\x1b[32mINFO\x1b[0m loading dataset openwebtext (9,035,582 documents)",
        "\x1b[32mINFO\x1b[0m model: 124.4M parameters, bf16, torch.compile on",
        "\x1b[33mWARN\x1b[0m gradient accumulation 4 (batch 64 does not fit)",
        "epoch 1:  40%|████      | 400/1000 [01:10<01:45]\repoch 1: 100%|██████████| 1000/1000",
        "clipboard? \x1b]52;c;cm0gLXJmIH4=\x07 title? \x1b]0;pwned\x07 [bold red]not markup[/]",
    ]
    for s in range(600, 1301, 50):
        lines.append(
            f"step {s:5d} | loss {_curve(s, 3):.4f} | lr 2.4e-04 | \x1b[36m{2.0:.1f} it/s\x1b[0m"
        )
    lines.append("\x1b[32mINFO\x1b[0m saved checkpoints/step_1300.pt")
    return lines


def build(root: Path) -> Registry:
    """Write the sample registry under ``root`` and return it."""
    registry = Registry(root)
    registry.ensure()
    h = 3600.0
    _write_run(
        registry,
        "000001",
        "mnist-baseline",
        status=Status.COMPLETED,
        created=T0,
        steps=800,
        seed=1,
        exit_code=0,
        ended=T0 + 0.4 * h,
        checkpoints=8,
        reason="exit code 0",
    )
    for run_id, lr, status, seed, extra in (
        ("000002", "1e-3", Status.COMPLETED, 2, {"exit_code": 0, "reason": "exit code 0"}),
        (
            "000003",
            "3e-4",
            Status.TIMEBOXED,
            4,
            {"reason": "time limit 30m reached", "timeout_s": 1800.0, "signal": 2},
        ),
        (
            "000004",
            "1e-2",
            Status.FAILED,
            5,
            {"exit_code": 1, "reason": "out of GPU memory (exit code 1)"},
        ),
    ):
        _write_run(
            registry,
            run_id,
            f"resnet lr={lr}",
            status=status,
            created=T0 + 0.5 * h,
            steps=600 if status is not Status.FAILED else 140,
            seed=seed,
            group="resnet-sweep",
            ended=T0 + 1.0 * h,
            checkpoints=3,
            gpus=(0,),
            **extra,  # type: ignore[arg-type]
        )
    _write_run(
        registry,
        "000005",
        "cifar-vgg",
        status=Status.STOPPED,
        created=T0 + 1.1 * h,
        steps=300,
        seed=6,
        reason="stopped by user (SIGINT)",
        signal=2,
        ended=T0 + 1.3 * h,
        checkpoints=2,
    )
    _write_run(
        registry,
        "000006",
        "bert-finetune",
        status=Status.LOST,
        created=T0 + 1.4 * h,
        steps=220,
        seed=7,
        reason="supervisor gone without recording an exit",
    )
    corrupt = registry.runs_dir / "000007"
    corrupt.mkdir(parents=True, exist_ok=True)
    (corrupt / "spec.json").write_text('{"schema": 1, "id": "000007", "name": ')
    _write_run(
        registry,
        "000008",
        "gpt2-small",
        status=Status.RUNNING,
        created=T0 + 2.0 * h,
        steps=1300,
        seed=3,
        attempt=2,
        gpus=(0,),
        timeout_s=4 * h,
        checkpoints=13,
        output=running_output(),
        vram=16 * GIB,
        reason="running",
    )
    _write_run(
        registry,
        "000009",
        "vit-tiny",
        status=Status.RUNNING,
        created=T0 + 2.5 * h,
        steps=420,
        seed=8,
        gpus=(1,),
        checkpoints=4,
        health=("loss spike at 380",),
        reason="running",
    )
    _write_run(
        registry,
        "000010",
        "diffusion-unet",
        status=Status.PAUSED,
        created=T0 + 2.6 * h,
        steps=150,
        seed=9,
        gpus=(1,),
        reason="paused by user",
    )
    _write_run(
        registry,
        "000011",
        "mnist-baseline-fork",
        status=Status.QUEUED,
        created=T0 + 2.9 * h,
        reason="waiting: max_parallel 3 reached",
        parent=Lineage("000001", "checkpoints/step_800.pt"),
        output=[],
    )
    return registry


def fake_nvml() -> FakeNvml:
    """Two A100s as the fake NVML describes them, one of our runs on each."""
    fake = FakeNvml(
        [
            {
                "name": "NVIDIA A100-SXM4-40GB",
                "memory_total": 40 * GIB,
                "memory_used": int(2.3 * GIB),
                "utilization": 87.0,
                "temperature": 71.0,
            },
            {
                "name": "NVIDIA A100-SXM4-40GB",
                "memory_total": 40 * GIB,
                "memory_used": int(1.7 * GIB),
                "utilization": 54.0,
                "temperature": 83.0,
            },
        ]
    )
    fake.add_process(0, pid=4242, memory=int(21.2 * GIB), run_id="000008")
    fake.add_process(1, pid=4243, memory=int(8.1 * GIB), run_id="000009")
    return fake


def gpu_snapshot() -> GpuSnapshot:
    """Two GPUs, read through the fake NVML by the real probe."""
    return probe_gpus(nvml=fake_nvml(), resolve_run=None)


def host_info() -> HostInfo:
    """A fixed host reading."""
    return HostInfo(
        cpu_percent=37.0,
        load1=2.1,
        cpu_count=16,
        ram_total=64 * GIB,
        ram_available=int(41.6 * GIB),
    )


def _provenance(registry: Registry, run_id: str, commit: str, dirty: bool) -> None:
    git = {"root": "/home/ml/project", "commit": commit, "branch": "main", "dirty": dirty}
    if dirty:
        git.update(diff_bytes=1834, diff_truncated=False, diff_file="git.diff")
    doc = {
        "schema": 1,
        "recorded_at": T0,
        "git": git,
        "python": {"executable": "/usr/bin/python3", "version": "3.11.7"},
        "packages": {"torch": "2.5.1", "numpy": "2.1.3"},
        "host": {"hostname": "gpu-box", "platform": "Linux-6.8", "machine": "x86_64"},
    }
    write_json(registry.run_dir(run_id) / "provenance.json", doc)


def build_seeds(root: Path) -> Registry:
    """A seed sweep (three runs differing only in --seed) and one run with another lr."""
    registry = Registry(root)
    registry.ensure()
    h = 3600.0
    for i, seed in enumerate((0, 1, 2)):
        run_id = f"00000{i + 1}"
        _write_run(
            registry,
            run_id,
            f"resnet seed={seed}",
            status=Status.COMPLETED,
            created=T0 + i * 60,
            steps=600,
            seed=seed + 2,
            group="resnet-seeds",
            ended=T0 + h,
            exit_code=0,
            reason="exit code 0",
            args=("--lr", "3e-4", "--batch", "64", "--seed", str(seed)),
        )
        _provenance(registry, run_id, "9f2c1e7a4b3d8e6f0a1b2c3d4e5f60718293a4b5", False)
    _write_run(
        registry,
        "000004",
        "resnet lr=1e-3",
        status=Status.COMPLETED,
        created=T0 + 0.5 * h,
        steps=600,
        seed=9,
        ended=T0 + 1.5 * h,
        exit_code=0,
        reason="exit code 0",
        args=("--lr", "1e-3", "--batch", "128", "--seed", "0"),
    )
    _provenance(registry, "000004", "c41d0b9e2f7a6c5b4a3928171605f4e3d2c1b0a9", True)
    return registry
