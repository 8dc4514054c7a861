"""The data layer without Textual: tails, rows, the producer's incremental updates."""

from __future__ import annotations

import json
import os
from pathlib import Path

from governor.probes import GpuSnapshot
from runner.model import Status
from tui.data import MetricTail, OutputTail
from tui.producer import Producer


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
