"""The dispatcher's cheap look between full rounds: has anything a round reads moved?

A queue whose runs wait only for events (``max_parallel`` or a group's limit is full: a run's
end, a submission, a stop all poke the dispatcher) is still looked at every
:data:`governor.dispatcher.SAFETY_POLL_S` without one, for the supervisor killed with SIGKILL
that pokes nobody. A full round costs ~50 ms of CPU whatever the queue's length (the
configuration parsed, the governor's state under its lock, the host probed); done every 5 s
that alone was 1 % of a core for a queue that cannot move. A :class:`Mark` costs a few
``stat`` calls and one ``/proc`` read per lease, and a full round follows only when it
changed:

* the queue folder's mtime (an entry added, removed or moved: a submission whose poke was
  lost, a cancel, a priority change),
* the governor's state file (a lease given or ended by another process, e.g. ``kick``),
* the configuration file that applies (``max_parallel`` raised in ``backprop.toml``),
* and every lease's supervisor is still the process it was (a vanished one frees a place).

No mark can be taken (a full round every time, as before) while a lease's supervisor is not
known yet or lives on an engine's host, or the governor's state is shared with other users
(their leases expire by time).
"""

from __future__ import annotations

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
