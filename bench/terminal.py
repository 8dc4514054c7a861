"""A private tmux server running any command: the TUI, or ``htop`` as a reference monitor."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import psutil

from bench.bench_tui import Tmux
from bench.common import backprop_cli

SIZE = (120, 40)


def tmux_missing() -> str | None:
    return None if shutil.which("tmux") else "tmux is not installed (apt-get install tmux)"


class Pane(Tmux):
    """One tmux session of :data:`SIZE` running ``command`` (``exec``-ed: the pane's pid is
    the command's, created when tmux started it); its output can be copied to ``pipe``."""

    def start_command(
        self, command: list[str], pipe: Path | None = None, env: dict[str, str] | None = None
    ) -> psutil.Process:
        full = {k: v for k, v in (env or os.environ).items() if k not in ("NO_COLOR", "TMUX")}
        full.setdefault("TERM", "xterm-256color")
        line = "exec " + shlex.join(command)
        if pipe is not None:
            # Start the command only once pipe-pane is attached, so no byte is missed.
            gate = pipe.with_suffix(".go")
            line = f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.01; done; {line}"
        subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-s", "b",
             "-x", str(self.size[0]), "-y", str(self.size[1]), line],
            check=True, env=full, timeout=10,
        )  # fmt: skip
        if pipe is not None:
            pipe.touch()
            self.run("pipe-pane", "-o", "-t", "b", f"cat >> {shlex.quote(str(pipe))}")
            pipe.with_suffix(".go").touch()
        pid = int(self.run("display", "-p", "-t", "b", "#{pane_pid}").strip())
        proc = psutil.Process(pid)
        deadline = time.monotonic() + 10
        want = os.path.basename(command[0])
        while time.monotonic() < deadline:
            try:
                if want in " ".join(proc.cmdline()) and "while" not in " ".join(proc.cmdline()):
                    break
            except psutil.Error:
                break
            time.sleep(0.005)
        return proc


def tui_command(home: Path) -> list[str]:
    return [*backprop_cli(), "--home", str(home), "tui"]
