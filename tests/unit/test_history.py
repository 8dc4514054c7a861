"""The metric history: records, latest-wins merging, tailing, the summary, and the ingestor."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.durable import dump_json
from runner.metrics.history import (
    CheckpointEvent,
    History,
    HistoryTail,
    MergedSeries,
    Point,
    decode_record,
    event_record,
    point_record,
    read_history,
)
from runner.metrics.ingest import SUMMARY_INTERVAL_S, Ingestor
from runner.metrics.summary import SummaryBuilder, summarize
from runner.model import RunSpec
from runner.registry import METRICS, OUTPUT, REPORT, SUMMARY
from runner.supervisor.output_cap import compact_output


class Clock:
    """A settable clock."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_run(tmp_path: Path, primary: str = "loss") -> tuple[Path, RunSpec]:
    run_dir = tmp_path / "runs" / "000001"
    (run_dir / "checkpoints").mkdir(parents=True)
    spec = RunSpec(
        id="000001",
        name="t",
        command=("python", "x.py"),
        cwd=str(tmp_path),
        created_at=0.0,
        primary_metric=primary,
    )
    return run_dir, spec


def write(path: Path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def summary(run_dir: Path) -> dict[str, object]:
    return json.loads((run_dir / SUMMARY).read_text())  # type: ignore[no-any-return]


def steps(run_dir: Path) -> list[int]:
    return [p.step for p in read_history(run_dir).points]


# --- records -----------------------------------------------------------------------------------


def test_records_round_trip_with_non_finite_values_as_strict_json() -> None:
    values = {"loss": 0.5, "a": math.nan, "b": math.inf, "c": -math.inf}
    line = dump_json(point_record(2, 7, 123.5, values))  # strict: would raise on a bare nan
    point = decode_record(json.loads(line))
    assert isinstance(point, Point)
    assert (point.attempt, point.step, point.t) == (2, 7, 123.5)
    assert point.values["loss"] == 0.5 and math.isnan(point.values["a"])
    assert point.values["b"] == math.inf and point.values["c"] == -math.inf
    event = decode_record(json.loads(dump_json(event_record(1, 5, 1.0, "/c/ckpt.pt"))))
    assert event == CheckpointEvent(1, 5, 1.0, "/c/ckpt.pt")


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        {"a": True, "s": 1, "t": 1.0, "v": {}},
        {"a": 1, "s": "1", "t": 1.0, "v": {}},
        {"a": 1, "s": 1, "t": "now", "v": {}},
        {"a": 1, "s": 1, "t": 1.0, "v": []},
        {"a": 1, "s": 1, "t": 1.0, "e": "checkpoint", "path": 3},
    ],
)
def test_wrong_shapes_decode_to_none(obj: object) -> None:
    assert decode_record(obj) is None


def test_non_numeric_values_are_dropped_on_decode() -> None:
    p = decode_record({"a": 1, "s": 1, "t": 1.0, "v": {"loss": 1, "x": "text", "y": True}})
    assert isinstance(p, Point) and p.values == {"loss": 1.0}


# --- merging -----------------------------------------------------------------------------------


def test_same_step_of_one_attempt_merges_and_a_later_attempt_wins() -> None:
    s = MergedSeries()
    s.add(Point(1, 10, 0.0, {"loss": 1.0}))
    s.add(Point(1, 10, 0.1, {"val_loss": 2.0}))
    assert s.points[-1].values == {"loss": 1.0, "val_loss": 2.0}
    s.add(Point(2, 10, 0.2, {"loss": 0.5}))
    assert s.points[-1].values == {"loss": 0.5} and s.version == 0


def test_a_resume_that_repeats_steps_drops_the_old_tail() -> None:
    s = MergedSeries()
    for step in range(1, 8):
        s.add(Point(1, step, step, {"loss": 1.0 / step}))
    s.add(Point(2, 5, 10.0, {"loss": 0.3}))
    s.add(Point(2, 6, 11.0, {"loss": 0.2}))
    assert [p.step for p in s.points] == [1, 2, 3, 4, 5, 6]
    assert [p.attempt for p in s.points][-2:] == [2, 2]
    assert s.version == 1
    assert s.series("loss")[1][-1] == 0.2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 30)), max_size=60))
