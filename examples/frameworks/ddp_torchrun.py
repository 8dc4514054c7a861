"""DistributedDataParallel under ``torchrun`` (gloo, CPU), stopping cleanly on Ctrl-C.

Each rank notes every SIGINT it receives (in ``--signal-dir/rank<R>.txt``), and the ranks
agree each step, with an all-reduce, whether any of them was asked to stop, so that they all
leave the loop at the same step; rank 0 then saves ``--out-dir/ckpt.pt``. Knows nothing of
Backprop:

    backprop run torchrun --standalone --nproc_per_node=2 examples/frameworks/ddp_torchrun.py
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

stop_requested = False


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out-dir", default="out")
    p.add_argument("--signal-dir", default="signals")
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--step-time", type=float, default=0.02, help="extra sleep per step")
    args = p.parse_args()

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    os.makedirs(args.signal_dir, exist_ok=True)

    def on_sigint(signum: int, frame: object) -> None:
        global stop_requested
        stop_requested = True
        with open(os.path.join(args.signal_dir, f"rank{rank}.txt"), "a") as f:
            f.write(f"SIGINT pid {os.getpid()}\n")

    signal.signal(signal.SIGINT, on_sigint)

    torch.manual_seed(0)
    model = DDP(nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    step = 0
    while step < args.max_steps:
        x = torch.randn(16, 8)
        loss = nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step += 1
        if rank == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
        flag = torch.tensor([1.0 if stop_requested else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() > 0:
            break
        time.sleep(args.step_time)
    if rank == 0:
        os.makedirs(args.out_dir, exist_ok=True)
        print(f"saving checkpoint to {args.out_dir}", flush=True)
        torch.save({"model": model.module.state_dict(), "step": step}, f"{args.out_dir}/ckpt.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
