"""A Hugging Face ``Trainer`` script on a tiny, randomly initialised GPT-2 (nothing downloaded).

Written as the Trainer's docs write one, and knowing nothing of Backprop: the Trainer saves
``OUTPUT_DIR/checkpoint-N/`` every ``--save-steps`` steps, and Backprop finds the folders.
``--resume-from-checkpoint`` is the Trainer's own way to continue
(``trainer.train(resume_from_checkpoint=...)``):

    HF_HUB_OFFLINE=1 backprop run examples/frameworks/hf_trainer.py --max-steps 60
    # backprop.toml: [run] resume_args = ["--resume-from-checkpoint", "{checkpoint}"]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)


class RandomText(torch.utils.data.Dataset):
    """Token sequences from a fixed seed: a stand-in for a tokenised corpus."""

    def __init__(self, n: int, length: int, vocab: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, length), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


class ReportStart(TrainerCallback):
    """Prints the step training starts from, and slows each step by ``step_time``."""

    def __init__(self, step_time: float) -> None:
        self.step_time = step_time
        self.started = False

    def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if not self.started:
            self.started = True
            print(f"starting at global step {state.global_step}", flush=True)

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(self.step_time)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--output-dir", default="hf_out")
    p.add_argument("--max-steps", type=int, default=60)
    p.add_argument("--save-steps", type=int, default=10)
    p.add_argument("--step-time", type=float, default=0.0, help="extra sleep per step")
    p.add_argument("--resume-from-checkpoint", default=None)
    args = p.parse_args()

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=64,
        n_positions=32,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
    )
    model = GPT2LMHeadModel(config)
    training_args = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.max_steps,
        save_steps=args.save_steps,
        logging_steps=5,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=RandomText(512, 16, config.vocab_size),
        callbacks=[ReportStart(args.step_time)],
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    print(f"done at global step {trainer.state.global_step}", flush=True)


if __name__ == "__main__":
    main()