def test_merged_steps_always_strictly_increase(records: list[tuple[int, int]]) -> None:
    s = MergedSeries()
    for i, (attempt, step) in enumerate(sorted(records, key=lambda r: r[0])):
        s.add(Point(attempt, step, float(i), {"loss": float(step)}))
    got = [p.step for p in s.points]
    assert got == sorted(set(got))
    if records:
        ordered = sorted(records, key=lambda r: r[0])
        latest = ordered[-1][0]  # the run's step: the latest attempt's highest
        assert got[-1] == max(step for attempt, step in ordered if attempt == latest)


def test_read_history_ignores_a_torn_last_line_and_garbage(tmp_path: Path) -> None:
    run_dir = tmp_path
    path = run_dir / METRICS
    write(path, dump_json(point_record(1, 1, 1.0, {"loss": 1.0})))
    write(path, b"not json\n")
    write(path, dump_json(event_record(1, 1, 1.5, "/x.pt")))
    write(path, dump_json(point_record(1, 2, 2.0, {"loss": 0.5})))
    write(path, b'{"a":1,"s":3,"t":3.0,"v":{"lo')  # a writer killed mid-line
    h = read_history(run_dir)
    assert [p.step for p in h.points] == [1, 2]
    assert [e.path for e in h.events] == ["/x.pt"]
    assert h.records == 3
    assert read_history(tmp_path / "missing").points == []


def test_history_tail_follows_by_offset(tmp_path: Path) -> None:
    path = tmp_path / METRICS
    tail = HistoryTail(tmp_path)
    assert tail.poll() == []
    line = dump_json(point_record(1, 1, 1.0, {"loss": 1.0}))
    write(path, line[:10])
    assert tail.poll() == []  # half a line: nothing yet
    write(path, line[10:] + dump_json(point_record(1, 2, 2.0, {"loss": 0.9})))
    assert [p.step for p in tail.poll()] == [1, 2]
    assert tail.poll() == []
    for step in (3, 4, 5):
        write(path, dump_json(point_record(1, step, step, {"loss": 0.1})))
    assert [p.step for p in tail.poll()] == [3, 4, 5]
    # A resumed attempt rewinds to step 3: the consumer replaces everything from step 3 on.
    write(path, dump_json(point_record(2, 3, 9.0, {"loss": 0.05})))
    changed = tail.poll()
    assert [(p.attempt, p.step) for p in changed] == [(2, 3)]
    assert [p.step for p in tail.points] == [1, 2, 3] and tail.version == 1
    path.write_bytes(dump_json(point_record(1, 1, 1.0, {"loss": 3.0})))  # replaced: start over
    assert [p.values["loss"] for p in tail.poll()] == [3.0]


def test_history_tail_starts_over_on_a_replaced_file_even_a_longer_one(tmp_path: Path) -> None:
    path = tmp_path / METRICS
    write(path, dump_json(point_record(1, 1, 1.0, {"loss": 1.0})))
    tail = HistoryTail(tmp_path)
    assert [p.step for p in tail.poll()] == [1]
    other = tmp_path / "new.jsonl"  # rewritten beside it and renamed over it, longer
    other.write_bytes(b"".join(dump_json(point_record(1, s, s, {"loss": 2.0})) for s in (5, 6)))
    os.replace(other, path)
    assert [p.step for p in tail.poll()] == [5, 6]
    assert [p.step for p in tail.points] == [5, 6] and tail.version == 1


# --- the summary -------------------------------------------------------------------------------


def test_summary_builder_tracks_last_best_rate_and_progress() -> None:
    b = SummaryBuilder("loss")
    b.total_steps = 100
    for step in range(1, 11):
        b.add(Point(1, step, 100.0 + step * 0.5, {"loss": 1.0 / step, "lr": 0.1}))
    s = b.to_json(now=200.0, checkpoints=2, latest_checkpoint="/c.pt")
    assert s["step"] == 10 and s["loss"] == pytest.approx(0.1) and s["best"] == pytest.approx(0.1)
    assert s["best_step"] == 10 and s["metrics"] == {"loss": pytest.approx(0.1), "lr": 0.1}
    assert s["steps_per_s"] == pytest.approx(2.0)
    assert s["progress"] == pytest.approx(0.1) and s["eta_s"] == pytest.approx(45.0)
    assert s["records"] == 10 and s["checkpoints"] == 2 and s["health"] == []
    assert b.to_json(now=1.0, running=False)["eta_s"] is None


