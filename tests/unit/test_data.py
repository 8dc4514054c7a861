"""The data layer without Textual: tails, rows, the producer's incremental updates."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import MappingProxyType

import pytest

from governor.probes import GpuSnapshot
from runner.model import Status
from runner.registry import Registry
from tui.feed.producer import Producer
from tui.feed.reader import BUSY_READ_S
from tui.feed.rows import primary_metric, row_from_view, with_digest
from tui.feed.snapshot import Snapshot
from tui.feed.tails import MetricDigest, MetricTail, OutputTail


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def rec(a: int, s: int, **v: object) -> str:
    return json.dumps({"a": a, "s": s, "t": 0, "v": v}) + "\n"


def test_metric_tail_waits_for_whole_lines_and_latest_attempt_wins(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append(path, rec(1, 1, loss=1.0) + rec(1, 2, loss=0.9) + rec(1, 3, loss="nan"))
    append(path, '{"a": 1, "s": 4, "v": {"loss": 0.')  # torn: not yet a line
    tail = MetricTail(path)
    assert tail.poll()
    steps, values = tail.view().metrics["loss"]
    assert steps == (1, 2, 3) and values[:2] == (1.0, 0.9) and values[2] != values[2]
    append(path, '7}}\n{"e": "checkpoint_saved"}\n')
    assert tail.poll() and tail.last_step == 4
    # Attempt 2 went back to step 2: what attempt 1 wrote from there on is superseded.
    append(path, rec(2, 2, loss=0.5) + rec(1, 9, loss=9.0))
    assert tail.poll()
    steps, values = tail.view().metrics["loss"]
    assert steps == (1, 2) and values == (1.0, 0.5)
    assert tail.last_step == 2


def test_metric_tail_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append(path, "".join(rec(1, s, loss=1 / (s + 1)) for s in range(5000)))
    tail = MetricTail(path, max_points=500)
    tail.poll()
    steps, _ = tail.view().metrics["loss"]
    assert len(steps) <= 500 and steps[-1] == 4999 and steps[0] == 0


def test_output_tail_sanitises_and_follows_compaction(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    append(path, "a\x1b]52;c;ZXZpbA==\x07b [bold]x[/]\n\x1b[31mred\x1b[0m\n10%\r100%\npartial")
    tail = OutputTail(path)
    assert tail.poll() == ["ab [bold]x[/]", "\x1b[31mred\x1b[0m", "100%"]
    append(path, " line\n")
    assert tail.poll() == ["partial line"]
    view = tail.view()
    assert view.total == 4 and view.generation == 0
    os.truncate(path, 0)  # the supervisor compacted it
    append(path, "after\n")
    assert tail.poll() == ["after"]
    assert tail.view().generation == 1 and tail.view().lines == ("after",)


def test_output_tail_shows_the_head_of_an_endless_line_and_goes_on(tmp_path: Path) -> None:
    """A line with no newline in sight is never buffered whole: its head shows, the rest not."""
    path = tmp_path / "output.log"
    append(path, "x" * 200_000)
    tail = OutputTail(path)
    shown = tail.poll()
    assert len(shown) == 1 and shown[0].startswith("xxx") and "more characters" in shown[0]
    append(path, "y" * 1000 + "\nnext\n")
    assert tail.poll() == ["next"]


def test_metric_tail_starts_over_on_a_replaced_history(tmp_path: Path) -> None:
    """A metrics file replaced by another (an import, a reingest) is read again from 0."""
    path = tmp_path / "metrics.jsonl"
    path.write_text(rec(1, 1, loss=5.0))
    tail = MetricTail(path)
    assert tail.poll() and tail.last_values == {"loss": 5.0}
    other = tmp_path / "new.jsonl"
    other.write_text("".join(rec(1, s, loss=s / 10) for s in (1, 2, 3)))
    os.replace(other, path)
    assert tail.poll() and tail.last_step == 3 and tail.last_values == {"loss": 0.3}
    assert tail.view().metrics["loss"] == ((1, 2, 3), (0.1, 0.2, 0.3))


def test_output_tail_starts_near_the_end_of_a_big_file(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    append(path, "".join(f"line {i}\n" for i in range(100_000)))
    tail = OutputTail(path, max_lines=100, initial_bytes=4096)
    lines = tail.poll()
    assert lines[-1] == "line 99999" and all(x.startswith("line ") for x in lines)
    assert len(tail.view().lines) == 100


def test_producer_scan_then_incremental_changes(sample, tmp_path: Path) -> None:
    posted = []
    producer = Producer(
        sample,
        posted.append,
        gpu_source=lambda: GpuSnapshot(error="none"),
        host_source=lambda: None,
        min_emit_s=0,
    )
    snap = producer.scan()
    statuses = {r.id: r.status for r in snap.runs}
    assert statuses["000007"] is Status.CORRUPT and statuses["000008"] is Status.RUNNING
    assert [r.id for r in snap.runs] == sorted(statuses, reverse=True)
    assert producer.tick() is None  # nothing changed
    folder = sample.runs_dir / "000009"
    append(folder / "metrics.jsonl", rec(1, 9999, loss=0.0123))
    append(folder / "output.log", "hello from vit\n")
    producer.handle_changes(
        [
            str(folder / "metrics.jsonl"),
            str(folder / "output.log"),
            str(folder / ".tmp-state.json-ab12"),
        ]
    )
    snap = producer.tick()
    assert snap is not None
    row = next(r for r in snap.runs if r.id == "000009")
    assert (row.step, row.loss) == (9999, 0.0123)
    assert snap.outputs["000009"].lines[-1] == "hello from vit"
    assert snap.follow.lines[-1].endswith("hello from vit")


def test_a_row_moved_on_by_metrics_equals_the_row_built_again(sample) -> None:
    digest = MetricDigest(
        step=4242,
        values=MappingProxyType({"loss": 0.5, "acc": 0.9}),
        spark=(3.0, 2.0, 1.0),
        names=("loss", "acc", "bad\x1b[2Jname"),
    )
    for view in sample.list_runs():
        metric = primary_metric(view)
        moved = with_digest(row_from_view(view), digest, metric)
        assert moved == row_from_view(view, digest), view.id


def test_producer_reads_busy_runs_twice_a_second_and_news_at_once(sample) -> None:
    now = [100.0]
    producer = Producer(
        sample,
        lambda snap: None,
        gpu_source=lambda: GpuSnapshot(error="none"),
        host_source=lambda: None,
        min_emit_s=0.05,
        monotonic=lambda: now[0],
    )
    producer.scan()
    busy, quiet = sample.runs_dir / "000008", sample.runs_dir / "000009"

    def batch(at: float, folder: Path, step: int) -> Snapshot | None:
        """One batch of file events at ``at``: ``folder``'s metrics grew by one step."""
        now[0] = at
        append(folder / "metrics.jsonl", rec(9, step, loss=0.5))  # the latest attempt
        producer.handle_changes([str(folder / "metrics.jsonl")])
        return producer.tick()

    def step(snap: Snapshot | None, run_id: str) -> int | None:
        assert snap is not None
        return next(r.step for r in snap.runs if r.id == run_id)

    # Writing in batch after batch makes a run busy: from the third batch on, its files are
    # read at most every BUSY_READ_S, not once per batch.
    assert step(batch(100.1, busy, 7001), "000008") == 7001
    assert step(batch(100.2, busy, 7002), "000008") == 7002
    assert batch(100.3, busy, 7003) is None  # waits: read 0.1 s ago
    assert producer.next_due(now[0]) == pytest.approx(100.2 + BUSY_READ_S)
    # A run that writes after a quiet spell is news: read at once (the busy one still waits).
    snap = batch(100.35, quiet, 8001)
    assert (step(snap, "000009"), step(snap, "000008")) == (8001, 7002)
    # Once due, the busy run's latest step shows.
    assert step(batch(100.2 + BUSY_READ_S, busy, 7004), "000008") == 7004
    # A run writing every few tenths of a second with nothing else happening is in every
    # batch too, but each write comes after a quiet spell: it is read at once, every time.
    at = 102.0
    for k in range(6):
        at += 0.2 + 0.05 * (k % 3)
        assert step(batch(at, quiet, 8100 + k), "000009") == 8100 + k


