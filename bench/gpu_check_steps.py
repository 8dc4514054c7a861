"""The checks `bench/gpu_check.sh` runs between its steps (one subcommand each).

Each prints one line saying what it found and exits 0 when the step passed, 1 when not, so
the shell script only chains them and collects the lines for its verdict.

    python bench/gpu_check_steps.py wait-running HOME ID SECONDS
    python bench/gpu_check_steps.py train HOME ID (real|fake) OUT_FILE
    python bench/gpu_check_steps.py pytest SUMMARY_FILE (real|fake)
    python bench/gpu_check_steps.py figures FIGURES_FILE (real|fake)
    python bench/gpu_check_steps.py cleanup FOLDER
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from runner import envnames

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _say(ok: bool, line: str) -> int:
    print(line, flush=True)
    return 0 if ok else 1


def wait_running(home: str, run_id: str, seconds: str) -> int:
    """Wait until the run trains (its first metric line) or has ended."""
    from runner.registry import Registry

    reg = Registry(Path(home))
    deadline = time.monotonic() + float(seconds)
    view = reg.load(run_id)
    while time.monotonic() < deadline:
        view = reg.load(run_id)
        metrics = reg.run_dir(run_id) / "metrics.jsonl"
        if view.status.finished or (view.status.value == "running" and metrics.exists()):
            break
        time.sleep(0.1)
    ok = view.status.value in ("running", "completed")
    return _say(ok, f"run {run_id}: {view.status.value} ({view.reason})")


def _json_lines(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict):
                    out.append(item)
    return out


def train(home: str, run_id: str, mode: str, out_file: str) -> int:
    """The training run ended ``completed``; in real mode on ``cuda`` with its GPU named."""
    from runner.registry import Registry

    reg = Registry(Path(home))
    view = reg.load(run_id)
    try:
        output = (reg.run_dir(run_id) / "output.log").read_text(errors="replace")
    except OSError:
        output = ""  # it never started
    lines = _json_lines(output)
    device = next((x for x in lines if x.get("event") == "device"), {})
    done = next((x for x in lines if x.get("event") == "done"), {})
    state = view.state
    record = {
        "status": view.status.value,
        "reason": view.reason,
        "gpus": list(state.gpus) if state is not None else None,
        "device": device,
        "done": done,
        "summary": view.summary,
    }
    tail = "\n".join(output.splitlines()[-40:])
    Path(out_file).write_text(json.dumps(record, indent=1, default=str) + "\n\n" + tail + "\n")
    problems = []
    if view.status.value != "completed":
        ended = "ended" if view.status.finished else "still"
        problems.append(f"{ended} {view.status.value} ({view.reason})")
    if not done.get("steps_per_s"):
        problems.append("no rate printed")
    if mode == "real":
        if not str(device.get("device", "")).startswith("cuda"):
            problems.append(f"trained on {device.get('device')}, not cuda")
        if device.get("cuda_visible_devices") in (None, ""):
            problems.append("CUDA_VISIBLE_DEVICES was not set by the governor")
    rate = done.get("steps_per_s")
    shown = f"{float(rate):,.0f} steps/s" if isinstance(rate, int | float) else "no rate"
    where = f"{device.get('device')} (CUDA_VISIBLE_DEVICES={device.get('cuda_visible_devices')})"
    if problems:
        return _say(False, f"train: {'; '.join(problems)}")
    return _say(True, f"train: completed on {where}, {shown}")


SUMMARY = re.compile(r"=+ (.*) in [\d.]+s")


def pytest_verdict(path: str, mode: str) -> int:
    """Every collected gpu test passed (real mode: at least one ran)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return _say(False, "pytest: no summary written")
    found = SUMMARY.findall(text)
    if not found:
        return _say(False, "pytest: no summary line (did it time out?)")
    line = found[-1].strip()
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", line)}
    bad = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    if bad:
        return _say(False, f"pytest: {line}")
    if mode == "real" and counts.get("passed", 0) == 0:
        return _say(False, f"pytest: no gpu test ran on the GPU ({line})")
    return _say(True, f"pytest: {line}")


def figures(path: str, mode: str) -> int:
    """The bench's GPU section was written and no part of it failed or was skipped."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return _say(False, "figures: not written")
    heads = [ln[2:] for ln in text.splitlines() if ln.startswith("- ") and "GPU" in ln]
    if "**Failed**" in text:
        return _say(False, "figures: a part failed: " + "; ".join(heads)[:300])
    if "**Skipped**" in text:
        return _say(mode != "real", "figures: skipped: " + "; ".join(heads)[:300])
    return _say(True, "figures: " + " | ".join(heads)[:600])


def cleanup(folder: str) -> int:
    """Kill what the check left running: processes whose BACKPROP_HOME lies under ``folder``."""
    import psutil

    root = os.path.realpath(folder)
    victims = []
    for p in psutil.process_iter(["pid"]):
        if p.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            home = p.environ().get(envnames.HOME, "")
            if home and os.path.realpath(home).startswith(root + os.sep):
                victims.append(p)
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGCONT)
            p.kill()
    psutil.wait_procs(victims, timeout=10)
    return _say(True, f"cleanup: {len(victims)} leftover process(es) killed")


def main(argv: list[str]) -> int:
    commands: dict[str, Callable[..., int]] = {
        "wait-running": wait_running,
        "train": train,
        "pytest": pytest_verdict,
        "figures": figures,
        "cleanup": cleanup,
    }
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
