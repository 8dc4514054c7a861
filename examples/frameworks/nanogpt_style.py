"""A training loop in the style of nanoGPT's ``train.py``: it knows nothing of Backprop.

It trains a tiny character-level bigram model on generated text, prints nanoGPT's lines
(``iter N: loss X, time Yms`` and ``step N: train loss X, val loss Y``), and every
``--eval-interval`` iterations prints ``saving checkpoint to OUT`` and saves ``OUT/ckpt.pt``
with ``torch.save``, overwriting the last one, as nanoGPT does. ``--resume PATH`` continues
from a checkpoint (Backprop's ``{checkpoint}`` in ``resume_args``).

    backprop run examples/frameworks/nanogpt_style.py --max-iters 200
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch import nn
from torch.nn import functional as F


class Bigram(nn.Module):
    """The smallest language model: a table of next-character logits."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.table(idx)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out-dir", default="out")
    p.add_argument("--max-iters", type=int, default=200)
    p.add_argument("--eval-interval", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--block-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--step-time", type=float, default=0.0, help="extra sleep per iteration")
    p.add_argument("--resume", default=None, help="a ckpt.pt to continue from")
    args = p.parse_args()

    torch.manual_seed(1337)
    text = "hello backprop, " * 400
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]

    def get_batch(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        d = train_data if split == "train" else val_data
        ix = torch.randint(len(d) - args.block_size - 1, (args.batch_size,))
        x = torch.stack([d[i : i + args.block_size] for i in ix])
        y = torch.stack([d[i + 1 : i + 1 + args.block_size] for i in ix])
        return x, y

    model = Bigram(len(chars))
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    iter_num = 0
    if args.resume:
        print(f"Resuming training from {args.resume}")
        checkpoint = torch.load(args.resume, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        iter_num = checkpoint["iter_num"]
        print(f"resumed at iter {iter_num}")

    @torch.no_grad()
    def estimate_loss() -> dict[str, float]:
        model.eval()
        out = {}
        for split in ("train", "val"):
            out[split] = sum(model(*get_batch(split)).item() for _ in range(5)) / 5
        model.train()
        return out

    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.time()
    while iter_num < args.max_iters:
        x, y = get_batch("train")
        loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iter_num += 1
        t1 = time.time()
        print(f"iter {iter_num}: loss {loss.item():.4f}, time {(t1 - t0) * 1000:.2f}ms")
        t0 = t1
        if iter_num % args.eval_interval == 0:
            losses = estimate_loss()
            print(
                f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}"
            )
            checkpoint = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "iter_num": iter_num,
                "val_loss": losses["val"],
            }
            print(f"saving checkpoint to {args.out_dir}")
            torch.save(checkpoint, os.path.join(args.out_dir, "ckpt.pt"))
        time.sleep(args.step_time)
    print(f"done at iter {iter_num}")


if __name__ == "__main__":
    main()
