"""One rule for reading a run's metric history, and every reader following it.

The summary (``summary.json`` and ``show``), :func:`read_history` (export, tools) and the TUI's
curves (:class:`tui.feed.tails.MetricTail`, which imports no Textual) must agree on every history:
the same points for each metric, the same step, the same latest and best value. The reference
below is the rule as documented in :mod:`runner.metrics.history`, written out plainly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from runner.durable import dump_json
from runner.metrics.history import decode_record, point_record, read_history
from runner.metrics.summary import SummaryBuilder
from runner.registry import METRICS
from tui.feed.tails import MetricTail

Record = tuple[int, int, dict[str, float]]  # attempt, step, values


def reference(records: list[Record]) -> dict[int, dict[str, float]]:
    """The documented rule, offline: step -> merged values of the step's owning attempt."""
    first: dict[int, int] = {}
    for attempt, step, _ in records:
        first[attempt] = min(step, first.get(attempt, step))
    merged: dict[int, dict[str, float]] = {}
    for attempt, step, values in records:
        later = [low for other, low in first.items() if other > attempt]
        if later and step >= min(later):
            continue  # a later attempt owns this step
        merged.setdefault(step, {}).update(values)
    return dict(sorted(merged.items()))


def _series(merged: dict[int, dict[str, float]], name: str) -> tuple[list[int], list[float]]:
    steps = [s for s, v in merged.items() if name in v]
    return steps, [merged[s][name] for s in steps]


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(
        x == y or (math.isnan(x) and math.isnan(y)) for x, y in zip(a, b, strict=True)
    )


values = st.dictionaries(
    st.sampled_from(["loss", "val_loss", "lr"]),
    st.one_of(st.floats(0.01, 10.0), st.just(math.nan)),
    min_size=1,
    max_size=3,
)


@st.composite
def histories(draw: st.DrawFn) -> list[Record]:
    """Attempts in order, steps that go forwards and backwards, and late lines of old attempts."""
    records: list[Record] = []
    for attempt in range(1, draw(st.integers(1, 3)) + 1):
        for step in draw(st.lists(st.integers(0, 40), max_size=25)):
            records.append((attempt, step, draw(values)))
        if attempt > 1 and draw(st.booleans()):  # a late line of an earlier attempt
            records.append((attempt - 1, draw(st.integers(0, 40)), draw(values)))
    return records


def _write(path: Path, records: list[Record]) -> None:
    path.write_bytes(
        b"".join(dump_json(point_record(a, s, float(i), v)) for i, (a, s, v) in enumerate(records))
    )


@settings(max_examples=300, deadline=None)
@given(records=histories())
def test_the_summary_the_history_and_the_tui_agree(tmp_path_factory, records: list[Record]) -> None:
    run_dir = tmp_path_factory.mktemp("run")
    path = run_dir / METRICS
    _write(path, records)
    expected = reference(records)

    builder = SummaryBuilder("loss")
    for line in path.read_bytes().splitlines():
        rec = decode_record(json.loads(line))
        assert rec is not None
        builder.add(rec)
    history = read_history(run_dir)
    tail = MetricTail(path, max_points=10_000)
    tail.poll()
    view = tail.view().metrics

    for name in ("loss", "val_loss", "lr"):
        steps, vals = _series(expected, name)
        h_steps, h_vals = history.series(name)
        assert h_steps == steps and _same(h_vals, vals), name
        t_steps, t_vals = view.get(name, ((), ()))
        assert list(t_steps) == steps and _same(list(t_vals), vals), name
    steps, vals = _series(expected, "loss")
    assert list(builder._steps) == steps and _same(list(builder._values), vals)

    step = max(expected) if expected else None
    assert builder.step == tail.last_step == step
    assert [p.step for p in history.points] == list(expected)
    if vals:
        assert _same([builder.last], [vals[-1]]) and _same([tail.last_values["loss"]], [vals[-1]])
        finite = [v for v in vals if math.isfinite(v)]
        assert builder.best == (min(finite) if finite else None)
    for name, value in builder.metrics.items():  # each metric's value at its highest step
        # (the summary forgets a non-primary value a resume dropped; the rest must agree)
        assert _same([value], [_series(expected, name)[1][-1]])
        assert _same([tail.last_values[name]], [value])


def test_a_step_that_goes_back_within_an_attempt_is_a_late_point_not_a_rewind(
    tmp_path: Path,
) -> None:
    """Steps 10, 20, 15, 25, 30: the summary kept [10, 15] and the plot all five."""
    records: list[Record] = [(1, s, {"loss": 1.0 / s}) for s in (10, 20, 15, 25, 30)]
    _write(tmp_path / METRICS, records)
    builder = SummaryBuilder("loss")
    for p in read_history(tmp_path).points:
        builder.add(p)
    tail = MetricTail(tmp_path / METRICS)
    tail.poll()
    assert list(builder._steps) == [10, 15, 20, 25, 30]
    assert tail.view().metrics["loss"][0] == (10, 15, 20, 25, 30)
    assert builder.step == tail.last_step == 30 and builder.last == 1.0 / 30


def test_a_resume_drops_the_earlier_attempt_from_its_first_step_on(tmp_path: Path) -> None:
    records: list[Record] = [(1, s, {"loss": 1.0, "val_loss": 2.0}) for s in range(1, 9)]
    records += [(2, 5, {"loss": 0.5}), (1, 7, {"loss": 9.0}), (2, 6, {"loss": 0.4})]
    _write(tmp_path / METRICS, records)
    tail = MetricTail(tmp_path / METRICS)
    tail.poll()
    assert tail.view().metrics["loss"] == ((1, 2, 3, 4, 5, 6), (1.0, 1.0, 1.0, 1.0, 0.5, 0.4))
    assert tail.view().metrics["val_loss"][0] == (1, 2, 3, 4)
    builder = SummaryBuilder("loss")
    for line in (tmp_path / METRICS).read_bytes().splitlines():
        rec = decode_record(json.loads(line))
        assert rec is not None
        builder.add(rec)
    assert builder.step == tail.last_step == 6 and builder.attempt == 2
    # The summary keeps only the primary metric's history: a value of another metric that a
    # resume dropped is gone from it until reported again; the TUI, which keeps every
    # metric's points, shows the latest one left (step 4's).
    assert "val_loss" not in builder.metrics and tail.last_values["val_loss"] == 2.0
