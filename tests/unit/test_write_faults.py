"""Write errors, lost supervisors and run markers, without a supervisor process.

Writes fail for real here: ``RLIMIT_FSIZE`` makes the kernel refuse to grow a file past a
size (``EFBIG``), part-way through a write as a full disk does. The mount-based faults (a full
tmpfs, a read-only registry) are in ``tests/e2e/test_faults.py``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.durable import JsonlAppender, read_jsonl
from runner.metrics.ingest import Ingestor
from runner.metrics.reingest import continue_point, reingest
from runner.model import ProcessIdentity, RunSpec, RunState, Status
from runner.registry import EVENTS, METRICS, OUTPUT, STATE, Registry
from runner.supervisor import members, runcgroup
from runner.supervisor.adopt import finalize, takeover
from runner.supervisor.exits import classify_unknown, with_write_note
from runner.supervisor.recordkeeper import RESERVE, RecordKeeper, describe_write_error


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files written by this process cannot grow past ``limit`` bytes (EFBIG)."""
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make_spec(tmp_path: Path, run_id: str = "000001") -> RunSpec:
    return RunSpec(
        id=run_id, name="t", command=("python", "x.py"), cwd=str(tmp_path), created_at=1.0
    )


def make_registry(tmp_path: Path) -> tuple[Registry, Path, RunSpec]:
    registry = Registry(tmp_path / "home", adopt=False)
    spec = make_spec(tmp_path)
    registry.ensure()
    run_dir = registry.create(spec)
    return registry, run_dir, spec


# --- durable appends --------------------------------------------------------------------


def test_a_write_that_fails_part_way_leaves_no_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    out = JsonlAppender(path)
    out.append([{"s": 1}])
    size = path.stat().st_size
    with file_size_limit(size + 10), pytest.raises(OSError) as info:
        out.append([{"s": 2, "pad": "x" * 100}])
    assert info.value.errno == errno.EFBIG
    assert path.stat().st_size == size  # cut back: a retry never extends a partial line
    out.append([{"s": 3}])
    out.close()
    assert read_jsonl(path)[0] == [{"s": 1}, {"s": 3}]


# --- the record keeper ----------------------------------------------------------------------


def test_records_wait_in_memory_while_writes_fail_and_land_in_order(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    clock = Clock()
    keeper = RecordKeeper(run_dir, clock=clock)
    assert keeper.make_reserve() and (run_dir / RESERVE).stat().st_size > 0
    with file_size_limit(8):
        assert not keeper.put_event({"event": "a"})
        assert not keeper.put_state({"status": "running"})
        assert not keeper.put_state({"status": "completed"})  # the newest state wins
        assert keeper.error is not None and keeper.error.startswith("file too large")
        assert not (run_dir / STATE).exists()
        before = keeper.failures
        assert not keeper.flush()  # not due yet: no write attempted
        assert keeper.failures == before
    assert not keeper.put_event({"event": "b"})  # writable, but it waits for the schedule
    clock.t += 100
    assert keeper.flush() and keeper.error is None
    assert read_jsonl(run_dir / EVENTS)[0] == [{"event": "a"}, {"event": "b"}]
    assert read_jsonl(run_dir / STATE)[0] == [{"status": "completed"}]
    assert keeper.first_error is not None
    keeper.close()
    assert not (run_dir / RESERVE).exists()


def test_drain_waits_until_the_records_are_written(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    clock = Clock()
    keeper = RecordKeeper(run_dir, clock=clock)
    waits: list[float] = []

    def wait(s: float) -> None:
        waits.append(s)
        clock.t += s
        if len(waits) == 3:  # writable again after three pauses
            resource.setrlimit(resource.RLIMIT_FSIZE, old)

    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8, old[1]))
        keeper.put_state({"status": "completed"})
        delayed = keeper.drain(wait)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)
    assert delayed is not None and delayed.startswith("file too large: state.json")
    assert waits == sorted(waits) and waits[-1] > waits[0]  # backing off
    assert read_jsonl(run_dir / STATE)[0] == [{"status": "completed"}]


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        (errno.ENOSPC, "disk full"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EROFS, "registry read-only"),
        (errno.EIO, "I/O error"),
        (errno.EINVAL, "write error"),
    ],
)
def test_write_errors_are_named(code: int, cause: str) -> None:
    text = describe_write_error(OSError(code, os.strerror(code)), "state.json")
    assert text == f"{cause}: state.json ({os.strerror(code)})"


def test_final_reason_names_the_trouble_and_the_dropped_lines() -> None:
    assert with_write_note("exit 0", None, 0) == "exit 0"
    note = with_write_note("exit 0", "disk full: metrics.jsonl (x)", 7)
    assert note.startswith("exit 0; disk full: metrics.jsonl (x); 7 metric lines dropped")


# --- metric lines: held, counted, continued ---------------------------------------------