def test_best_rewinds_with_a_resume_and_accuracy_is_higher_is_better() -> None:
    b = SummaryBuilder("loss")
    for step, loss in [(1, 1.0), (2, 0.5), (3, 0.1), (4, 0.4)]:
        b.add(Point(1, step, step, {"loss": loss}))
    assert (b.best, b.best_step) == (0.1, 3)
    b.add(Point(2, 2, 10.0, {"loss": 0.6}))  # resumed from step 1's checkpoint: 3 and 4 gone
    assert (b.best, b.best_step, b.last, b.primary_points) == (0.6, 2, 0.6, 2)
    acc = SummaryBuilder("accuracy")
    for step, v in [(1, 0.5), (2, 0.9), (3, 0.7)]:
        acc.add(Point(1, step, step, {"accuracy": v}))
    assert acc.best == 0.9


def test_non_finite_primary_is_null_in_json_and_flagged() -> None:
    b = SummaryBuilder()
    b.add(Point(1, 1, 1.0, {"loss": 0.5}))
    b.add(Point(1, 2, 2.0, {"loss": math.nan, "x": math.inf}))
    s = b.to_json(now=3.0)
    assert s["loss"] is None and s["best"] == 0.5 and s["health"] == ["nan"]
    assert s["metrics"] == {"loss": None, "x": None}
    dump_json(s)  # strict JSON


def test_summarize_is_the_same_digest_from_a_whole_history() -> None:
    h = History()
    for step in range(1, 6):
        h.add(Point(1, step, float(step), {"loss": 6.0 - step}))
    h.events.append(CheckpointEvent(1, 5, 5.0, "/c/5.pt"))
    s = summarize(h, now=9.0, total_steps=10)
    assert s["step"] == 5 and s["loss"] == 1.0 and s["progress"] == 0.5
    assert s["checkpoints"] == 1 and s["latest_checkpoint"] == "/c/5.pt"


# --- the ingestor ------------------------------------------------------------------------------


def test_ingestor_turns_output_into_history_and_summary(tmp_path: Path) -> None:
    run_dir, spec = make_run(tmp_path)
    clock = Clock()
    ing = Ingestor(run_dir, spec, 1, clock=clock, oom_kills=lambda: None)
    write(run_dir / OUTPUT, "starting\nepoch 1 | step 10/100 | loss: 0.9 | val loss 1.1\n")
    write(run_dir / OUTPUT, "epoch 1 | step 20/100 | loss: 0.7 | val lo")
    ing.poll()
    assert steps(run_dir) == [10]
    clock.t += 1
    write(run_dir / OUTPUT, "ss 1.0\n")
    ing.poll()
    s = summary(run_dir)
    assert steps(run_dir) == [10, 20]
    assert s["step"] == 20 and s["loss"] == 0.7 and s["best"] == 0.7 and s["total_steps"] == 100
    assert s["metrics"] == {"epoch": 1.0, "loss": 0.7, "val_loss": 1.0}
    assert s["progress"] == 0.2 and s["attempt"] == 1 and s["schema"] == 1
    clock.t += 1
    write(run_dir / OUTPUT, "step 30 loss: 0.5")  # no newline: taken at the end
    ing.poll(final=True)
    ing.close()
    assert steps(run_dir) == [10, 20, 30]
    final = summary(run_dir)
    assert final["loss"] == 0.5 and final["eta_s"] is None
    assert set(final) >= {
        "schema",
        "attempt",
        "step",
        "primary",
        "loss",
        "best",
        "best_step",
        "metrics",
        "steps_per_s",
        "total_steps",
        "progress",
        "eta_s",
        "checkpoints",
        "latest_checkpoint",
        "health",
        "updated_at",
        "records",
    }


def test_summary_writes_are_throttled_and_idle_polls_write_nothing(tmp_path: Path) -> None:
    run_dir, spec = make_run(tmp_path)
    clock = Clock()
    ing = Ingestor(run_dir, spec, 1, clock=clock, oom_kills=lambda: None)
    write(run_dir / OUTPUT, "loss: 1\n")
    ing.poll()
    first = os.stat(run_dir / SUMMARY).st_ino
    write(run_dir / OUTPUT, "loss: 0.9\n")
    clock.t += SUMMARY_INTERVAL_S / 3
    ing.poll()
    assert os.stat(run_dir / SUMMARY).st_ino == first  # too soon: not rewritten
    assert summary(run_dir)["loss"] == 1.0
    clock.t += SUMMARY_INTERVAL_S
    ing.poll()  # nothing new arrived, but the pending change is written now
    second = os.stat(run_dir / SUMMARY).st_ino
    assert second != first and summary(run_dir)["loss"] == 0.9
    clock.t += 5
    ing.poll()
    assert os.stat(run_dir / SUMMARY).st_ino == second  # idle: no write
    ing.close()


