"""Evaluate a checkpoint written by ``train_helpers.py`` on fresh data: the second step of a
pipeline, started by Backprop once training completed.

    backprop run --name train examples/train_helpers.py --steps 2000
    backprop run --after train --name eval examples/evaluate.py --checkpoint '{after.checkpoint}'

Loads the checkpoint safely (``weights_only=True``), reports ``eval_loss`` and exits non-zero
when the checkpoint is missing or does not fit the model.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn
from train_helpers import FEATURES, make_data

from runner import report
from runner.torch import load_checkpoint


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="the checkpoint file to evaluate")
    p.add_argument("--seed", type=int, default=0, help="the training data's seed")
    p.add_argument("--samples", type=int, default=4096)
    args = p.parse_args()

    state = load_checkpoint(args.checkpoint)
    if state is None or "model" not in state:
        print(f"no model in {args.checkpoint!r}", file=sys.stderr)
        return 2
    model = nn.Sequential(
        nn.Linear(FEATURES, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 1)
    )
    model.load_state_dict(state["model"])
    model.eval()
    # The same target function as training (same seed), on samples it never saw.
    x, y = make_data(9216 + args.samples, args.seed)
    x, y = x[9216:], y[9216:]
    with torch.no_grad():
        loss = nn.functional.mse_loss(model(x), y).item()
    step = int(state.get("step", 0))
    report(step=step, eval_loss=loss)
    print(f"evaluated {args.checkpoint} (step {step}): eval_loss {loss:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
