"""Group signals go through pidfds only (issue 12 item 9).

``identity.signal_group`` checked the leader's identity, then signalled the group by number
(``os.killpg``): a group whose leader died and whose number was reused in between would
receive the signal. Now every member is signalled through its own pidfd, and only while the
leader's pidfd shows it still holds its pid (so no other group can hold that number).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from runner import identity
from tests.conftest import wait_until

# A group leader with two children in its group (a shell and two sleeps).
GROUP = "sleep 60 & sleep 60 & echo ready; wait"


def members_of(pgid: int) -> list[int]:
    """Every process in group ``pgid`` (read here, independently of the code under test)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(int(name)) == pgid:
                    found.append(int(name))
    return found


@pytest.fixture
def group() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sh", "-c", GROUP], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    wait_until(lambda: len(members_of(proc.pid)) == 3, message="3 members")
    yield proc
    for pid in members_of(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.wait()


def _alive(pid: int) -> bool:
    return identity.start_ticks(pid) is not None and not identity.is_zombie(pid)


def test_every_member_is_signalled_and_killpg_is_never_used(
    group: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_killpg(*_: object) -> None:
        raise AssertionError("signal_group must not signal a group by number")

    monkeypatch.setattr(os, "killpg", no_killpg)
    members = members_of(group.pid)
    ident = identity.identity_of(group.pid)
    assert identity.signal_group(ident, signal.SIGTERM)
    group.wait(timeout=10)
    wait_until(lambda: not any(_alive(p) for p in members), message="members to end")


def test_members_are_not_trusted_once_the_leader_gave_up_its_pid(
    group: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leader dies and is reaped after its identity was checked: its number is free to be
    reused by another group, so nothing read under that number may be signalled."""
    ident = identity.identity_of(group.pid)
    members = [p for p in members_of(group.pid) if p != group.pid]

    def leader_reaped_meanwhile(pgid: int) -> list[int]:
        found = members_of(pgid)
        group.kill()
        group.wait()  # reaped: the pid (and so the group number) may be reused now
        return found

    monkeypatch.setattr(identity, "_group_members", leader_reaped_meanwhile, raising=False)
    assert not identity.signal_group(ident, signal.SIGTERM)
    assert all(_alive(p) for p in members)  # not one was signalled


def test_a_recycled_leader_identity_signals_nothing(group: subprocess.Popen[bytes]) -> None:
    ident = identity.identity_of(group.pid)
    assert ident is not None
    stale = type(ident)(pid=ident.pid, start_ticks=ident.start_ticks - 1, boot_id=ident.boot_id)
    assert not identity.signal_group(stale, signal.SIGTERM)
    assert _alive(group.pid)


def test_a_leader_that_is_not_a_group_leader_is_signalled_alone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ident = identity.identity_of(proc.pid)
        assert os.getpgid(proc.pid) != proc.pid
        assert identity.signal_group(ident, signal.SIGTERM)
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert _alive(os.getpid())  # our own group was not signalled
    finally:
        proc.kill()
        proc.wait()
