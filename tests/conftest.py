"""Shared fixtures: a private registry per test, the real CLI, and condition waits."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import pytest

if TYPE_CHECKING:
    from runner.registry import Registry

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "screenshots") not in sys.path:  # sample_registry: the registry the pictures show
    sys.path.insert(0, str(ROOT / "screenshots"))

# The trainers the tests start train on one thread each. CI's two cores host two workers, each
# starting several trainers at once; PyTorch's default of a thread per core then spins on its
# OpenMP barriers (four trainers at once here: 8 s of CPU each instead of 3, 18 s instead of 11),
# and a run under test trained ten times slower than alone. A user's own setting is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def wait_until(
    cond: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll ``cond`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def _kill_processes_mentioning(marker: str) -> None:
    me = os.getpid()
    victims = []
    for p in psutil.process_iter(["pid", "cmdline", "environ"]):
        if p.pid == me:
            continue
        try:
            cmd = " ".join(p.info["cmdline"] or [])
            env = p.info.get("environ") or {}
        except (psutil.Error, TypeError):
            continue
        if marker in cmd or env.get("BACKPROP_HOME") == marker:
            victims.append(p)
    for p in victims:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGCONT)
            p.kill()
    psutil.wait_procs(victims, timeout=5)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private ``BACKPROP_HOME``; every process left running under it is killed afterwards."""
    root = tmp_path / "bp-home"
    root.mkdir()
    monkeypatch.setenv("BACKPROP_HOME", str(root))
    monkeypatch.delenv("BACKPROP_CONFIG", raising=False)
    yield root
    _kill_processes_mentioning(str(root))
    from runner.supervisor.runcgroup import leftovers

    for run_dir in root.glob("runs/*"):  # a run's cgroup outlives a killed supervisor
        for path in leftovers(run_dir, run_dir.name):
            with contextlib.suppress(OSError):
                _remove_cgroup(path)


def _remove_cgroup(path: Path) -> None:
    if not path.name.startswith("backprop-") or not path.is_dir():
        return
    deadline = time.monotonic() + 5
    while True:
        try:
            path.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            with contextlib.suppress(OSError):
                (path / "cgroup.kill").write_text("1")
            time.sleep(0.05)


class Cli:
    """Runs the real ``backprop`` command line against one registry."""

    def __init__(self, home: Path, cwd: Path) -> None:
        self.home = home
        self.cwd = cwd

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "BACKPROP_HOME": str(self.home), **(env or {})}
        full_env.pop("PYTHONUNBUFFERED", None)  # users' shells do not set it
        proc = subprocess.run(
            [sys.executable, "-m", "tui.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=full_env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"backprop {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def json(self, command: str, *args: str) -> Any:
        """Run ``command --json ARGS`` (the flag goes first: after SCRIPT it is the script's)."""
        return json.loads(self(command, "--json", *args).stdout)

    def run_script(self, code: str, *args: str, name: str = "t", **kw: str) -> str:
        script = self.cwd / f"{name}.py"
        script.write_text(code)
        extra = [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", v)]
        return str(self.json("run", "--name", name, *extra, str(script), *args)["id"])

    def show(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.json("show", run_id)
        return result

    def wait_status(self, run_id: str, *statuses: str, timeout: float = 30) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            seen.clear()
            seen.update(self.show(run_id))
            return seen if seen["status"] in statuses else None

        try:
            result: dict[str, Any] = wait_until(
                reached, timeout=timeout, interval=0.1, message=f"run {run_id} to be {statuses}"
            )
        except AssertionError as exc:  # say where it stopped: a failure in CI is read once
            last = {k: seen.get(k) for k in ("status", "reason", "attempt", "step", "queue")}
            last["events"] = (seen.get("events") or [])[-4:]
            raise AssertionError(f"{exc}; last seen {last}") from None
        return result


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> Cli:
    """The real CLI on the test's private registry, working in a scratch folder."""
    work = tmp_path / "work"
    work.mkdir()
    return Cli(home, work)


@pytest.fixture
def deterministic_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Colour on, UTC, no user configuration: the same picture on every machine."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("BACKPROP_CONFIG", raising=False)
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    time.tzset()
    yield
    time.tzset()


@pytest.fixture
def sample(tmp_path: Path) -> Registry:
    """The sample registry: one run in every status (Textual-free; unit, pilot, snapshot)."""
    import sample_registry

    return sample_registry.build(tmp_path / "home")
