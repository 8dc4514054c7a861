"""Item 5, continued: a GPU training loop under Backprop against the same script run directly,
and the TUI's own CPU with the GPU footer live.

Throughput: `examples/train_gpu.py` (an MLP on generated data, on `cuda:0` when there is a
GPU) times its own loop after a warm-up, the GPU synchronised, and prints `steps_per_s`. Each
pair runs it once directly (`python examples/train_gpu.py`) and once under
`backprop run --gpus 1` (its supervisor parses the output, its governor placed it and samples
NVML), back to back, the order alternating; the ratio is supervised over direct, pair by pair.

TUI CPU: `backprop tui` runs in a pseudo-terminal of 120×40 (no tmux needed) on the registry
the pairs left behind, its footer polling NVML every 1.5 s; once a second its CPU (user +
system, share of one core) is sampled. The same again with NVML unusable (the footer says
`GPU: n/a`) tells what the live footer itself costs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

from bench.common import ROOT, Section, Table, backprop_cli, child_env, fig, med, pairwise, ratio

sys.path.insert(0, str(ROOT))

from governor.probes import FAKE_NVML_ENV  # noqa: E402
from runner.registry import Registry  # noqa: E402

SCRIPT = ROOT / "examples" / "train_gpu.py"


def _done_line(text: str) -> dict[str, object] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{") and '"event": "done"' in line:
            with contextlib.suppress(ValueError):
                parsed: dict[str, object] = json.loads(line)
                return parsed
    return None


def _device_line(text: str) -> dict[str, object]:
    for line in text.splitlines():
        if line.startswith("{") and '"event": "device"' in line:
            with contextlib.suppress(ValueError):
                parsed: dict[str, object] = json.loads(line)
                return parsed
    return {}


def _direct(args: list[str], timeout: float) -> tuple[float, float, dict[str, object]]:
    t = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-u", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(PYTHONUNBUFFERED="1"),
        check=True,
    )
    wall = time.perf_counter() - t
    done = _done_line(out.stdout)
    if done is None or not done.get("steps_per_s"):
        raise RuntimeError(f"direct run printed no rate: {out.stdout[-300:]} {out.stderr[-300:]}")
    return float(done["steps_per_s"]), wall, _device_line(out.stdout)  # type: ignore[arg-type]


def _supervised(
    home: Path, args: list[str], timeout: float
) -> tuple[float, float, dict[str, object]]:
    env = child_env(BACKPROP_HOME=str(home))
    t = time.perf_counter()
    out = subprocess.run(
        [*backprop_cli(), "run", "--json", "--gpus", "1", "--name", "tput", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    run_id = json.loads(out.stdout)["id"]
    reg = Registry(home)
    deadline = time.monotonic() + timeout
    while True:
        view = reg.load(run_id)
        if view.status.finished:
            break
        if time.monotonic() > deadline:
            subprocess.run([*backprop_cli(), "stop", "--force", run_id], env=env, timeout=30)
            raise RuntimeError(f"run {run_id} still {view.status.value} after {timeout:.0f} s")
        time.sleep(0.05)
    wall = time.perf_counter() - t
    text = (reg.run_dir(run_id) / "output.log").read_text(errors="replace")
    done = _done_line(text)
    if view.status.value != "completed" or done is None or not done.get("steps_per_s"):
        raise RuntimeError(f"run {run_id} {view.status.value} ({view.reason}): {text[-300:]}")
    return float(done["steps_per_s"]), wall, _device_line(text)  # type: ignore[arg-type]


def throughput(sec: Section, home: Path, *, pairs: int, steps: int, size: list[str]) -> None:
    args = ["--steps", str(steps), *size]
    direct_rate, super_rate, direct_wall, super_wall = [], [], [], []
    device: dict[str, object] = {}
    for k in range(pairs):
        for side in ("direct", "backprop") if k % 2 == 0 else ("backprop", "direct"):
            if side == "direct":
                rate, wall, device = _direct(args, timeout=300)
                direct_rate.append(rate)
                direct_wall.append(wall)
            else:
                rate, wall, dev = _supervised(home, args, timeout=300)
                super_rate.append(rate)
                super_wall.append(wall)
                if dev.get("cuda_visible_devices") is None and dev.get("device") != "cpu":
                    raise RuntimeError(f"the supervised run was not placed on a GPU: {dev}")
    where = f"{device.get('device')} ({device.get('name', 'no GPU')})"
    sec.text(
        f"Training loop: {steps} steps of `examples/train_gpu.py {' '.join(size)}` on {where}, "
        f"{pairs} pairs."
    )
    t = sec.table(Table(["", "run directly", "under `backprop run --gpus 1`", "ratio (pairwise)"]))
    t.add(
        "steps/s (its own loop, after warm-up)",
        fig(direct_rate),
        fig(super_rate),
        ratio(pairwise(super_rate, direct_rate)),
    )
    t.add(
        "end to end, s", fig(direct_wall), fig(super_wall), ratio(pairwise(super_wall, direct_wall))
    )
    sec.headline.append(
        f"GPU training under `backprop run --gpus 1`: {med(super_rate):,.0f} steps/s against "
        f"{med(direct_rate):,.0f} run directly on {device.get('name', device.get('device'))} "
        f"({med(pairwise(super_rate, direct_rate)):.3f}×, pairwise median)"
    )


def _tui_cpu(home: Path, seconds: float, extra_env: dict[str, str]) -> tuple[list[float], float]:
    """Per-second CPU samples (% of a core) and the whole window's, after the first frame."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = child_env(BACKPROP_HOME=str(home), TERM="xterm-256color", COLUMNS="120", LINES="40")
    env.update(extra_env)
    proc = subprocess.Popen(
        [*backprop_cli(), "tui"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    received = [0]

    def drain() -> None:  # the terminal must be read, or the app blocks writing to it
        with contextlib.suppress(OSError):
            while chunk := os.read(master, 65536):
                received[0] += len(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        p = psutil.Process(proc.pid)
        deadline = time.monotonic() + 30
        while received[0] < 2000 and time.monotonic() < deadline:  # the first frame
            time.sleep(0.05)
        time.sleep(2.0)  # let the start-up work (first listing, first NVML poll) settle
        samples = []
        first = p.cpu_times()
        t0 = time.monotonic()
        last, t_last = first, t0
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            now, t_now = p.cpu_times(), time.monotonic()
            busy = (now.user + now.system) - (last.user + last.system)
            samples.append(100 * busy / (t_now - t_last))
            last, t_last = now, t_now
        whole = 100 * ((last.user + last.system) - (first.user + first.system)) / (t_last - t0)
        return samples, whole
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
        os.close(master)


def tui_cpu(sec: Section, home: Path, *, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bp-no-nvml-") as tmp:
        off = Path(tmp) / "no-gpu.json"
        off.write_text(json.dumps({"gpus": [], "error": "NVML off for this comparison"}))
        live, live_whole = _tui_cpu(home, seconds, {})
        dark, dark_whole = _tui_cpu(home, seconds, {FAKE_NVML_ENV: str(off)})
    t = sec.table(
        Table(["TUI, 120×40 pseudo-terminal", "CPU, % of one core, per second", "whole window"])
    )
    t.add("footer live (NVML every 1.5 s)", fig(live, digits=2), f"{live_whole:.2f}")
    t.add("footer without NVML (`GPU: n/a`)", fig(dark, digits=2), f"{dark_whole:.2f}")
    sec.text(f"{seconds:.0f} s windows, one after the other, after the first frame.")
    sec.headline.append(
        f"TUI with the GPU footer live: {live_whole:.2f} % of a core "
        f"({dark_whole:.2f} % with NVML off)"
    )


def run_live(sec: Section, *, quick: bool, repeats: int, smoke: bool) -> None:
    """The throughput pairs, then the TUI's CPU on the registry they left."""
    if smoke:  # the CPU suite's check of this code: sizes too small to mean anything
        pairs, steps, size, seconds = 1, 30, ["--batch", "32", "--width", "32"], 1.0
    elif quick:
        pairs, steps, size, seconds = repeats, 600, [], 6.0
    else:
        pairs, steps, size, seconds = repeats, 3000, [], 20.0
    with tempfile.TemporaryDirectory(prefix="bp-gpu-bench-") as tmp:
        home = Path(tmp)
        (home / "backprop.toml").write_text('[governor]\npoll_interval = "0.2s"\n')
        for label, part in (
            (
                "training throughput",
                lambda: throughput(sec, home, pairs=pairs, steps=steps, size=size),
            ),
            ("TUI CPU", lambda: tui_cpu(sec, home, seconds=seconds)),
        ):
            try:
                part()
            except Exception as exc:  # one part failing must not hide the others' figures
                sec.text(f"**Failed** ({label}): {type(exc).__name__}: {str(exc)[:400]}")
                sec.headline.append(f"GPU {label}: failed ({type(exc).__name__})")
