"""Finding and ending every process of a run, with or without its supervisor.

While its supervisor lives, a run's processes are its descendants (the supervisor is a child
subreaper). Once the supervisor is gone, a grandchild that forked twice and called
``setsid`` is in no process group of the run and is parented to init. What every process of
a run keeps is its environment: the supervisor gives the trainer ``BACKPROP_RUN_ID`` and
``BACKPROP_HOME``, and children inherit them. Those two values are the run's marker.

Where the run has a cgroup (:mod:`runner.supervisor.runcgroup`), its processes are members too, even
one that cleared its environment, and ``cgroup.kill`` ends them all at once.

A process counts as a member only if it runs under our user and its initial environment
(``/proc/PID/environ``) carries the marker or it is in the run's cgroup; it is signalled
through a pidfd opened before the check, so a pid reused meanwhile never receives the signal.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from runner import envnames, identity
from runner.model import ProcessIdentity
from runner.supervisor import runcgroup

MAX_ENVIRON = 1024 * 1024


def _environ(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read(MAX_ENVIRON)
    except OSError:
        return None


def _same_user(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}").st_uid == os.getuid()
    except OSError:
        return False


_HOME_PREFIX = f"{envnames.HOME}=".encode()


def _marker(run_id: str, root: Path | str) -> tuple[bytes, bytes]:
    return (f"{envnames.RUN_ID}={run_id}".encode(), os.path.realpath(root).encode())


def belongs(pid: int, run_id: str, root: Path | str) -> bool:
    """Whether ``pid`` is a process of run ``run_id`` of the registry at ``root``."""
    if pid <= 1 or pid == os.getpid() or not _same_user(pid):
        return False
    raw = _environ(pid)
    if not raw:
        return False
    run_marker, real_root = _marker(run_id, root)
    has_run = has_home = False
    for item in raw.split(b"\0"):
        if item == run_marker:
            has_run = True
        elif item.startswith(_HOME_PREFIX):
            value = item[len(_HOME_PREFIX) :]
            has_home = os.path.realpath(value) == real_root
    return has_run and has_home


def run_cgroup(run_id: str, root: Path | str) -> Path | None:
    """The run's cgroup, if it has one."""
    return runcgroup.recorded(Path(root) / "runs" / run_id, run_id)


def is_member(pid: int, run_id: str, root: Path | str, cgroup: Path | None) -> bool:
    """Whether ``pid`` is ours and carries the run's marker or is in the run's cgroup."""
    ours = pid > 1 and pid != os.getpid() and _same_user(pid)
    if ours and cgroup is not None and runcgroup.contains(cgroup, pid):
        return True
    return belongs(pid, run_id, root)


def find_members(run_id: str, root: Path | str) -> list[ProcessIdentity]:
    """Every live process of the run (oldest first), identified by pid + start time."""
    cgroup = run_cgroup(run_id, root)
    found = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me or identity.is_zombie(pid) or not is_member(pid, run_id, root, cgroup):
            continue
        ident = identity.identity_of(pid)
        if ident is not None:
            found.append(ident)
    found.sort(key=lambda i: i.start_ticks)
    return found


def find_trainer(run_id: str, root: Path | str) -> ProcessIdentity | None:
    """The run's trainer found by its marker: the oldest member that leads its own group.

    For a supervisor that died after starting the trainer but before recording it.
    """
    for ident in find_members(run_id, root):
        try:
            if os.getpgid(ident.pid) == ident.pid:
                return ident
        except OSError:
            continue
    return None


def signal_member(ident: ProcessIdentity, sig: int, run_id: str, root: Path | str) -> bool:
    """Send ``sig`` to ``ident`` only if it is still that process and still the run's."""
    if not identity.is_signallable(ident) or ident.boot_id != identity.boot_id():
        return False
    try:
        fd = os.pidfd_open(ident.pid)
    except OSError:
        return False
    try:
        if identity.start_ticks(ident.pid) != ident.start_ticks:
            return False
        if not is_member(ident.pid, run_id, root, run_cgroup(run_id, root)):
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    finally:
        os.close(fd)


def signal_members(run_id: str, root: Path | str, sig: int) -> int:
    """Signal every process of the run; return how many were signalled."""
    return sum(signal_member(i, sig, run_id, root) for i in find_members(run_id, root))


@dataclass
class Ending:
    """What :func:`end_members` did."""

    ended: list[int] = field(default_factory=list)
    survivors: list[int] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the user, naming what could not be ended."""
        text = f"ended {len(self.ended)} process(es)"
        if self.survivors:
            pids = ", ".join(str(p) for p in self.survivors[:10])
            text += f"; could not end pid {pids}"
        return text


def _alive(idents: Iterable[ProcessIdentity]) -> list[ProcessIdentity]:
    return [i for i in idents if identity.matches(i)]


def end_members(
    run_id: str,
    root: Path | str,
    *,
    graceful: bool,
    grace_s: float = 5.0,
    kill_wait_s: float = 3.0,
) -> Ending:
    """End every process of the run: SIGINT/SIGTERM first when ``graceful``, then SIGKILL.

    Returns:
        Which pids ended and which survived even SIGKILL (another user's, or unkillable).
    """
    members = find_members(run_id, root)
    result = Ending()
    if not members:
        runcgroup.remove(run_cgroup(run_id, root))
        return result
    if graceful:
        for sig in (signal.SIGINT, signal.SIGTERM):
            for ident in _alive(members):
                signal_member(ident, sig, run_id, root)
                signal_member(ident, signal.SIGCONT, run_id, root)
            _wait_gone(members, grace_s / 2)
    # Members may have started more members meanwhile: look again before the kill.
    seen = {i.pid: i for i in members}
    for ident in find_members(run_id, root):
        seen.setdefault(ident.pid, ident)
    every = list(seen.values())
    for ident in _alive(every):
        signal_member(ident, signal.SIGKILL, run_id, root)
    cgroup = run_cgroup(run_id, root)
    if cgroup is not None:
        runcgroup.clear(cgroup, kill_wait_s)  # catches one forked since the scan
    _wait_gone(every, kill_wait_s)
    for ident in every:
        (result.survivors if identity.matches(ident) else result.ended).append(ident.pid)
    return result


def _wait_gone(idents: list[ProcessIdentity], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(idents) and time.monotonic() < deadline:
        time.sleep(0.02)


def stop_unsupervised(
    trainer: ProcessIdentity | None,
    run_id: str,
    root: Path | str,
    *,
    force: bool,
    grace_s: float,
) -> Ending:
    """Stop a run that has no supervisor: its trainer's group, then every process of the run.

    Graceful: SIGINT to the trainer's group (the script may save a checkpoint) and up to
    ``grace_s`` for it to end; then whatever is left of the run gets SIGKILL.
    """
    trainer_alive = trainer is not None and identity.matches(trainer)
    if trainer_alive and not force:
        identity.signal_group(trainer, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        while identity.matches(trainer) and time.monotonic() < deadline:
            time.sleep(0.05)
    if trainer is not None and identity.matches(trainer):
        identity.signal_group(trainer, signal.SIGKILL)
        _wait_gone([trainer], 3.0)
    result = end_members(run_id, root, graceful=False)
    if trainer_alive and trainer is not None and trainer.pid not in result.ended:
        target = result.survivors if identity.matches(trainer) else result.ended
        if trainer.pid not in target:
            target.append(trainer.pid)
    return result
