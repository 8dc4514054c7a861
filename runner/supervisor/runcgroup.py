"""A cgroup (v2) per run, where the system lets us make one: every process, escaped or not.

A trainer's grandchild that double-forks and calls ``setsid`` leaves every process group of
the run, and once the supervisor is gone nothing parents it. A cgroup holds it anyway: the
trainer joins the run's cgroup between fork and exec, its descendants inherit it, and
``cgroup.kill`` (Linux 5.14+) ends them all at once.

The run's cgroup is made *inside the supervisor's own* cgroup v2, so whatever limits apply to
the supervisor (a Slurm job, a container, a systemd slice) still apply to the trainer. Where
that is not writable (a non-delegated systemd user session, no cgroup v2), there is none and
the run's environment marker (:mod:`runner.supervisor.members`) finds its processes instead.

It is named ``backprop-<registry key>-<run id>-<attempt>`` (the key a hash of the registry's
path, so two registries never share one). Its path is written to ``cgroup`` in the run
folder; a path read back is used only if it lies in the cgroup v2 mount and has this run's
name, so a forged file cannot aim ``cgroup.kill`` anywhere else.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable
from functools import lru_cache, partial
from pathlib import Path

from runner.supervisor import proctree

CGROUP_FILE = "cgroup"
PREFIX = "backprop-"


@lru_cache(maxsize=1)
def cgroup2_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (``None``: it is not)."""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    return Path(left.split()[4])
    except OSError:
        pass
    return None


def own_cgroup() -> Path | None:
    """This process's cgroup v2 folder."""
    mount = cgroup2_mount()
    if mount is None:
        return None
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3 and parts[0] == "0" and parts[1] == "":
                    return mount / parts[2].lstrip("/")
    except OSError:
        pass
    return None


def _key(run_dir: Path) -> str:
    return hashlib.blake2b(os.path.realpath(run_dir).encode(), digest_size=5).hexdigest()


def _name_re(run_dir: Path, run_id: str) -> re.Pattern[str]:
    return re.compile(rf"{PREFIX}{_key(run_dir)}-{re.escape(run_id)}-[0-9]+")


def leftovers(run_dir: Path, run_id: str) -> list[Path]:
    """Every cgroup this run's attempts made under this process's cgroup that still exists."""
    parent = own_cgroup()
    if parent is None:
        return []
    return sorted(parent.glob(f"{PREFIX}{_key(run_dir)}-{run_id}-*"))


def create(run_dir: Path, run_id: str, attempt: int) -> Path | None:
    """Make the run's cgroup and record its path in the run folder; ``None`` where not allowed."""
    parent = own_cgroup()
    if parent is None:
        return None
    path = parent / f"{PREFIX}{_key(run_dir)}-{run_id}-{attempt}"
    try:
        path.mkdir(exist_ok=True)
        if not os.access(path / "cgroup.procs", os.W_OK):
            return None
    except OSError:
        return None
    with contextlib.suppress(OSError):
        (run_dir / CGROUP_FILE).write_text(str(path) + "\n")
    return path


def join(path: Path) -> None:
    """Move the calling process into ``path`` (run in the trainer between fork and exec)."""
    with contextlib.suppress(OSError), open(path / "cgroup.procs", "w") as f:
        f.write("0")


def _enter(path: Path) -> None:
    proctree.reset_signals()
    join(path)


def preexec(path: Path | None) -> Callable[[], None]:
    """What the trainer runs between fork and exec: default signals, then join ``path``."""
    return proctree.reset_signals if path is None else partial(_enter, path)


def recorded(run_dir: Path, run_id: str) -> Path | None:
    """The run's cgroup as recorded in its folder, if it is valid and still exists."""
    mount = cgroup2_mount()
    if mount is None:
        return None
    try:
        raw = (run_dir / CGROUP_FILE).read_text(errors="replace").strip()
    except OSError:
        return None
    path = Path(os.path.realpath(raw))
    if not _name_re(run_dir, run_id).fullmatch(path.name) or not path.is_relative_to(mount):
        return None
    return path if (path / "cgroup.procs").is_file() else None


def pids(path: Path) -> list[int]:
    """The processes in the cgroup now."""
    try:
        with open(path / "cgroup.procs") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def kill(path: Path) -> bool:
    """SIGKILL every process in the cgroup (``cgroup.kill``); False where unsupported."""
    try:
        with open(path / "cgroup.kill", "w") as f:
            f.write("1")
        return True
    except OSError:
        return False


def contains(path: Path, pid: int) -> bool:
    """Whether ``pid`` is in the cgroup ``path``."""
    mount = cgroup2_mount()
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3 and parts[0] == "0" and parts[1] == "" and mount:
                    return mount / parts[2].lstrip("/") == path
    except OSError:
        pass
    return False


def clear(path: Path | None, timeout: float = 2.0) -> list[int]:
    """Kill what is left in the cgroup and remove it; return the pids that would not go."""
    if path is None:
        return []
    if pids(path):
        kill(path)
        deadline = time.monotonic() + timeout
        while pids(path) and time.monotonic() < deadline:
            time.sleep(0.02)
    left = pids(path)
    if not left:
        remove(path)
    return left


def remove(path: Path | None) -> bool:
    """Remove the cgroup once it is empty; True if it is gone."""
    if path is None:
        return True
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
