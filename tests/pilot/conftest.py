"""Fixtures for the pilot tests (the snapshot tests share them): recording actions, the app.

The sample registry and the deterministic environment live in tests/conftest.py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "screenshots") not in sys.path:
    sys.path.insert(0, str(ROOT / "screenshots"))

import sample_registry  # noqa: E402

from runner.registry import Registry  # noqa: E402
from tui.app import BackpropApp, build_app  # noqa: E402


class FakeActions:
    """Records every request the app makes of the runner; answers like the real one."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def submit(self, request: Any) -> str:
        self.calls.append(("submit", request))
        return "submitted run 000099 (fake)"

    def stop(self, run_id: str, *, force: bool = False) -> str:
        self.calls.append(("stop", run_id, force))
        return f"stop requested for run {run_id}"

    def pause(self, run_id: str) -> str:
        self.calls.append(("pause", run_id))
        return "paused"

    def cont(self, run_id: str) -> str:
        self.calls.append(("cont", run_id))
        return "continued"

    def resume(self, run_id: str, *, timeout_s: float | None = None) -> str:
        self.calls.append(("resume", run_id, timeout_s))
        return "resumed"

    def fork(self, run_id: str, changes: Any, *, name: Any = None, timeout_s: Any = None) -> str:
        self.calls.append(("fork", run_id, tuple(changes), name, timeout_s))
        return "forked"

    def rerun(self, run_id: str) -> str:
        self.calls.append(("rerun", run_id))
        return "rerun"


@pytest.fixture(autouse=True)
def _same_picture(deterministic_env: None) -> None:
    """Every pilot test runs in ``deterministic_env`` (tests/conftest.py)."""


@pytest.fixture
def fake_actions() -> FakeActions:
    return FakeActions()


@pytest.fixture
def make_app(
    sample: Registry, fake_actions: FakeActions, tmp_path: Path
) -> Callable[..., BackpropApp]:
    """Build the app on the sample registry with fakes (no producer thread, frozen clock)."""

    def make(**kwargs: Any) -> BackpropApp:
        options: dict[str, Any] = {
            "actions": fake_actions,
            "gpu_source": sample_registry.gpu_snapshot,
            "host_source": sample_registry.host_info,
            "clock": sample_registry.frozen_clock,
            "watch": False,
            "prefs_path": tmp_path / "prefs.json",
        }
        options.update(kwargs)
        registry = options.pop("registry", sample)
        return build_app(registry, **options)

    return make


async def goto(pilot: Any, run_id: str) -> None:
    """Move the tree's cursor onto ``run_id`` with the arrow keys."""
    app = pilot.app
    tree = app.run_tree
    for _ in range(len(tree.lines) + 1):
        if tree.current_run == run_id:
            return
        await pilot.press("down")
    tree.move_to(0)
    await pilot.pause()
    for _ in range(len(tree.lines) + 1):
        if tree.current_run == run_id:
            return
        await pilot.press("down")
    raise AssertionError(f"run {run_id} is not in the tree")


async def until(pilot: Any, condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Run the app until ``condition()`` holds (a search, a worker); fail after ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "the app never reached the awaited state"
        await pilot.pause(0.02)


async def settle(pilot: Any) -> None:
    """Let workers finish and their messages arrive."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()