def test_report_records_win_over_parsed_output(tmp_path: Path) -> None:
    run_dir, spec = make_run(tmp_path)
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)
    ckpt = run_dir / "checkpoints" / "ckpt-00000002.pt"
    ckpt.write_bytes(b"x")
    write(run_dir / REPORT, '{"s":1,"ns":1000000000000,"v":{"loss":0.9,"total_steps":4}}\n')
    write(run_dir / REPORT, '{"s":2,"ns":1001000000000,"v":{"loss":nan}}\n{"s":3,"ns":100')
    write(run_dir / OUTPUT, "step 2 loss: 123\n")  # the same step printed for humans: ignored
    write(run_dir / OUTPUT, json.dumps({"event": "checkpoint_saved", "path": str(ckpt)}) + "\n")
    ing.poll()
    h = read_history(run_dir)
    assert [(p.step, p.values) for p in h.points][0] == (1, {"loss": 0.9})
    assert math.isnan(h.points[1].values["loss"]) and len(h.points) == 2
    assert h.points[0].t == 1000.0
    assert [e.path for e in h.events] == [str(ckpt)]
    write(run_dir / REPORT, '1000000000,"v":{"loss":0.4}}\n{"s":null,"ns":1,"v":{"val":0.3}}\n')
    ing.poll(final=True)
    ing.close()
    assert steps(run_dir) == [1, 2, 3]  # a record without a step joins the last one
    s = summary(run_dir)
    assert s["loss"] == 0.4 and s["metrics"]["val"] == 0.3  # type: ignore[index]
    assert s["total_steps"] == 4 and s["progress"] == 0.75
    assert s["checkpoints"] == 1 and s["latest_checkpoint"] == str(ckpt)


def test_checkpoint_count_is_the_files_present(tmp_path: Path) -> None:
    run_dir, spec = make_run(tmp_path)
    folder = run_dir / "checkpoints"
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)
    for name in ("ckpt-1.pt", "ckpt-2.pt", ".ckpt-3.pt.tmp-99"):
        (folder / name).write_bytes(b"x")
    (folder / "sub").mkdir()
    ing.poll(final=True)
    # Files nobody announced are counted, never named latest: a resume looks at the folder.
    assert summary(run_dir)["checkpoints"] == 2 and summary(run_dir)["latest_checkpoint"] is None
    rel = os.path.relpath(folder / "ckpt-2.pt", tmp_path)  # relative to the run's cwd
    write(run_dir / OUTPUT, json.dumps({"event": "checkpoint_saved", "path": rel, "step": 2}))
    write(run_dir / OUTPUT, "\n")
    ing.poll(final=True)
    s = summary(run_dir)
    assert s["checkpoints"] == 2
    assert s["latest_checkpoint"] == str(folder / "ckpt-2.pt")
    (folder / "ckpt-1.pt").unlink()
    ing.poll(final=True)
    ing.close()
    assert summary(run_dir)["checkpoints"] == 1


def test_a_resumed_attempt_continues_steps_and_wins_on_repeated_ones(tmp_path: Path) -> None:
    run_dir, spec = make_run(tmp_path)
    clock = Clock()
    first = Ingestor(run_dir, spec, 1, clock=clock, oom_kills=lambda: None)
    for loss in (0.9, 0.8, 0.1, 0.7):
        write(run_dir / OUTPUT, f"loss: {loss}\n")
    first.poll(final=True)
    first.close()
    assert steps(run_dir) == [1, 2, 3, 4] and summary(run_dir)["best"] == 0.1
    # Attempt 2 without steps of its own: inferred steps continue from 4.
    second = Ingestor(run_dir, spec, 2, clock=clock, oom_kills=lambda: None)
    write(run_dir / OUTPUT, "loss: 0.6\n")
    second.poll(final=True)
    second.close()
    assert steps(run_dir) == [1, 2, 3, 4, 5]
    assert [p.attempt for p in read_history(run_dir).points] == [1, 1, 1, 1, 2]
    # Attempt 3 resumes from step 2's checkpoint and repeats steps 3 and 4: it wins.
    third = Ingestor(run_dir, spec, 3, clock=clock, oom_kills=lambda: None)
    write(run_dir / OUTPUT, "step 3 loss: 0.5\nstep 4 loss: 0.45\n")
    third.poll(final=True)
    third.close()
    h = read_history(run_dir)
    assert [(p.attempt, p.step) for p in h.points] == [(1, 1), (1, 2), (3, 3), (3, 4)]
    s = summary(run_dir)
    assert s["best"] == 0.45 and s["best_step"] == 4 and s["attempt"] == 3 and s["step"] == 4


