"""Starting a detached supervisor (``python -m runner.supervisor.main``) for an admitted attempt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from runner.registry import (
    Registry,
)


def spawn_supervisor(registry: Registry, run_id: str, *, attempt: int, wait: bool = True) -> None:
    """Start a detached supervisor for one admitted attempt.

    What it runs (time limit, checkpoint, placement) it reads from the run's ticket. With
    ``wait`` this returns once the supervisor has detached; without, at once (a long-lived
    caller that ignores ``SIGCHLD`` starts many without waiting for each interpreter).
    """
    run_dir = registry.run_dir(run_id)
    cmd = [
        sys.executable,
        "-m",
        "runner.supervisor.main",
        "--home",
        str(registry.root),
        "--run",
        run_id,
        "--attempt",
        str(attempt),
        "--detach",
    ]
    env = dict(os.environ)
    # The supervisor must import this very package, wherever the launcher was started.
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
    with open(run_dir / "supervisor.log", "ab") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=run_dir,
        )
    if wait:
        proc.wait()
