"""A remote run's status from its heartbeat and the engine's view (issue 15, pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import remote_status
from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN, BackendStatus
from runner.backends.intent import Intent
from runner.backends.where import read_engine_view
from runner.heartbeat import Heartbeat, HeartbeatWriter, read_heartbeat
from runner.model import ProcessIdentity, RunState, Status
from runner.registry import Registry
from runner.tickets import ADMITTED, QUEUED, Ticket

NOW = 10_000.0


def _state(status: Status = Status.RUNNING, updated: float = NOW - 100) -> RunState:
    return RunState(
        run_id="000001",
        attempt=1,
        status=status,
        updated_at=updated,
        supervisor=ProcessIdentity(pid=4242, start_ticks=7, boot_id="node-boot"),
        reason="running",
    )


def _beat(age: float, every: float = 5.0, attempt: int = 1) -> Heartbeat:
    return Heartbeat(
        host="node7", pid=4242, boot_id="node-boot", attempt=attempt, every_s=every, at=NOW - age
    )


class Engine:
    """Counts how often the engine is asked."""

    def __init__(self, view: BackendStatus | None) -> None:
        self.view = view
        self.calls = 0

    def __call__(self) -> BackendStatus | None:
        self.calls += 1
        return self.view


def test_a_fresh_heartbeat_keeps_the_record_without_asking_the_engine() -> None:
    engine = Engine(BackendStatus(state=ENDED))
    status, reason = remote_status.reconcile_remote(
        _state(), _beat(age=14), now=NOW, backend="slurm", engine=engine
    )
    assert (status, reason) == (Status.RUNNING, "running")
    assert engine.calls == 0


def test_a_stale_heartbeat_with_the_job_ended_is_lost_at_once() -> None:
    engine = Engine(BackendStatus(state=ENDED, reason="NODE_FAIL"))
    status, reason = remote_status.reconcile_remote(
        _state(), _beat(age=16), now=NOW, backend="slurm", engine=engine
    )
    assert status is Status.LOST
    assert "no heartbeat from node7 for 16s" in reason and "NODE_FAIL" in reason
    assert engine.calls == 1


def test_a_silent_run_the_engine_says_runs_is_never_retried_beside_itself() -> None:
    # A node cut off from the storage trains on: lost (and retried) it would run twice.
    engine = Engine(BackendStatus(state=RUNNING, reason="node7"))
    for age in (30, 61, 3600):
        status, reason = remote_status.reconcile_remote(
            _state(updated=NOW - 10_000), _beat(age=age), now=NOW, backend="slurm", engine=engine
        )
        assert status is Status.RUNNING, reason
        assert f"no heartbeat from node7 for {age}s" in reason and "slurm says running" in reason


@pytest.mark.parametrize("view", [BackendStatus(state=UNKNOWN, reason="no squeue"), None])
def test_a_silent_run_the_engine_cannot_speak_for_is_lost_once_hung(
    view: BackendStatus | None,
) -> None:
    stale = remote_status.reconcile_remote(
        _state(), _beat(age=30), now=NOW, backend="ray", engine=Engine(view)
    )
    assert stale[0] is Status.RUNNING and "no heartbeat from node7 for 30s" in stale[1]
    hung = remote_status.reconcile_remote(
        _state(), _beat(age=61), now=NOW, backend="ray", engine=Engine(view)
    )
    assert hung[0] is Status.LOST and "supervisor silent" in hung[1]


def test_a_requeued_job_reads_queued_with_the_engines_reason() -> None:
    engine = Engine(BackendStatus(state=PENDING, reason="BeginTime"))
    status, reason = remote_status.reconcile_remote(
        _state(), _beat(age=20), now=NOW, backend="slurm", engine=engine
    )
    assert (status, reason) == (Status.QUEUED, "requeued by slurm: BeginTime")


def test_the_writers_interval_and_attempt_decide() -> None:
    # A fast writer (0.5 s) is stale after 1.5 s; a beat of an earlier attempt is no beat.
    fast = remote_status.reconcile_remote(
        _state(), _beat(age=2, every=0.5), now=NOW, backend="slurm", engine=Engine(None)
    )
    assert "no heartbeat" in fast[1]
    old = remote_status.reconcile_remote(
        _state(updated=NOW - 1000),
        _beat(age=1, attempt=0),
        now=NOW,
        backend="slurm",
        engine=Engine(None),
    )
    assert old[0] is Status.LOST


def test_finished_records_are_the_truth() -> None:
    engine = Engine(BackendStatus(state=RUNNING))
    done = _state(Status.COMPLETED, updated=0)
    assert remote_status.reconcile_remote(done, None, now=NOW, backend="slurm", engine=engine)[
        0
    ] is (Status.COMPLETED)
    assert engine.calls == 0


def test_an_attempt_not_yet_supervised_follows_the_engine() -> None:
    ticket = Ticket(run_id="000001", attempt=2, kind=ADMITTED)
    intent = Intent(backend="slurm", attempt=2, key="bp-000001-2", at=NOW, handle="77")
    words = remote_status.remote_ticket_status
    pending = Engine(BackendStatus(state=PENDING, reason="Resources"))
    assert words(ticket, intent, backend="slurm", engine=pending) == (
        Status.QUEUED,
        "slurm: Resources (job 77)",
    )
    running = Engine(BackendStatus(state=RUNNING, host="node3"))
    status, reason = words(ticket, intent, backend="slurm", engine=running)  # type: ignore[misc]
    assert status is Status.STARTING and "node3" in reason
    ended = Engine(BackendStatus(state=ENDED, reason="CANCELLED"))
    assert words(ticket, intent, backend="slurm", engine=ended)[0] is Status.LOST  # type: ignore[index]
    unknown = words(ticket, intent, backend="slurm", engine=Engine(None))
    assert unknown is not None and unknown[0] is Status.QUEUED and "job 77" in unknown[1]
    # Not handed over yet (the hand-off crashed): queued, never lost; the engine is not asked.
    asked = Engine(BackendStatus(state=ENDED))
    assert words(ticket, None, backend="slurm", engine=asked)[0] is Status.QUEUED  # type: ignore[index]
    assert asked.calls == 0
    assert (
        words(
            Ticket(run_id="000001", attempt=2, kind=QUEUED), intent, backend="slurm", engine=asked
        )
        is None
    )


def test_this_host_needs_the_same_boot_and_name() -> None:
    st = _state()
    beat = _beat(age=1)
    assert remote_status.on_this_host(st, beat, host="node7", boot="node-boot")
    assert not remote_status.on_this_host(st, beat, host="login1", boot="node-boot")  # container
    assert not remote_status.on_this_host(st, beat, host="node7", boot="other-boot")


def test_the_engine_is_asked_once_per_interval_by_all_listers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(tmp_path)
    reg.ensure()
    reg.allocate_id()
    calls: list[str] = []

    class Fake:
        def describe(self, registry: Registry, run_id: str) -> BackendStatus:
            calls.append(run_id)
            assert remote_status.engine_view(registry, run_id, "slurm") is None  # no recursion
            return BackendStatus(state=PENDING, reason="Priority", handle="9")

    monkeypatch.setattr("runner.backends.get_backend", lambda name: Fake())
    first = remote_status.engine_view(reg, "000001", "slurm", now=NOW)
    again = remote_status.engine_view(reg, "000001", "slurm", now=NOW + 5)
    assert first == again == BackendStatus(state=PENDING, reason="Priority", handle="9")
    assert calls == ["000001"]  # the second lister read engine.json
    recorded = read_engine_view(reg, "000001")  # what `show` and the tree display
    assert recorded == (first, NOW)
    remote_status.engine_view(reg, "000001", "slurm", now=NOW + remote_status.DESCRIBE_EVERY_S)
    assert calls == ["000001", "000001"]


def test_an_engine_that_fails_reads_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = Registry(tmp_path)
    reg.ensure()
    reg.allocate_id()

    def boom(name: str) -> object:
        raise ValueError("backend 'ray' is not available here: no module named ray")

    monkeypatch.setattr("runner.backends.get_backend", boom)
    view = remote_status.engine_view(reg, "000001", "ray", now=NOW)
    assert view is not None and view.state == UNKNOWN and "not available" in view.reason


def test_heartbeat_written_once_then_touched(tmp_path: Path) -> None:
    w = HeartbeatWriter(tmp_path, attempt=3, boot_id="b", every_s=0.5)
    assert read_heartbeat(tmp_path) is None
    w.beat(100.0)
    hb = read_heartbeat(tmp_path)
    assert hb is not None and (hb.attempt, hb.every_s, hb.boot_id) == (3, 0.5, "b")
    assert hb.host and hb.pid > 0
    import os

    os.utime(tmp_path / "heartbeat", (1.0, 1.0))
    w.beat(100.2)  # not due: nothing touched
    assert read_heartbeat(tmp_path).at == 1.0  # type: ignore[union-attr]
    w.beat(100.6)
    assert read_heartbeat(tmp_path).at > 1.0  # type: ignore[union-attr]
    (tmp_path / "heartbeat").unlink()
    w.beat(101.2)  # removed under the writer: written whole again
    w.beat(101.8)
    assert read_heartbeat(tmp_path) is not None and w.error is None


def test_a_heartbeat_that_cannot_be_written_is_survived(tmp_path: Path) -> None:
    w = HeartbeatWriter(tmp_path / "gone", attempt=1, boot_id="b", every_s=1)
    w.beat(1.0)
    assert w.error is not None and read_heartbeat(tmp_path / "gone") is None
    (tmp_path / "heartbeat").write_text("{not json")
    assert read_heartbeat(tmp_path) is None