def test_metric_lines_that_cannot_be_written_are_counted_as_dropped(tmp_path: Path) -> None:
    registry, run_dir, spec = make_registry(tmp_path)
    (run_dir / OUTPUT).write_text("step 1 loss: 0.5\nstep 2 loss: 0.4\n")
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)
    with file_size_limit(1):
        ing.poll(final=True)
        assert ing.settle() == 2  # the attempt ended while nothing could be written
    assert ing.write_error() is not None
    ing.close()
    # They are still in output.log: reingest reads them on, once, from where capture stopped.
    assert reingest(registry, "000001")["points"] == 2
    assert reingest(registry, "000001")["points"] == 0
    steps = [r["s"] for r in read_jsonl(run_dir / METRICS)[0] if "v" in r]
    assert steps == [1, 2]


def test_ingestion_continues_exactly_where_the_last_batch_ended(tmp_path: Path) -> None:
    _, run_dir, spec = make_registry(tmp_path)
    (run_dir / OUTPUT).write_text("step 1 loss: 0.5\nstep 2 loss: 0.4\nstep 3 lo")
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)
    ing.poll()
    ing.close()  # the supervisor dies here, with "step 3" half written
    resume_at, skip = continue_point(run_dir, 1)
    assert resume_at == (len("step 1 loss: 0.5\nstep 2 loss: 0.4\n"), 0) and skip is None
    with open(run_dir / OUTPUT, "a") as f:
        f.write("ss: 0.3\nstep 4 loss: 0.2\n")
    new = Ingestor(run_dir, spec, 1, oom_kills=lambda: None, resume_at=resume_at)
    new.poll(final=True)
    new.close()
    steps = [r["s"] for r in read_jsonl(run_dir / METRICS)[0] if "v" in r]
    assert steps == [1, 2, 3, 4]


def test_without_offsets_records_known_steps_are_skipped(tmp_path: Path) -> None:
    _, run_dir, spec = make_registry(tmp_path)
    (run_dir / OUTPUT).write_text("step 1 loss: 0.5\nstep 2 loss: 0.4\nstep 3 loss: 0.3\n")
    (run_dir / METRICS).write_text('{"a":1,"s":1,"t":1.0,"v":{"loss":0.5}}\n')
    resume_at, skip = continue_point(run_dir, 1)  # a history from before offsets records
    assert resume_at == (0, 0) and skip == 1
    ing = Ingestor(
        run_dir, spec, 1, oom_kills=lambda: None, resume_at=resume_at, skip_through_step=skip
    )
    ing.poll(final=True)
    ing.close()
    assert [r["s"] for r in read_jsonl(run_dir / METRICS)[0] if "v" in r] == [1, 2, 3]


# --- lost runs --------------------------------------------------------------------------


def test_unknown_exit_codes_are_never_called_completed() -> None:
    assert classify_unknown(None, None) == (
        Status.LOST,
        "trainer ended under a re-adopted supervisor; exit code unknown",
    )
    assert classify_unknown(None, "out of memory")[0] is Status.FAILED
    assert classify_unknown("stop", None)[0] is Status.STOPPED
    assert classify_unknown("kill", None)[1].startswith("stopped (forced)")
    assert classify_unknown("timeout", None)[0] is Status.TIMEBOXED


# --- run markers --------------------------------------------------------------------------


def test_a_forged_cgroup_record_is_never_used(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "000001"
    run_dir.mkdir(parents=True)
    mount = runcgroup.cgroup2_mount()
    if mount is None:
        pytest.skip("no cgroup v2 mounted here")
    for forged in (
        str(mount),
        str(mount / "system.slice"),
        "/etc",
        str(mount / "backprop-x-000001-1"),
    ):
        (run_dir / runcgroup.CGROUP_FILE).write_text(forged)
        assert runcgroup.recorded(run_dir, "000001") is None, forged
    assert members.run_cgroup("000001", tmp_path) is None


def test_after_a_reboot_a_run_is_read_to_its_end_and_recorded_lost(tmp_path: Path) -> None:
    registry, run_dir, _ = make_registry(tmp_path)
    before = ProcessIdentity(4242, 1234, "another-boot")
    state = RunState(
        run_id="000001",
        attempt=1,
        status=Status.RUNNING,
        updated_at=time.time() - 900,
        supervisor=before,
        trainer=ProcessIdentity(4243, 1235, "another-boot"),
        started_at=time.time() - 1000,
    )
    (run_dir / STATE).write_text(__import__("json").dumps(state.to_json()))
    (run_dir / OUTPUT).write_text("step 1 loss: 0.5\nstep 2 loss: 0.4\n")
    os.utime(run_dir / OUTPUT, (time.time() - 800, time.time() - 800))
    assert registry.load("000001").reason == "host rebooted"
    assert takeover(registry, "000001", state) == "finalize"
    finalize(registry, "000001", state)
    view = registry.load("000001")
    assert view.status is Status.LOST and view.reason == "host rebooted; exit code unknown"
    assert abs(view.to_json()["ended_at"] - (time.time() - 800)) < 5
    assert [r["s"] for r in read_jsonl(run_dir / METRICS)[0] if "v" in r] == [1, 2]
    assert takeover(registry, "000001", registry.read_state("000001")) is None
