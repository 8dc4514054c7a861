"""Recognising processes across time, and signalling only the ones we recognise.

A pid alone names nothing durable: pids are reused. Backprop records pid + the kernel's start
time for the process + the boot id, and signals a pid read from disk only when all three still
match, through a pidfd opened *before* the check so a reuse between check and signal is
impossible.
"""

from __future__ import annotations

import contextlib
import os
import signal
from functools import lru_cache

from runner.model import ProcessIdentity


@lru_cache(maxsize=1)
def boot_id() -> str:
    """Return this boot's id (changes on every reboot)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:  # pragma: no cover - every Linux has it
        return "unknown-boot"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may itself contain ") ".
    close = raw.rfind(b")")
    if close < 0:
        return None
    return raw[close + 2 :].decode("ascii", "replace").split()


def start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks since boot, or ``None`` if it is gone."""
    if pid <= 0:
        return None
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited and waits to be reaped."""
    fields = _stat_fields(pid)
    return bool(fields) and fields is not None and fields[0] in ("Z", "X")


def identity_of(pid: int) -> ProcessIdentity | None:
    """The identity of a live process, or ``None`` if there is no such process."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    return ProcessIdentity(pid=pid, start_ticks=ticks, boot_id=boot_id())


def is_signallable(ident: ProcessIdentity | None) -> bool:
    """Whether ``ident`` is an identity we would ever act on (not pid 0, 1 or negative)."""
    return ident is not None and ident.pid > 1


def matches(ident: ProcessIdentity | None) -> bool:
    """Whether ``ident`` names a process that is alive now (and not a zombie)."""
    if not is_signallable(ident):
        return False
    assert ident is not None
    if ident.boot_id != boot_id():
        return False
    return start_ticks(ident.pid) == ident.start_ticks and not is_zombie(ident.pid)


def send_signal(ident: ProcessIdentity | None, sig: int) -> bool:
    """Send ``sig`` to the process named by ``ident`` if, and only if, it is that process.

    The pidfd is opened first and the identity checked after, so if the pid was recycled the
    check fails, and if it is recycled later the pidfd still refers to the original process.

    Returns:
        True if the signal was delivered.
    """
    if not is_signallable(ident):
        return False
    assert ident is not None
    if ident.boot_id != boot_id():
        return False
    try:
        fd = os.pidfd_open(ident.pid)
    except (ProcessLookupError, OSError):
        return False
    try:
        if start_ticks(ident.pid) != ident.start_ticks or is_zombie(ident.pid):
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    finally:
        os.close(fd)


def pgid_of(pid: int) -> int | None:
    """The process group of ``pid`` (from ``/proc``), or ``None`` if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 3:
        return None
    try:
        return int(fields[2])
    except ValueError:
        return None


def _group_members(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit() and pgid_of(int(name)) == pgid:
            members.append(int(name))
    return members


def _present(pidfd: int) -> bool:
    """Whether the process behind ``pidfd`` still holds its pid (alive or not yet reaped)."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def signal_group(ident: ProcessIdentity | None, sig: int, *, rounds: int = 3) -> bool:
    """Send ``sig`` to the process group led by ``ident``, after checking the leader's identity.

    Only used for a trainer whose supervisor is gone; the supervisor signals its own
    (unreaped, so never recycled) child's group directly. A group is signalled member by
    member, each through a pidfd, never by number (``killpg``): the leader's pidfd is opened
    before its identity is checked, each member's pidfd before its group is read, and the
    members are trusted only if the leader still holds its pid afterwards. While the leader
    holds its pid, no other group can take that number, so every process signalled was a
    member of this group; a reused pid can never receive the signal. Members forked while
    the signal goes out are caught by the next of ``rounds`` passes.

    Returns:
        True if the leader or any member was signalled.
    """
    if not matches(ident):
        return False
    assert ident is not None
    try:
        leader = os.pidfd_open(ident.pid)
    except OSError:
        return False
    sent: set[int] = set()
    try:
        if start_ticks(ident.pid) != ident.start_ticks:
            return False
        if pgid_of(ident.pid) != ident.pid:  # not a group leader: signal it alone
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(leader, sig)
                return True
            return False
        for _ in range(max(1, rounds)):
            fds: dict[int, int] = {}
            try:
                for pid in _group_members(ident.pid):
                    if pid in sent:
                        continue
                    with contextlib.suppress(OSError):
                        fd = os.pidfd_open(pid)
                        if pgid_of(pid) == ident.pid:
                            fds[pid] = fd
                        else:
                            os.close(fd)
                if not _present(leader):
                    break  # the group number may be free again: trust no member read above
                for pid, fd in fds.items():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        signal.pidfd_send_signal(fd, sig)
                        sent.add(pid)
            finally:
                for fd in fds.values():
                    os.close(fd)
            if not fds:
                break
    finally:
        os.close(leader)
    return bool(sent)
