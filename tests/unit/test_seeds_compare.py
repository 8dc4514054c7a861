"""Seed groups, their aggregation, and the pure comparison of runs."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.compare import RunDocs, compare_docs, parse_arguments
from runner.model import RunSpec
from runner.seeds import aggregate, seed_groups, seed_of_name, split_seed


def spec(run_id: str, command: list[str], name: str = "t", cwd: str = "/w") -> RunSpec:
    return RunSpec(id=run_id, name=name, command=tuple(command), cwd=cwd, created_at=0.0)


@pytest.mark.parametrize(
    ("command", "rest", "seed"),
    [
        (["py", "t.py", "--seed", "3", "--lr", "1"], ("py", "t.py", "--lr", "1"), "3"),
        (["py", "t.py", "--seed=3"], ("py", "t.py"), "3"),
        (["py", "t.py", "seed=3", "lr=1"], ("py", "t.py", "lr=1"), "3"),
        (["py", "t.py", "--seeds", "3"], ("py", "t.py", "--seeds", "3"), None),
        (["py", "t.py", "--seed"], ("py", "t.py", "--seed"), None),
    ],
)
def test_split_seed(command: list[str], rest: tuple[str, ...], seed: str | None) -> None:
    assert split_seed(command) == (rest, seed)


def test_runs_that_differ_only_in_seed_form_one_group() -> None:
    specs = [
        spec("1", ["py", "t.py", "--seed", "0", "--lr", "1"], "t seed=0"),
        spec("2", ["py", "t.py", "--lr", "1", "--seed", "1"], "t seed=1"),
        spec("3", ["py", "t.py", "--seed", "2", "--lr", "2"]),  # another lr: not the group
        spec("4", ["py", "t.py", "--seed", "2", "--lr", "1"], cwd="/elsewhere"),
        spec("5", ["py", "t.py", "--seed", "5", "--lr", "1"]),
    ]
    (group,) = seed_groups(specs)
    assert group.run_ids == ("1", "2", "5") and group.seeds == ("0", "1", "5")
    assert group.label == "t"


def test_a_seed_tag_in_the_name_groups_runs_with_equal_commands() -> None:
    specs = [spec(str(i), ["./train.sh"], f"big seed={i}") for i in range(3)]
    (group,) = seed_groups(specs)
    assert group.run_ids == ("0", "1", "2") and group.label == "big"
    assert seed_of_name("x,seed=7,lr=1") == "7" and seed_of_name("no seeds") is None


def test_the_same_seed_twice_is_not_a_seed_group() -> None:
    specs = [spec(str(i), ["py", "t.py", "--seed", "1"]) for i in range(2)]
    assert seed_groups(specs) == []


curves = st.lists(
    st.lists(
        st.tuples(st.integers(0, 20), st.floats(-1e6, 1e6, allow_nan=False)),
        unique_by=lambda p: p[0],
        max_size=15,
    ),
    min_size=1,
    max_size=5,
)


@given(curves)
def test_aggregate_is_mean_std_and_range_per_step(raw: list[list[tuple[int, float]]]) -> None:
    data = [([s for s, _ in sorted(c)], [v for _, v in sorted(c)]) for c in raw]
    band = aggregate(data)
    assert list(band.steps) == sorted({s for c in raw for s, _ in c})
    for i, step in enumerate(band.steps):
        vals = [v for c in raw for s, v in c if s == step]
        assert band.n[i] == len(vals)
        assert math.isclose(band.mean[i], statistics.fmean(vals), rel_tol=1e-9, abs_tol=1e-6)
        assert band.lo[i] == min(vals) and band.hi[i] == max(vals)
        assert band.lo[i] - 1e-6 <= band.mean[i] <= band.hi[i] + 1e-6
        assert band.std[i] >= 0 and (len(vals) > 1 or band.std[i] == 0)


def test_aggregate_skips_non_finite_values() -> None:
    band = aggregate([([1, 2], [1.0, math.nan]), ([1, 2], [3.0, 4.0])])
    assert band.steps == (1, 2) and band.mean == (2.0, 4.0) and band.n == (2, 1)


def test_parse_arguments_reads_the_common_forms() -> None:
    cmd = [
        "/usr/bin/python3",
        "-u",
        "/w/t.py",
        "--lr",
        "0.1",
        "--x=2",
        "epochs=3",
        "--amp",
        "--wd",
        "-1e-4",
        "data",
    ]
    assert parse_arguments(cmd, "/w/t.py") == {
        "lr": "0.1",
        "x": "2",
        "epochs": "3",
        "amp": "true",
        "wd": "-1e-4",
        "arg1": "data",
    }


def _docs(run_id: str, command: list[str], commit: str, dirty: bool, loss: float) -> RunDocs:
    s = spec(run_id, command)
    s_json = {**s.to_json(), "script": "/w/t.py", "env": {"TOKEN": f"secret{run_id}", "A": "1"}}
    prov = {"git": {"commit": commit, "dirty": dirty, "branch": "main"}, "python": {}}
    view = {
        "name": "t",
        "status": "completed",
        "primary_metric": "loss",
        "loss": loss,
        "best_loss": loss / 2,
        "step": 10,
        "metrics": {"loss": loss, "acc": 0.5},
    }
    return RunDocs(run_id, s_json, prov, view)


def test_compare_shows_what_differs_and_always_commit_and_results() -> None:
    a = _docs("1", ["py", "/w/t.py", "--lr", "0.1", "--bs", "8"], "abc", True, 0.4)
    b = _docs("2", ["py", "/w/t.py", "--lr", "0.2", "--bs", "8"], "def", True, 0.3)
    result = compare_docs([a, b])
    assert result["arguments"] == {"lr": ["0.1", "0.2"]}
    assert result["provenance"]["commit"] == ["abc", "def"]
    assert result["provenance"]["dirty"] == [True, True]
    assert "branch" not in result["provenance"]
    assert result["metrics"]["final loss"] == [0.4, 0.3]
    assert result["metrics"]["best loss"] == [0.2, 0.15]
    assert result["env"] == ["TOKEN"]  # names only
    assert "secret1" not in repr(result)
