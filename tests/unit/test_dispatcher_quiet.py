"""The dispatcher's quiet check (governor.quiet): what moves its mark, when it cannot take one."""

from __future__ import annotations

import os
import time
from pathlib import Path

from governor import quiet
from governor.reservations import Lease
from governor.store import GovernorStore
from runner import identity
from runner.model import ProcessIdentity
from runner.registry import Registry
from runner.tickets import Entry, Queue

OLD = (1_000_000_000, 1_000_000_000)  # an mtime long past: the next change differs from it


def setup(tmp_path: Path) -> tuple[Registry, GovernorStore, Queue]:
    reg = Registry(tmp_path)
    queue = Queue(tmp_path)
    queue.ensure()
    store = GovernorStore(tmp_path)
    store.dir.mkdir(parents=True, exist_ok=True)
    store.state_path.write_text("{}")
    for path in (queue.dir, store.state_path):
        os.utime(path, OLD)
    return reg, store, queue


def me() -> ProcessIdentity:
    ident = identity.identity_of(os.getpid())
    assert ident is not None
    return ident


def test_the_mark_holds_while_nothing_moves(tmp_path: Path) -> None:
    reg, store, _ = setup(tmp_path)
    leases = [Lease(run_id="r1", supervisor=me())]
    first = quiet.take(reg, store, leases)
    assert first is not None
    assert quiet.take(reg, store, leases) == first


def test_a_new_entry_in_the_queue_moves_it(tmp_path: Path) -> None:
    reg, store, queue = setup(tmp_path)
    before = quiet.take(reg, store, [])
    queue.add(Entry(100, time.time_ns(), "r2", 1), sync=False)
    assert quiet.take(reg, store, []) != before


def test_the_governor_state_written_by_another_process_moves_it(tmp_path: Path) -> None:
    reg, store, _ = setup(tmp_path)
    before = quiet.take(reg, store, [])
    store.state_path.write_text('{"leases": {}}')
    assert quiet.take(reg, store, []) != before


def test_a_configuration_appearing_or_edited_moves_it(tmp_path: Path) -> None:
    reg, store, _ = setup(tmp_path)
    before = quiet.take(reg, store, [])
    config = tmp_path / "backprop.toml"
    config.write_text("[governor]\nmax_parallel = 1\n")
    os.utime(config, OLD)
    found = quiet.take(reg, store, [])
    assert found != before
    config.write_text("[governor]\nmax_parallel = 16\n")
    assert quiet.take(reg, store, []) != found


def test_no_mark_when_a_supervisor_is_gone_unknown_or_remote(tmp_path: Path) -> None:
    reg, store, _ = setup(tmp_path)
    alive = Lease(run_id="r1", supervisor=me())
    gone = Lease(
        run_id="r2",
        supervisor=ProcessIdentity(os.getpid(), me().start_ticks + 1, identity.boot_id()),
    )
    assert quiet.take(reg, store, [alive]) is not None
    assert quiet.take(reg, store, [alive, gone]) is None
    assert quiet.take(reg, store, [Lease(run_id="r3")]) is None  # not started: not known yet
    remote = Lease(run_id="r4", supervisor=me(), backend="slurm")
    assert quiet.take(reg, store, [remote]) is None


def test_no_mark_on_a_governor_shared_with_other_users(tmp_path: Path) -> None:
    reg, _, _ = setup(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    store = GovernorStore(tmp_path, shared)
    assert quiet.take(reg, store, []) is None
