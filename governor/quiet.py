"""How the dispatcher waits when only events can move the queue, and what it watches meanwhile.

A queue whose runs wait only for events (``max_parallel`` or a group's limit is full) moves
when a run ends, a run is submitted or stopped, or the configuration changes. Submissions,
stops and a supervisor's own exit poke the dispatcher's FIFO. What pokes nobody:

* a supervisor killed with SIGKILL: the dispatcher holds a **pidfd** of every lease's
  supervisor and sleeps on them with the FIFO, so that end is an event too (no polling);
* ``backprop.toml`` edited (``max_parallel`` raised), or a queue changed by a command that
  died before its poke: a :class:`Mark` (a few ``stat`` calls) taken every
  :data:`MARK_POLL_S`, and a full round when it moved.

A full round also runs once every :data:`governor.dispatcher.DEEP_POLL_S` whatever happened.
Before, a full round ran every 5 s: ~50 ms of CPU each whatever the queue's length (the
configuration parsed, the governor's state under its lock, the host probed), 1 % of a core
for a queue that cannot move. On this machine any wake-up of a sleeping Python process costs
~10 ms of CPU, so fewer wake-ups is what counts, not cheaper ones.

No mark can be taken (the old 5 s round, as before) while a lease's supervisor is not known
yet or lives on an engine's host, or the governor's state is shared with other users (their
leases expire by time); without pidfds (no ``pidfd_open``) the mark is taken every 5 s.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from governor.reservations import Lease
from governor.store import GovernorStore
from runner import identity
from runner.config import find_config
from runner.registry import Registry
from runner.tickets import Queue

# The mark is looked at this often while pidfds watch the supervisors (5 s without them).
MARK_POLL_S = 15.0
# More leases than this are polled instead (select() takes descriptors below 1,024 only).
MAX_WATCHED = 256

Stat = tuple[int, int, int] | None


def _stat(path: Path | None) -> Stat:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class Mark:
    """What a round's inputs looked like (compare two with ``==``)."""

    queue_dir: Stat
    state: Stat
    config_path: str
    config: Stat


def take(registry: Registry, store: GovernorStore, leases: Iterable[Lease]) -> Mark | None:
    """The mark of the inputs now, or ``None`` when only a full round can tell (see above)."""
    if store.shared_dir is not None:
        return None
    for lease in leases:
        if lease.backend != "local" or not identity.matches(lease.supervisor):
            return None
    config = find_config(registry.root, registry.root)
    return Mark(
        queue_dir=_stat(Queue(registry.root).dir),
        state=_stat(store.state_path),
        config_path=str(config or ""),
        config=_stat(config),
    )


def watch(leases: Iterable[Lease]) -> list[int] | None:
    """A pidfd per lease's supervisor (readable once it has ended).

    ``None`` if one of them cannot be had (then the caller polls). Close them with
    :func:`close`.
    """
    leases = list(leases)
    if len(leases) > MAX_WATCHED:
        return None
    fds: list[int] = []
    for lease in leases:
        ident = lease.supervisor
        try:
            if ident is None:
                raise ProcessLookupError
            fd = os.pidfd_open(ident.pid)
        except (OSError, AttributeError):
            close(fds)
            return None
        fds.append(fd)
        # Checked once the pidfd is open: from now on it refers to this very process.
        if not identity.matches(ident):
            close(fds)
            return None
    return fds


def close(fds: list[int]) -> None:
    """Close pidfds from :func:`watch`."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()
