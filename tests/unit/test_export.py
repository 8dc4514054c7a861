"""Metric export: the CSV and JSON lines reopen to exactly what the merged history holds."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.export import (
    FIXED_COLUMNS,
    column_name,
    metric_of_column,
    read_csv,
    rows_of,
    run_history,
    write_csv,
    write_jsonl,
    write_rows,
)
from runner.metrics.history import decode_value, encode_point
from runner.registry import METRICS

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(min_value=-(2**40), max_value=2**40).map(float),
)
names = st.one_of(
    st.sampled_from(["loss", "val_loss", "acc", "lr", "step", "time", "metric.x", "a,b", 'q"t']),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=8),
)
records = st.lists(
    st.tuples(
        st.integers(1, 3),  # attempt
        st.integers(0, 40),  # step
        st.floats(0, 2e9, allow_nan=False),  # time
        st.dictionaries(names, values, min_size=1, max_size=4),
    ),
    max_size=40,
)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _write_metrics(run_dir: Path, recs: list[tuple[int, int, float, dict[str, float]]]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / METRICS, "wb") as f:
        for attempt, step, t, vals in recs:
            f.write(encode_point(attempt, step, t, vals))
        f.write(b'{"a": 1, "s": 3, "t"')  # a torn last line: never exported


@settings(max_examples=150, deadline=None)
@given(recs=records)
def test_csv_reopens_to_the_values_metrics_jsonl_holds(
    tmp_path_factory: object, recs: list[tuple[int, int, float, dict[str, float]]]
) -> None:
    run_dir = tmp_path_factory.mktemp("run")  # type: ignore[attr-defined]
    _write_metrics(run_dir, recs)
    history = run_history(run_dir)
    buf = io.StringIO()
    assert write_csv(rows_of("000001", history), buf) == len(history.points)
    back = list(read_csv(io.StringIO(buf.getvalue())))
    assert len(back) == len(history.points)
    for row, point in zip(back, history.points, strict=True):
        assert (row.run_id, row.attempt, row.step, row.t) == (
            "000001",
            point.attempt,
            point.step,
            point.t,
        )
        assert set(row.values) == set(point.values)
        assert all(_same(row.values[k], v) for k, v in point.values.items())


@settings(max_examples=60, deadline=None)
@given(recs=records)
def test_without_repeated_steps_every_line_of_the_file_is_a_row(
    tmp_path_factory: object, recs: list[tuple[int, int, float, dict[str, float]]]
) -> None:
    """With steps that only increase, the export is the file line by line (nothing merged).

    Attempts only increase too, as in a real file: a later attempt that starts below an
    earlier one's steps takes those steps over (the history rule), which is merging.
    """
    seen: set[int] = set()
    recs = [r for r in sorted(recs, key=lambda r: r[1]) if not (r[1] in seen or seen.add(r[1]))]
    attempts = sorted(r[0] for r in recs)
    recs = [(a, s, t, v) for a, (_, s, t, v) in zip(attempts, recs, strict=True)]
    run_dir = tmp_path_factory.mktemp("run")  # type: ignore[attr-defined]
    _write_metrics(run_dir, recs)
    raw = [json.loads(x) for x in (run_dir / METRICS).read_bytes().split(b"\n")[:-1]]
    buf = io.StringIO()
    write_csv(rows_of("7", run_history(run_dir)), buf)
    back = list(read_csv(io.StringIO(buf.getvalue())))
    assert [(r.attempt, r.step) for r in back] == [(d["a"], d["s"]) for d in raw]
    for row, d in zip(back, raw, strict=True):
        expected = {k: decode_value(v) for k, v in d["v"].items()}
        assert set(row.values) == set(expected)
        assert all(_same(row.values[k], v) for k, v in expected.items() if v is not None)


def test_a_resumed_attempt_wins_on_repeated_steps_in_the_export(tmp_path: Path) -> None:
    recs = [(1, s, 10.0 + s, {"loss": 1.0 / (s + 1)}) for s in range(5)]
    recs += [(2, s, 100.0 + s, {"loss": 9.0}) for s in range(3, 7)]
    _write_metrics(tmp_path / "r", recs)
    rows = rows_of("1", run_history(tmp_path / "r"))
    assert [(r.step, r.attempt) for r in rows] == [
        (0, 1),
        (1, 1),
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 2),
        (6, 2),
    ]


def test_jsonl_export_is_strict_json_with_non_finite_values_as_strings(tmp_path: Path) -> None:
    _write_metrics(tmp_path / "r", [(1, 1, 5.0, {"loss": math.nan, "g": math.inf, "x": 0.5})])
    buf = io.StringIO()
    write_jsonl(rows_of("1", run_history(tmp_path / "r")), buf)
    doc = json.loads(buf.getvalue())  # strict: would fail on a bare NaN
    assert doc == {
        "run_id": "1",
        "attempt": 1,
        "step": 1,
        "time": 5.0,
        "values": {"loss": "nan", "g": "inf", "x": 0.5},
    }


def test_columns_that_clash_with_fixed_ones_are_prefixed_and_unprefixed() -> None:
    for name in (*FIXED_COLUMNS, "metric.a", "loss"):
        assert metric_of_column(column_name(name)) == name
    assert column_name("step") != "step"


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xlsx"):
        write_rows([], io.StringIO(), "xlsx")