def test_producer_sleeps_long_when_nothing_runs(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "home")
    registry.runs_dir.mkdir(parents=True)
    now = [50.0]
    producer = Producer(
        registry,
        lambda snap: None,
        gpu_source=lambda: GpuSnapshot(error="none"),
        host_source=lambda: None,
        monotonic=lambda: now[0],
    )
    producer.scan()
    now[0] += 1.0
    assert producer.tick() is None
    # No active run: the next wake-up is the slow fallback poll or the slow probe, seconds
    # away, not a poll several times a second.
    assert (
        producer.next_due(now[0]) - now[0] >= min(producer.slow_poll_s, producer.idle_probe_s) - 1
    )


def test_a_snapshot_names_the_rows_that_changed_and_the_live_ones(sample) -> None:
    """Work in proportion to what changed: the next snapshot lists only the changed rows."""
    producer = Producer(
        sample,
        lambda snap: None,
        gpu_source=lambda: GpuSnapshot(error="none"),
        host_source=lambda: None,
        min_emit_s=0,
    )
    first = producer.scan()
    assert first.changed is None  # a first look: everything is new
    assert first.live_rows == tuple(r for r in first.runs if r.status.active)
    assert first.live is not None and first.live_rows
    folder = sample.runs_dir / "000008"  # running
    append(folder / "metrics.jsonl", rec(9, 4321, loss=0.25))  # the latest attempt
    producer.handle_changes([str(folder / "metrics.jsonl")])
    snap = producer.tick()
    assert snap is not None and snap.changed is not None
    assert [r.id for r in snap.changed] == ["000008"]
    assert snap.changes_since(first) == snap.changed
    assert snap.changes_since(Snapshot(seq=first.seq - 1)) is None  # a snapshot was missed
    row = snap.changed[0]
    assert row.step == 4321
    # The patched list is the list built again from scratch, row for row.
    assert snap.runs == tuple(r if r.id != "000008" else row for r in first.runs)
    assert [r for r in snap.runs if r is not row] == [r for r in first.runs if r.id != "000008"]
    assert row in snap.live_rows
    # A run that appears changes the order: the next snapshot says "look at them all".
    new = sample.runs_dir / "000042"
    new.mkdir()
    for name in ("spec.json", "state.json"):
        (new / name).write_bytes((sample.runs_dir / "000009" / name).read_bytes())
    producer.poke()
    snap = producer.tick(force=True)
    assert snap is not None and snap.changed is None
    assert "000042" in {r.id for r in snap.runs}
