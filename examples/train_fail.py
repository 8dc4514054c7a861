"""Train a small regression, then blow up: the loss turns nan partway and the script fails.

Shows how Backprop reports a failing run: status ``failed``, health flag ``nan`` and the
error as the reason. Plain text output, no integration.

    backprop run examples/train_fail.py --steps 200 --nan-at 120
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--step-time", type=float, default=0.0, help="extra sleep per step (s)")
    p.add_argument("--nan-at", type=int, default=None, help="step where the loss turns nan")
    p.add_argument("--log-every", type=int, default=10)
    args = p.parse_args()
    nan_at = args.nan_at if args.nan_at is not None else max(1, args.steps * 3 // 5)

    torch.manual_seed(0)
    x = torch.randn(2048, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(2048, 1)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)

    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(x), (args.batch,))
        inputs = x[idx]
        if step >= nan_at:
            inputs = inputs * math.inf  # a corrupted batch: inf * 0 weights -> nan
        loss = nn.functional.mse_loss(model(inputs), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        opt.step()
        value = loss.item()
        if step % args.log_every == 0 or not math.isfinite(value):
            print(f"step {step} | loss: {value:.4f}", flush=True)
        if not math.isfinite(value):
            raise FloatingPointError(f"loss is {value} at step {step}")
        if args.step_time:
            time.sleep(args.step_time)
    print("finished without failing (raise --steps or lower --nan-at)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
