"""Train an MLP on generated data on the GPU when there is one (else the CPU): zero integration.

Prints JSON lines Backprop reads as metrics (``{"step": 100, "loss": 0.41}``), first a line
naming the device it trains on (with the GPU's UUID and ``CUDA_VISIBLE_DEVICES``), last one
with its own timing (``steps_per_s``, measured after a warm-up, the GPU synchronised), so the
same script run directly and under ``backprop run`` can be compared.

    backprop run --gpus 1 examples/train_gpu.py --steps 3000
    python examples/train_gpu.py --steps 500

``--hold-gib G`` keeps an extra G GiB tensor on the device for the whole run (a known amount
of VRAM to find again in NVML); ``--min-seconds S`` keeps training until S seconds have passed;
``--oom`` asks for twice the GPU's memory and dies with PyTorch's "CUDA out of memory".
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn

WARMUP = 20


def say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def pick_device(wanted: str) -> torch.device:
    if wanted == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


def describe(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "device": str(device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["name"] = props.name
        info["memory_total"] = int(props.total_memory)
        uuid = getattr(props, "uuid", None)
        if uuid is not None:
            info["uuid"] = "GPU-" + str(uuid)
    return info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=2048)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--device", default="auto", help="auto (cuda:0 when available), cuda, cpu")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--hold-gib", type=float, default=0.0)
    p.add_argument("--min-seconds", type=float, default=0.0)
    p.add_argument("--step-time", type=float, default=0.0, help="extra sleep per step")
    p.add_argument("--oom", action="store_true")
    args = p.parse_args()

    device = pick_device(args.device)
    say(event="device", **describe(device))
    if args.oom:
        if device.type != "cuda":
            raise SystemExit("--oom needs a CUDA GPU")
        # Twice the card: no allocator can satisfy it, so PyTorch raises OutOfMemoryError.
        total = torch.cuda.get_device_properties(device).total_memory
        torch.empty(total * 2, dtype=torch.uint8, device=device)
    held = None
    if args.hold_gib > 0:
        held = torch.ones(int(args.hold_gib * (1 << 30)), dtype=torch.uint8, device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        say(event="holding", bytes=held.numel(), reserved=_reserved(device))

    g = torch.Generator(device="cpu").manual_seed(0)
    teacher = torch.randn(args.width, 1, generator=g).to(device)
    model = nn.Sequential(
        nn.Linear(args.width, args.width), nn.GELU(), nn.Linear(args.width, 1)
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)

    started = time.monotonic()
    timed_from = None
    step = 0
    while step < args.steps or time.monotonic() - started < args.min_seconds:
        step += 1
        if step == WARMUP + 1:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timed_from = time.perf_counter()
        x = torch.randn(args.batch, args.width, device=device)
        y = torch.tanh(x @ teacher)
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.log_every == 0:
            say(step=step, loss=round(loss.item(), 6))  # .item() syncs only every log_every
        if args.step_time:
            time.sleep(args.step_time)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    done = time.perf_counter()
    timed = step - WARMUP if timed_from is not None else 0
    rate = timed / (done - timed_from) if timed_from is not None and done > timed_from else None
    say(event="done", steps=step, timed_steps=timed, steps_per_s=rate, peak=_peak(device))
    del held
    return 0


def _reserved(device: torch.device) -> int | None:
    return int(torch.cuda.memory_reserved(device)) if device.type == "cuda" else None


def _peak(device: torch.device) -> int | None:
    return int(torch.cuda.max_memory_reserved(device)) if device.type == "cuda" else None


if __name__ == "__main__":
    raise SystemExit(main())
