"""Process-tree walking through ``/proc`` (no psutil, so the supervisor stays small)."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Any

# Sessions whose processes are not part of any run's tree: notification hooks started by the
# supervisor (runner.notify), which must outlive the run's clean-up. A session id is its
# leader's pid; a recycled pid that starts a new session inside the run is not plausible.
_spared_sessions: set[int] = set()


def spare_session(sid: int) -> None:
    """Leave the processes of session ``sid`` out of :func:`descendants` (and so of kills)."""
    _spared_sessions.add(sid)


def _parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        close = raw.rfind(b")")
        fields = raw[close + 2 :].split()
        if len(fields) > 1 and fields[0] not in (b"Z", b"X"):
            if _spared_sessions and len(fields) > 3 and int(fields[3]) in _spared_sessions:
                continue
            parents[int(name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Live (non-zombie) descendants of ``pid``, parents before children."""
    parents = _parent_map()
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    out: list[int] = []
    stack = list(children.get(pid, []))
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def signal_tree(root: int, sig: int, *, group: int | None = None) -> int:
    """Send ``sig`` to the process group ``group`` (if given) and every descendant of ``root``.

    Only called by a supervisor on its own subtree: as a child subreaper it is the ancestor of
    every process the run started, and a pid it has not reaped cannot be recycled.

    Returns:
        How many processes were signalled individually.
    """
    if group is not None and group > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    count = 0
    for pid in descendants(root):
        if pid <= 1:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            count += 1
    return count


def _libc_function(name: str) -> Any | None:
    """A function of the C library this process runs on (``None`` where it has none)."""
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        return getattr(_libc, name)
    except (OSError, AttributeError):  # pragma: no cover - non-Linux or not glibc
        return None


_libc: Any = None


def set_child_subreaper() -> bool:
    """Make this process adopt orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    prctl = _libc_function("prctl")
    return prctl is not None and int(prctl(36, 1, 0, 0, 0)) == 0


def trim_heap() -> bool:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``).

    Start-up and bursts of output leave freed memory inside the heap that still counts as
    resident; a long-lived supervisor returns it now and then. False where there is none.
    """
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


def reset_signals() -> None:
    """Give a child default signal dispositions and an empty mask (runs between fork and exec).

    A launcher started with ``&`` from a script has SIGINT ignored; children inherit ignored
    signals across exec, and Python then never raises KeyboardInterrupt. Reset them all.
    """
    for sig in range(1, signal.NSIG):
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
