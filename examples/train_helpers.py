"""Train a small MLP on synthetic regression data, reporting to Backprop through its helpers.

Uses ``runner.report`` for metrics and ``runner.torch`` for atomic checkpoints (every
``--ckpt-every`` steps, keeping the last ``--keep``), a graceful stop (SIGINT/SIGTERM: finish
the step, save, exit) and resume (``BACKPROP_RESUME_FROM``, or the latest checkpoint in
``./checkpoints`` when run standalone) that continues the step count.

    backprop run examples/train_helpers.py --steps 3000
    python examples/train_helpers.py --steps 300
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from runner import report
from runner.torch import GracefulStop, load_checkpoint, save_checkpoint

FEATURES = 32


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth nonlinear target of random features, with a little noise."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(FEATURES, 1, generator=g) / FEATURES**0.5
    x = torch.randn(n, FEATURES, generator=g)
    y = torch.sin(2 * x @ w) + 0.5 * x[:, :1] * x[:, 1:2] + 0.05 * torch.randn(n, 1, generator=g)
    return x, y


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--step-time", type=float, default=0.0, help="extra sleep per step (s)")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--keep", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    data_x, data_y = make_data(9216, args.seed)
    x, y, x_val, y_val = data_x[:8192], data_y[:8192], data_x[8192:], data_y[8192:]
    model = nn.Sequential(
        nn.Linear(FEATURES, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 1)
    )
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    step = 0
    state = load_checkpoint()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step = int(state["step"])
        print(f"resumed from step {step}", flush=True)

    def save(at: int) -> None:
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": at,
                "rng": torch.get_rng_state(),
            },
            at,
            keep=args.keep,
        )

    with GracefulStop() as stop:
        while step < args.steps:
            step += 1
            idx = torch.randint(0, x.shape[0], (args.batch,))
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
            opt.step()
            report(step=step, loss=loss.item(), total_steps=args.steps)
            if step % 100 == 0 or step == args.steps:
                with torch.no_grad():
                    val = nn.functional.mse_loss(model(x_val), y_val).item()
                report(step=step, val_loss=val)
                print(f"step {step}/{args.steps} loss {loss.item():.4f} val {val:.4f}", flush=True)
            if step % args.ckpt_every == 0:
                save(step)
            if args.step_time:
                time.sleep(args.step_time)
            if stop.requested:
                if step % args.ckpt_every:
                    save(step)
                print(f"stop requested: saved step {step}, exiting", flush=True)
                return 0
    if step % args.ckpt_every:
        save(step)
    print(f"done: {step} steps", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
