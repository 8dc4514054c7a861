"""Checkpoints: ``backprop inspect`` (safe summaries) and the ``runner.torch`` helpers."""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from runner.checkpoints.inspection import CheckpointError, render_summary, summarize


def _torch() -> Any:
    return pytest.importorskip("torch")


def _model_and_optimizer() -> tuple[Any, Any]:
    torch = _torch()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    return model, opt


# --- inspect -----------------------------------------------------------------------------------


def test_summarize_a_full_checkpoint(tmp_path: Path) -> None:
    torch = _torch()
    model, opt = _model_and_optimizer()
    path = tmp_path / "ckpt.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": 120,
            "epoch": 3,
            "config": {"lr": 1e-3, "name": "tiny"},
        },
        path,
    )
    s = summarize(path)
    json.dumps(s)  # JSON-able
    assert s["format"] == "checkpoint" and s["tensors"] == 4
    assert s["parameters"] == 4 * 8 + 8 + 8 * 2 + 2
    assert s["dtypes"] == {"float32": s["parameters"]}
    assert [m["name"] for m in s["modules"]] == ["0", "2"]
    first = s["modules"][0]
    assert first["parameters"] == 40
    assert {"name": "weight", "shape": [8, 4], "dtype": "float32"} in first["entries"]
    assert s["entries"]["step"] == 120 and s["entries"]["epoch"] == 3
    assert s["entries"]["config"] == {"lr": 1e-3, "name": "tiny"}
    assert s["optimizer"]["param_groups"] == 1 and s["optimizer"]["state_entries"] == 4
    assert s["optimizer"]["hyperparameters"]["lr"] == 1e-3
    assert "exp_avg" in s["optimizer"]["state_keys"]
    text = render_summary(s)
    assert "4 tensors" in text and "step = 120" in text and "8x4" in text and "optimizer" in text


def test_summarize_a_bare_state_dict(tmp_path: Path) -> None:
    torch = _torch()
    model, _ = _model_and_optimizer()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    s = summarize(path)
    assert s["format"] == "state_dict" and s["tensors"] == 4 and s["entries"] == {}


def test_a_file_needing_unsafe_loading_is_refused_in_one_line(tmp_path: Path) -> None:
    torch = _torch()
    path = tmp_path / "evil.pt"
    torch.save({"obj": _Opaque()}, path)
    with pytest.raises(CheckpointError) as err:
        summarize(path)
    message = str(err.value)
    assert "\n" not in message and "safe" in message and "_Opaque" in message


class _Opaque:
    """An arbitrary object: loading it would mean running pickled code."""


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "no such file"), (b"hello, not a checkpoint", "not a PyTorch checkpoint")],
)
def test_missing_and_foreign_files(tmp_path: Path, content: bytes | None, expected: str) -> None:
    _torch()
    path = tmp_path / "x.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected) as err:
        summarize(path)
    assert "\n" not in str(err.value)


def test_without_torch_the_error_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "x.pt"
    path.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(CheckpointError, match=r"needs PyTorch: pip install torch"):
        summarize(path)


def test_safetensors_header_needs_no_torch(tmp_path: Path) -> None:
    header = {
        "__metadata__": {"format": "pt"},
        "enc.weight": {"dtype": "F16", "shape": [4, 2], "data_offsets": [0, 16]},
        "enc.bias": {"dtype": "F16", "shape": [4], "data_offsets": [16, 24]},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 24)
    s = summarize(path)
    assert s["format"] == "safetensors" and s["parameters"] == 12
    assert s["modules"][0]["name"] == "enc" and s["dtypes"] == {"float16": 12}
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        summarize(path)


# --- runner.torch ------------------------------------------------------------------------------


def test_save_keeps_the_last_k_atomically_and_announces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = _torch()
    from runner.torch import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint

    monkeypatch.setenv("BACKPROP_CHECKPOINT_DIR", str(tmp_path / "ckpts"))
    monkeypatch.delenv("BACKPROP_RESUME_FROM", raising=False)
    assert load_checkpoint() is None
    model, opt = _model_and_optimizer()
    for step in (10, 20, 30, 40):
        save_checkpoint(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, step, keep=2
        )
    names = sorted(os.listdir(tmp_path / "ckpts"))
    assert names == ["ckpt-00000030.pt", "ckpt-00000040.pt"]  # no temp file left behind
    assert [p.name for p in list_checkpoints()] == names
    latest = latest_checkpoint()
    assert latest is not None and latest.name == "ckpt-00000040.pt"
    lines = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [ln["step"] for ln in lines] == [10, 20, 30, 40]
    assert lines[-1] == {"event": "checkpoint_saved", "path": str(latest.resolve()), "step": 40}
    state = load_checkpoint()
    assert state["step"] == 40 and torch.equal(state["model"]["0.weight"], model[0].weight)
    monkeypatch.setenv("BACKPROP_RESUME_FROM", str(tmp_path / "ckpts" / "ckpt-00000030.pt"))
    assert load_checkpoint()["step"] == 30


def test_load_refuses_unsafe_pickles(tmp_path: Path) -> None:
    torch = _torch()
    from runner.torch import load_checkpoint

    path = tmp_path / "evil.pt"
    torch.save({"obj": _Opaque()}, path)
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(path)


def test_graceful_stop_turns_sigint_into_a_request() -> None:
    from runner.torch import GracefulStop, should_stop

    before = signal.getsignal(signal.SIGINT)
    with GracefulStop() as stop:
        assert not should_stop()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and should_stop() and stop.signal == signal.SIGINT
        os.kill(os.getpid(), signal.SIGTERM)  # still only a request
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # asked twice: the user insists
    assert signal.getsignal(signal.SIGINT) is before and not should_stop()
