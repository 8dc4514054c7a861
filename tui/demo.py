"""``backprop demo``: the example trainers launched concurrently in a demo registry.

Six real runs: a two-run learning-rate sweep and a plain run that complete, one that fails,
one that hits its time limit (timeboxed), and one that waits in the queue because the demo's
``backprop.toml`` lets only five runs train at once. Then the TUI opens on them (or, with
``--no-tui``, the list is printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from governor import dispatcher
from runner import envnames
from runner.config import CONFIG_NAME, load_config
from runner.control import submission
from runner.control.submission import SubmitOptions
from runner.model import Resources
from runner.registry import Registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_HOME = Path("~/.backprop-demo")
MAX_PARALLEL = 5
OMP_THREADS = "OMP_NUM_THREADS"
DEMO_CONFIG = f"""# Written by `backprop demo`: at most {MAX_PARALLEL} runs at once, the rest queue.
[governor]
max_parallel = {MAX_PARALLEL}
"""
TORCH_HELP = """backprop demo: the examples train small PyTorch models, and torch is not installed.
Install it (CPU build, about 200 MB) with one of:
    pip install 'backprop[torch]'
    pip install numpy && pip install torch --index-url https://download.pytorch.org/whl/cpu
then run `backprop demo` again."""


@dataclass(frozen=True)
class DemoRun:
    """One example run of the demo."""

    name: str
    script: str
    args: tuple[str, ...]
    timeout_s: float | None = None
    group: str | None = None


def _args(steps: int, lr: str, batch: int, step_time: float) -> tuple[str, ...]:
    return ("--steps", str(steps), "--lr", lr, "--batch", str(batch), "--step-time", str(step_time))


DEMO_RUNS = (
    DemoRun("sweep lr=3e-3", "train_helpers.py", _args(300, "3e-3", 32, 0.05), group="lr-sweep"),
    DemoRun("sweep lr=1e-2", "train_helpers.py", _args(300, "1e-2", 32, 0.05), group="lr-sweep"),
    DemoRun("plain", "train_plain.py", _args(250, "1e-3", 64, 0.05)),
    DemoRun("fails", "train_fail.py", _args(200, "1e-3", 32, 0.05)),
    DemoRun("timeboxed", "train_plain.py", _args(100_000, "1e-3", 64, 0.1), timeout_s=25.0),
    DemoRun("queued", "train_helpers.py", _args(200, "3e-4", 32, 0.05)),
)


def demo_home(args: argparse.Namespace) -> Path:
    """``--home`` if given, else ``~/.backprop-demo``."""
    home = getattr(args, "home", None)
    return Path(home).expanduser() if home else DEMO_HOME.expanduser()


def prepare(home: Path) -> Registry:
    """Create the demo registry and its ``backprop.toml`` (kept if the user edited one)."""
    registry = Registry(home)
    registry.ensure()
    config = home / CONFIG_NAME
    if not config.exists():
        config.write_text(DEMO_CONFIG, encoding="utf-8")
    # Every supervisor started from here must read the demo's limits, whatever ./backprop.toml
    # the user's working folder has.
    os.environ[envnames.CONFIG] = str(config)
    # Five small models train at once on the CPU: PyTorch's default of a thread per core each
    # would have their OpenMP threads spin against each other (on 2 cores, four trainers took
    # 2.7 times the CPU of one thread each). The cores are shared out; a user's setting is kept.
    os.environ.setdefault(OMP_THREADS, str(max(1, (os.cpu_count() or 1) // MAX_PARALLEL)))
    return registry


def launch(registry: Registry, runs: tuple[DemoRun, ...] = DEMO_RUNS) -> list[str]:
    """Submit the demo runs; return their ids."""
    config = load_config(registry.root)
    ids = []
    for run in runs:
        command, script = submission.build_command(
            str(EXAMPLES / run.script), list(run.args), python=sys.executable, config=config
        )
        spec = submission.submit(
            registry,
            command,
            name=run.name,
            options=SubmitOptions(
                timeout_s=run.timeout_s,
                config=config,
                group=run.group,
                script=script,
                resources=Resources(gpus=0),
            ),
        )
        ids.append(spec.id)
    dispatcher.kick(registry)
    return ids


def run_demo(args: argparse.Namespace) -> int:
    """Launch the demo runs, then open the TUI on them (or list them with ``--no-tui``)."""
    if importlib.util.find_spec("torch") is None:
        print(TORCH_HELP, file=sys.stderr)
        return 1
    missing = [r.script for r in DEMO_RUNS if not (EXAMPLES / r.script).is_file()]
    if missing:
        print(f"backprop demo: example scripts missing in {EXAMPLES}: {', '.join(missing)}")
        return 1
    home = demo_home(args)
    registry = prepare(home)
    ids = launch(registry)
    print(f"backprop demo: launched {len(ids)} runs in {home} (at most {MAX_PARALLEL} at once)")
    if getattr(args, "no_tui", False):
        from tui.cli.render import print_table

        print_table(registry.list_runs())
        print(f"watch them with: backprop --home {home} tui")
        return 0
    from tui.app import run_app

    return run_app(registry)
