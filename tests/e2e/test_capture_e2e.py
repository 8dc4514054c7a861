"""Capture end to end: a real script's graceful stop leaves its metrics as they were."""

from __future__ import annotations

import pytest

from tests.conftest import Cli, wait_until

pytestmark = [pytest.mark.slow]

# The loop is one line so the traceback at the stop echoes the print with its "loss": 1.0/step.
SCRIPT = """\
import json, time
step = 0
while True:
    step += 1; print(json.dumps({"step": step, "loss": 1.0/step}), flush=True) or time.sleep(0.05)
"""


def test_a_graceful_stop_traceback_leaves_the_loss_and_health_alone(cli: Cli) -> None:
    """The KeyboardInterrupt traceback became ``line`` = 4 and ``loss`` = 1.0 (flagged
    diverging); now the run ends with its last real loss and no other metric."""
    run_id = cli.run_script(SCRIPT)
    wait_until(lambda: (cli.show(run_id).get("step") or 0) >= 12, timeout=60, message="step 12")
    cli("stop", run_id)
    d = cli.wait_status(run_id, "stopped", timeout=60)
    output = (cli.home / "runs" / run_id / "output.log").read_text()
    assert "KeyboardInterrupt" in output and '"loss": 1.0/step' in output
    assert d["loss"] == pytest.approx(1.0 / d["step"]) and d["step"] >= 12
    assert "diverging" not in d["health"] and set(d["metrics"]) == {"loss"}