def test_output_compaction_is_not_read_twice(tmp_path: Path) -> None:
    run_dir, spec = make_run(tmp_path)
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)
    write(run_dir / OUTPUT, "".join(f"step {i} loss: {1 / i:.4f}\n" for i in range(1, 400)))
    write(run_dir / OUTPUT, "step 400 loss: 0.0")
    ing.poll()
    new_size = compact_output(run_dir / OUTPUT, cap=4096, head=1024)
    assert new_size is not None
    ing.output_rewritten(new_size)
    write(run_dir / OUTPUT, "025\nstep 401 loss: 0.002\n")
    ing.poll(final=True)
    ing.close()
    h = read_history(run_dir)
    assert [p.step for p in h.points] == list(range(1, 402))
    assert h.points[399].values["loss"] == 0.0025


def test_after_a_lost_supervisor_the_next_attempt_skips_old_records(tmp_path: Path) -> None:
    run_dir, spec = make_run(tmp_path)
    first = b'{"s":1,"ns":1000000000,"v":{"loss":1.0}}\n'
    write(run_dir / REPORT, first + b'{"s":2,"ns":20')  # the trainer died mid-record
    write(run_dir / OUTPUT, "step 1 loss: 9\n")  # and its supervisor never ingested this
    ing = Ingestor(run_dir, spec, 2, clock=Clock(), oom_kills=lambda: None)
    with open(run_dir / REPORT, "r+b") as f:  # the new trainer cuts the torn record ...
        f.truncate(len(first))
    write(run_dir / REPORT, b'{"s":2,"ns":3000000000,"v":{"loss":0.5}}\n')  # ... and reports
    ing.poll(final=True)
    ing.close()
    assert [(p.attempt, p.step, p.values) for p in read_history(run_dir).points] == [
        (2, 2, {"loss": 0.5})
    ]


def test_a_write_failure_never_reaches_the_supervisor_and_loses_no_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk holds the lines in memory (said once on stderr) and writes them later."""
    run_dir, spec = make_run(tmp_path)
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)

    def disk_full(data: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ing._batch._appender, "append_raw", disk_full)
    write(run_dir / OUTPUT, "step 1 loss: 0.5\n")
    ing.poll()
    ing.poll()
    assert capsys.readouterr().err.count("No space left") == 1
    monkeypatch.undo()
    write(run_dir / OUTPUT, "step 2 loss: 0.4\n")
    ing.poll(final=True)
    assert ing.settle() == 0 and ing.write_error() is not None
    assert ing.write_error().startswith("disk full: metrics.jsonl")
    ing.close()
    assert steps(run_dir) == [1, 2]


def test_a_long_run_keeps_bounded_memory_and_the_right_best() -> None:
    from runner.metrics import summary

    b = SummaryBuilder()
    n = 3 * summary.KEEP_POINTS
    for s in range(1, n + 1):
        # The best comes early (step 100), then the loss hovers above it.
        b.add(Point(1, s, float(s), {"loss": 0.01 if s == 100 else 1.0 + (s % 7) / 10}))
    assert len(b._steps) <= summary.KEEP_POINTS
    assert (b.best, b.best_step, b.primary_points, b.step) == (0.01, 100, n, n)
    # A resumed attempt rewinding into the kept points keeps the floor's best and the
    # latest attempt's values win from the rewind on.
    b.add(Point(2, n - 10, float(n + 1), {"loss": 0.005}))
    assert (b.best, b.best_step, b.last, b.step) == (0.005, n - 10, 0.005, n - 10)
