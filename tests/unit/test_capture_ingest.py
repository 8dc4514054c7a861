"""Capture end to end through the ingestor: output as real scripts print it, into the summary.

Each test is a defect seen on a real run (issue 18): it failed before the precision rule and
the readers of the forms below existed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.metrics.history import read_history
from runner.metrics.ingest import Ingestor
from runner.model import RunSpec
from runner.registry import OUTPUT, SUMMARY


def _run(tmp_path: Path) -> tuple[Path, RunSpec]:
    run_dir = tmp_path / "runs" / "000001"
    (run_dir / "checkpoints").mkdir(parents=True)
    spec = RunSpec(
        id="000001", name="t", command=("python", "x.py"), cwd=str(tmp_path), created_at=0.0
    )
    return run_dir, spec


def _ingest(tmp_path: Path, text: str) -> dict[str, object]:
    """Feed ``text`` as the run's whole output and return the final summary."""
    run_dir, spec = _run(tmp_path)
    (run_dir / OUTPUT).write_text(text)
    ing = Ingestor(run_dir, spec, 1, clock=lambda: 1000.0, oom_kills=lambda: None)
    ing.poll(final=True)
    ing.close()
    return json.loads((run_dir / SUMMARY).read_text())  # type: ignore[no-any-return]


def _loss_series(tmp_path: Path) -> list[tuple[int, float]]:
    points = read_history(tmp_path / "runs" / "000001").points
    return [(p.step, p.values["loss"]) for p in points if "loss" in p.values]


def test_a_graceful_stop_traceback_is_not_a_metric(tmp_path: Path) -> None:
    """KeyboardInterrupt's traceback gave ``line`` = 13 and, from the echoed source line,
    ``loss`` = 1.0: the final loss showed 1.0 and the run was flagged diverging."""
    lines = [json.dumps({"step": step, "loss": 1.0 / step}) for step in range(1, 13)]
    lines += [
        "Traceback (most recent call last):",
        '  File "/tmp/train.py", line 13, in <module>',
        '    print(json.dumps({"step": step, "loss": 1.0/step}), flush=True)',
        "KeyboardInterrupt",
    ]
    s = _ingest(tmp_path, "\n".join(lines) + "\n")
    assert s["loss"] == pytest.approx(1 / 12) and s["step"] == 12
    assert "diverging" not in s["health"]  # type: ignore[operator]
    assert set(s["metrics"]) == {"loss"}  # type: ignore[arg-type]
    assert _loss_series(tmp_path)[-1] == (12, pytest.approx(1 / 12))


def test_torchrun_start_up_lines_are_not_metrics_and_bare_pairs_are(tmp_path: Path) -> None:
    """Rank 0 printing ``step 10 loss 1.0853`` showed step 1 and no loss; torch.distributed's
    log prefix became ``torch_distributed_run_py`` = 874."""
    prefix = "W1202 23:16:16.530000 20880 torch/distributed/run.py:874]"
    text = (
        f"{prefix} \n{prefix} *****************************************\n"
        f"{prefix} Setting OMP_NUM_THREADS environment variable for each process to be 1 in "
        "default, to avoid your system being overloaded.\n"
        "[W socket.cpp:464] [c10d] The server socket has failed to bind to [::]:29500 "
        "(errno: 98 - Address already in use).\n"
        "step 10 loss 1.0853\nstep 10 loss 1.0853\nstep 20 loss 0.9012\nstep 20 loss 0.9012\n"
    )
    s = _ingest(tmp_path, text)
    assert s["step"] == 20 and s["loss"] == pytest.approx(0.9012)
    assert set(s["metrics"]) == {"loss"}  # type: ignore[arg-type]


