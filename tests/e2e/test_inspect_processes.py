"""The tests of ``tests/unit/test_inspect.py`` that start a real process.

That file: Checkpoints: ``backprop inspect`` (safe summaries) and the ``runner.torch`` helpers
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.unit.test_inspect import _model_and_optimizer, _torch


def test_backprop_inspect_command(tmp_path: Path) -> None:
    torch = _torch()
    model, _ = _model_and_optimizer()
    path = tmp_path / "w.pt"
    torch.save({"model": model.state_dict(), "step": 7}, path)
    cmd = [sys.executable, "-m", "tui.cli", "--home", str(tmp_path / "home"), "inspect"]
    ok = subprocess.run([*cmd, "--json", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["entries"] == {"step": 7}
    bad = subprocess.run(
        [*cmd, str(tmp_path / "nope.pt")], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr


def test_graceful_stop_in_a_script_saves_and_exits_cleanly(tmp_path: Path) -> None:
    _torch()
    code = (
        "import sys, time\n"
        "from runner.torch import GracefulStop, save_checkpoint\n"
        "with GracefulStop() as stop:\n"
        "    step = 0\n"
        "    while not stop.requested:\n"
        "        step += 1\n"
        "        if step == 1:\n"
        "            print('ready', flush=True)\n"
        "        time.sleep(0.01)\n"
        "save_checkpoint({'step': step}, step)\n"
    )
    env = {**os.environ, "BACKPROP_CHECKPOINT_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert json.loads(out.splitlines()[-1])["event"] == "checkpoint_saved"
    assert len(os.listdir(tmp_path)) == 1
