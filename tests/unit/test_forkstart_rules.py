"""When a process may fork a supervisor (runner.forkstart.fork_allowed); nothing forks here."""

from __future__ import annotations

import os
import threading

import pytest

from runner import forkstart


@pytest.fixture
def allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(forkstart.START_ENV, raising=False)
    monkeypatch.setattr(forkstart, "_allowed", False)
    forkstart.allow()


def test_a_library_caller_never_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(forkstart, "_allowed", False)
    assert not forkstart.fork_allowed()


def test_an_entry_point_that_allows_it_forks_while_single_threaded(allowed: None) -> None:
    # Threads as the kernel counts them: a native one (a library's) counts too.
    assert forkstart.fork_allowed() == (len(os.listdir("/proc/self/task")) == 1)


def test_exec_is_forced_by_the_environment(allowed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(forkstart.START_ENV, "exec")
    assert not forkstart.fork_allowed()


def test_a_second_thread_means_a_new_interpreter(allowed: None) -> None:
    release = threading.Event()
    t = threading.Thread(target=release.wait, daemon=True)
    t.start()
    try:
        assert not forkstart.fork_allowed()  # the kernel's thread count, native threads too
    finally:
        release.set()
        t.join()


def test_not_from_another_thread(allowed: None) -> None:
    seen: list[bool] = []
    t = threading.Thread(target=lambda: seen.append(forkstart.fork_allowed()))
    t.start()
    t.join()
    assert seen == [False]