def test_rank_zero_speaks_for_the_run(tmp_path: Path) -> None:
    text = "".join(
        f"[rank0]: step {i} loss {1.0 / i:.4f}\n[rank1]: step {i} loss 9.9\n" for i in (10, 20)
    ) + (
        "[rank1]: Traceback (most recent call last):\n"
        '[rank1]:   File "/tmp/train.py", line 13, in <module>\n'
        "[rank1]:     loss = 1.0 / step\n"
        "[rank1]: KeyboardInterrupt\n"
        "[rank0]: Traceback (most recent call last):\n"
        '[rank0]:   File "/tmp/train.py", line 13, in <module>\n'
        "[rank0]:     loss = 1.0 / step\n"
        "[rank0]: KeyboardInterrupt\n"
    )
    s = _ingest(tmp_path, text)
    assert _loss_series(tmp_path) == [(10, 0.1), (20, 0.05)]
    assert s["loss"] == 0.05 and set(s["metrics"]) == {"loss"}  # type: ignore[arg-type]


def _hf_output(quoted: bool, rank: str = "") -> str:
    """What a Hugging Face Trainer script prints (4.x unquoted, 5.x quoted values)."""

    def d(**kv: float) -> str:
        body = ", ".join(f"'{k}': " + (f"'{v:.4g}'" if quoted else repr(v)) for k, v in kv.items())
        return rank + "{" + body + "}"

    args = ["TrainingArguments(", "_n_gpu=1,", "adam_beta1=0.9,", "learning_rate=5e-05,"]
    args += ["logging_steps=4,", "max_steps=-1,", "seed=42,", "warmup_steps=0,", ")"]
    banner = ["***** Running training *****", "  Num examples = 64", "  Num Epochs = 2"]
    banner += ["  Gradient Accumulation steps = 1", "  Total optimization steps = 16"]
    bar = "{:3d}%|█         | {}/{} [00:01<00:03,  3.50it/s]"
    lines = [
        *args,
        *banner,
        bar.format(0, 0, 16),
        bar.format(25, 4, 16),
        d(loss=4.855, grad_norm=1.23, learning_rate=4.9e-05, epoch=0.5),
        bar.format(50, 8, 16),
        d(loss=3.2, grad_norm=1.1, learning_rate=3.1e-05, epoch=1.0),
        bar.format(0, 0, 2),  # the evaluation bar, inside the training bar
        bar.format(100, 2, 2),
        d(eval_loss=5.1, eval_runtime=0.1, eval_samples_per_second=640.0, epoch=1.0),
        bar.format(75, 12, 16),
        d(loss=2.5, grad_norm=0.9, learning_rate=1.2e-05, epoch=1.5),
        bar.format(100, 16, 16),
        d(train_runtime=5.1, train_samples_per_second=25.1, train_loss=3.5, epoch=2.0),
        "***** train metrics *****",
        "  epoch                    =        2.0",
        "  train_loss               =     3.5",
        "  train_runtime            = 0:00:05.10",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("quoted", [False, True], ids=["transformers 4.x", "transformers 5.x"])
def test_hf_trainer_logs_are_read_and_nothing_overwrites_the_training_loss(
    tmp_path: Path, quoted: bool
) -> None:
    """5.x quotes values and none was read; the argument dump became metrics; the closing
    ``train_loss`` became the run's loss."""
    s = _ingest(tmp_path, _hf_output(quoted))
    assert _loss_series(tmp_path) == [(4, 4.855), (8, 3.2), (12, 2.5)]
    assert s["loss"] == 2.5 and s["best"] == 2.5 and s["total_steps"] == 16
    metrics = s["metrics"]
    assert isinstance(metrics, dict)
    assert metrics["eval_loss"] == 5.1 and metrics["train_loss"] == 3.5
    assert not {"adam_beta1", "seed", "learning_rate_5e", "num_epochs"} & set(metrics)
    assert not {"warmup_steps", "logging_steps", "num_examples", "_n_gpu", "n_gpu"} & set(metrics)


def test_hf_trainer_under_torchrun_reads_rank_zero(tmp_path: Path) -> None:
    text = _hf_output(True, rank="[rank0]: ") + "[rank1]: {'loss': '9.9', 'epoch': '0.5'}\n"
    s = _ingest(tmp_path, text)
    assert s["loss"] == 2.5 and [v for _, v in _loss_series(tmp_path)] == [4.855, 3.2, 2.5]
