"""A PyTorch Lightning script with ``ModelCheckpoint``, written as Lightning's docs write one.

Nothing here knows Backprop: Lightning saves ``lightning_logs/version_N/checkpoints/
epoch=E-step=S.ckpt`` every ``--every-n-steps`` steps and Backprop finds the files.
``--ckpt-path`` is Lightning's own way to continue (``trainer.fit(..., ckpt_path=...)``):

    backprop run examples/frameworks/lightning_checkpoint.py --max-steps 100
    # backprop.toml: [run] resume_args = ["--ckpt-path", "{checkpoint}"]
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class LitRegressor(L.LightningModule):
    """A small regression model."""

    def __init__(self, lr: float = 1e-2, step_time: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))

    def on_train_start(self) -> None:
        print(f"starting at global step {self.trainer.global_step}", flush=True)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        time.sleep(self.hparams.step_time)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--every-n-steps", type=int, default=10)
    p.add_argument("--step-time", type=float, default=0.0, help="extra sleep per step")
    p.add_argument("--ckpt-path", default=None, help="a .ckpt to continue from")
    args = p.parse_args()

    L.seed_everything(0)
    x = torch.randn(512, 8)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(512, 1)
    train_loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)

    checkpoint = ModelCheckpoint(every_n_train_steps=args.every_n_steps, save_top_k=-1)
    trainer = L.Trainer(
        max_steps=args.max_steps,
        callbacks=[checkpoint],
        accelerator="cpu",
        devices=1,
        log_every_n_steps=5,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LitRegressor(step_time=args.step_time), train_loader, ckpt_path=args.ckpt_path)
    print(f"done at global step {trainer.global_step}", flush=True)


if __name__ == "__main__":
    main()
