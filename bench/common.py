"""What every benchmark of ``python -m bench`` shares: figures, ratios, tables, the machine.

A figure is a list of repeats; it is shown as its median with min and max. A ratio is computed
pair by pair (repeat ``k`` of one side against repeat ``k`` of the other, measured next to each
other in the same run) and shown the same way.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runner import envnames

ROOT = Path(__file__).resolve().parent.parent
EXTRA_HINT = "not installed: pip install 'backprop[bench]'"
MIN_REPEATS = 5


# --- figures ---------------------------------------------------------------------------------


def med(values: Sequence[float]) -> float:
    return statistics.median(values)


def pairwise(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Ratios ``num[k] / den[k]`` of repeats measured side by side."""
    return [a / b if b > 0 else float("inf") for a, b in zip(num, den, strict=True)]


def number(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits (all digits of larger integers), separated."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 10**digits:
        return f"{x:,.0f}"
    r = float(f"{x:.{digits}g}")
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(r))))
    return f"{r:,.{decimals}f}"


def fig(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> str:
    """``median (min–max)`` of repeats, scaled."""
    v = [x * scale for x in values]
    return f"{number(med(v), digits)} ({number(min(v), digits)}–{number(max(v), digits)})"


def ratio(values: Sequence[float]) -> str:
    """A pairwise ratio: ``median× (min–max)``."""
    return f"{number(med(values))}× ({number(min(values))}–{number(max(values))})"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


# --- tables and sections ---------------------------------------------------------------------


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def markdown(self) -> str:
        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

        out = [line(self.headers), "|" + "|".join("---" for _ in self.headers) + "|"]
        out.extend(line(r) for r in self.rows)
        return "\n".join(out)


@dataclass
class Section:
    """One benchmark's part of BENCHMARKS.md: prose, tables and a headline for the README."""

    title: str
    blocks: list[str | Table] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def text(self, line: str) -> None:
        self.blocks.append(line)

    def table(self, table: Table) -> Table:
        self.blocks.append(table)
        return table

    def markdown(self) -> str:
        parts = [f"## {self.title}"]
        for block in self.blocks:
            parts.append(block.markdown() if isinstance(block, Table) else block)
        parts.append(f"_This section took {self.seconds:.0f} s._")
        return "\n\n".join(parts) + "\n"


# --- the machine -----------------------------------------------------------------------------


def version_of(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def os_name() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"') + f", kernel {platform.release()}"
    return f"{platform.system()} {platform.release()}"


def ram_gib() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**30


def tool_version(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


PEER_DISTS = ("tensorboard", "mlflow", "wandb", "trackio")


def machine_table() -> Table:
    t = Table(["", ""])
    load = os.getloadavg()
    t.add("CPU", f"{cpu_model()}, {os.cpu_count()} logical cores")
    t.add("RAM", f"{ram_gib():.1f} GiB")
    t.add("OS", os_name())
    t.add("load average at start", f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    t.add("Python", f"{sys.version.split()[0]} ({sys.executable})")
    t.add("Backprop's bytecode", "compiled before measuring, as `pip install` does (see below)")
    for dist in ("backprop", "textual", "torch", "psutil", "nvidia-ml-py", *PEER_DISTS):
        t.add(dist, version_of(dist) or "not installed")
    t.add("tmux", tool_version(["tmux", "-V"]) or "not installed")
    t.add("htop", tool_version(["htop", "--version"]) or "not installed")
    t.add("btop", tool_version(["btop", "--version"]) or "not installed")
    t.add("nvidia-smi", "present" if shutil.which("nvidia-smi") else "not installed")
    return t


# Backprop itself (what a command imports), then what the bench also compiles.
CODE = ("runner", "governor", "tui")
PACKAGES = (*CODE, "examples")


def compile_bytecode() -> None:
    """Compile the project's modules into ``__pycache__``, as ``pip install`` does.

    An editable install (``pip install -e``) leaves that to the first import, which this
    sandbox forbids (``PYTHONDONTWRITEBYTECODE=1``): every command would compile ~270
    modules from source at every start (~100 ms here), while the peers, installed from
    wheels, start from bytecode. Measuring both from bytecode is the user's case.
    """
    import compileall

    for pkg in PACKAGES:
        if (ROOT / pkg).is_dir():
            compileall.compile_dir(ROOT / pkg, quiet=1)


def source_only_copy(dest: Path) -> Path:
    """A copy of the packages without bytecode (``PYTHONPATH`` to it, with
    ``PYTHONDONTWRITEBYTECODE=1``, runs every start from source, as this sandbox's editable
    install did). Returns the folder to put on ``PYTHONPATH``."""
    for pkg in CODE:
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def backprop_cli() -> list[str]:
    """The ``backprop`` command as this interpreter runs it (the console script's own code)."""
    return [sys.executable, "-m", "tui.cli"]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (envnames.RUN_DIR, "TMUX")}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env.update(extra)
    return env
