"""Claiming run ids without a lock that must hold across hosts.

A run id is claimed by creating its folder: ``mkdir`` either creates the directory or fails
with ``EEXIST``, atomically, on a local disk and on every shared file system a cluster's
registry lives on (on NFS the server creates it; Lustre, GPFS, BeeGFS, CIFS and sshfs do the
same). Two hosts can therefore never both own one id, whatever their clocks, caches or lock
daemons do. Nothing else is trusted: ``next_id`` is only a hint of where to start looking,
replaced atomically (a unique temporary name per host and process, then ``rename``) so a
reader never sees half of one, and a stale or lower hint costs a few failed ``mkdir`` calls.

On one machine the registry's ``flock`` still keeps a sweep's ids consecutive (see
:meth:`runner.registry.Registry.allocate_ids`); on a network file system that lock is not
taken at all (a mount with ``nolock`` makes it local to each host; a dead lock daemon makes it
hang or fail), and hosts racing for the same numbers simply skip past each other.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

# After this many taken ids in a row, look at the folder for the highest id (the hint is far
# behind, or another host is allocating a sweep right there).
RESCAN_AFTER = 8


def read_hint(path: Path) -> int | None:
    """The next id to try, as some allocator last wrote it (``None``: none or unreadable)."""
    try:
        value = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return value if value > 0 else None


def write_hint(path: Path, value: int) -> None:
    """Replace the hint atomically; never move it back below what another host wrote."""
    current = read_hint(path)
    if current is not None and current >= value:
        return
    tmp = path.with_name(
        f".tmp-{path.name}-{os.uname().nodename}-{os.getpid()}-{os.urandom(4).hex()}"
    )
    try:
        tmp.write_text(f"{value}\n")
        os.replace(tmp, path)
    except OSError:  # a hint is never worth failing a submission for
        with contextlib.suppress(OSError):
            tmp.unlink()


def claim_ids(
    runs_dir: Path,
    count: int,
    *,
    hint: Path,
    width: int,
    highest: Callable[[], int],
    mode: int = 0o700,
) -> list[str]:
    """Create ``count`` fresh run folders under ``runs_dir``; return their ids, in order.

    Args:
        runs_dir: the registry's ``runs/``.
        count: how many ids.
        hint: the ``next_id`` file.
        width: the zero-padded width of an id.
        highest: the highest id present now (a listing of ``runs_dir``).
        mode: the new folders' permissions.
    """
    n = read_hint(hint) or highest() + 1
    out: list[str] = []
    taken = 0
    while len(out) < count:
        run_id = f"{n:0{width}d}"
        try:
            os.mkdir(runs_dir / run_id, mode)
        except FileExistsError:
            taken += 1
            n = max(n + 1, highest() + 1) if taken % RESCAN_AFTER == 0 else n + 1
            continue
        out.append(run_id)
        taken = 0
        n += 1
    write_hint(hint, n)
    return out
