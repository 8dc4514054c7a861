"""Train a tiny character-level language model and print plain text: zero integration.

This script knows nothing about Backprop (it never imports ``runner``); Backprop reads its
progress from lines such as::

    epoch 1 | step 20/600 | loss: 2.8123 | val loss 2.9011

    backprop run examples/train_plain.py --steps 600
    python examples/train_plain.py --steps 200
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "our teacher", "a small bird"]
VERBS = ["sees", "likes", "follows", "draws", "finds", "remembers"]
OBJECTS = ["the river", "a red ball", "the garden", "an apple", "the moon", "a quiet house"]
PLACES = ["at night", "in the morning", "after lunch", "near the sea", "every day"]


def make_text(sentences: int, seed: int) -> str:
    """A corpus from a tiny grammar: learnable, and the held-out part is like the rest."""
    g = torch.Generator().manual_seed(seed)

    def pick(words: list[str]) -> str:
        return words[int(torch.randint(0, len(words), (1,), generator=g))]

    return " ".join(
        f"{pick(SUBJECTS)} {pick(VERBS)} {pick(OBJECTS)} {pick(PLACES)}." for _ in range(sentences)
    )


CONTEXT = 8


class CharModel(nn.Module):
    def __init__(self, vocab: int, dim: int = 48) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.mix = nn.Sequential(nn.Linear(CONTEXT * dim, 192), nn.Tanh(), nn.Linear(192, vocab))

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mix(self.embed(ctx).flatten(1))
        return out


def windows(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ctx = ids.unfold(0, CONTEXT, 1)[:-1]
    return ctx, ids[CONTEXT:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--step-time", type=float, default=0.0, help="extra sleep per step (s)")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    torch.manual_seed(args.seed)
    text = make_text(1500, args.seed)
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    split = int(len(ids) * 0.85)
    x, y = windows(ids[:split])
    x_val, y_val = windows(ids[split:])
    model = CharModel(len(chars))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    per_epoch = max(1, len(x) // args.batch)

    for step in range(1, args.steps + 1):
        idx = torch.randint(0, len(x), (args.batch,))
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        opt.step()
        if step % args.log_every == 0 or step == args.steps:
            with torch.no_grad():
                val = nn.functional.cross_entropy(model(x_val), y_val).item()
            epoch = (step - 1) // per_epoch + 1
            print(
                f"epoch {epoch} | step {step}/{args.steps} | loss: {loss.item():.4f} "
                f"| val loss {val:.4f}",
                flush=True,
            )
        if args.step_time:
            time.sleep(args.step_time)
    print("training finished", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
