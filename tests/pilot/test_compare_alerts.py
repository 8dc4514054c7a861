"""Pilot tests: the compare view's table and seed band, palette exports, failure alerts."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
import sample_registry

from runner.model import Status
from tests.pilot.conftest import goto, settle
from tui.alerts import Alert, FailureAlerts, new_failures, sequences
from tui.messages import SnapshotReady
from tui.palette import commands
from tui.widgets.compare_table import CompareTable
from tui.widgets.plot_pane import MetricPlot

SIZE = (120, 36)


async def test_compare_shows_the_seed_band_and_what_differs(make_app, tmp_path: Path) -> None:
    registry = sample_registry.build_seeds(tmp_path / "seeds")
    app = make_app(registry=registry)
    async with app.run_test(size=SIZE) as pilot:
        for run_id in ("000001", "000002", "000003", "000004"):
            await goto(pilot, run_id)
            await pilot.press("space")
        await pilot.press("c")
        await settle(pilot)
        labels = [c.label for c in app.query_one("#compare-plot", MetricPlot).curves]
        assert labels == ["resnet mean of 3 seeds", "resnet +1σ", "resnet -1σ", "resnet lr=1e-3"]
        result = app.query_one("#compare-table", CompareTable).result
        assert result is not None
        assert set(result["arguments"]) == {"lr", "batch", "seed"}
        assert result["provenance"]["dirty"][0] is True  # 000004, drawn first
        assert result["provenance"]["commit"][0].startswith("c41d0b9e")
        # The tree's group line carries the seeds' spread.
        line = next(i for i, ln in enumerate(app.run_tree.lines) if ln.kind == "group")
        text = "".join(
            seg.text for seg in app.run_tree.render_line(line - app.run_tree.scroll_offset.y)
        )
        assert "resnet-seeds (3) loss" in text and "±" in text


async def test_palette_exports_the_marked_runs(
    make_app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = sample_registry.build_seeds(tmp_path / "seeds")
    monkeypatch.chdir(tmp_path)
    app = make_app(registry=registry)
    async with app.run_test(size=SIZE) as pilot:
        for run_id in ("000001", "000004"):
            await goto(pilot, run_id)
            await pilot.press("space")
        titles = {c.title: c for c in commands(app)}
        assert set(titles) == {"Export metrics to CSV", "Plot curves to PNG"}
        titles["Export metrics to CSV"].callback()
        await settle(pilot)
        titles["Plot curves to PNG"].callback()
        await settle(pilot)
    text = (tmp_path / "backprop-000001-000004.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert {r["run_id"] for r in rows} == {"000001", "000004"}
    assert len(rows) == 2 * 121  # steps 0..600 by 5, both runs
    assert (tmp_path / "backprop-000001-000004.png").read_bytes()[:4] == b"\x89PNG"


def test_only_a_change_to_failed_or_lost_alerts() -> None:
    class Row:
        def __init__(self, id: str, status: Status, reason: str = "") -> None:
            self.id, self.name, self.status, self.reason = id, f"n{id}", status, reason

    before, alerts = new_failures(None, [Row("1", Status.FAILED)])
    assert alerts == []  # already failed when the TUI opened: no alert
    runs = [Row("1", Status.FAILED), Row("2", Status.RUNNING)]
    before, _ = new_failures(before, runs)
    runs = [Row("1", Status.FAILED), Row("2", Status.FAILED, "exit code 1; boom\x1b[2J")]
    before, alerts = new_failures(before, runs)
    assert [a.run_id for a in alerts] == ["2"]
    _, alerts = new_failures(before, runs)
    assert alerts == []  # once


def test_osc_sequences_and_tmux_passthrough() -> None:
    alert = Alert("000002", "n2", Status.FAILED, "exit code 1; boom\x1b[2J")
    plain = sequences(alert, ("osc9", "osc777"), tmux=False)
    assert plain == (
        "\x1b]9;Backprop: run 000002 (n2) failed: exit code 1, boom\x07"
        "\x1b]777;notify;Backprop;run 000002 (n2) failed: exit code 1, boom\x07"
    )
    wrapped = sequences(alert, ("osc9",), tmux=True)
    assert (
        wrapped
        == "\x1bPtmux;\x1b\x1b]9;Backprop: run 000002 (n2) failed: exit code 1, boom\x07\x1b\\"
    )


async def test_a_run_that_fails_while_the_tui_is_open_rings_and_notifies(make_app) -> None:
    app = make_app()
    sent: list[str] = []
    rings: list[int] = []
    async with app.run_test(size=SIZE) as pilot:
        app.alerts = FailureAlerts(lambda: rings.append(1), tmux=False)
        app.alerts.write = sent.append
        first = app.snapshot
        app.post_message(SnapshotReady(first))  # the first look: nothing to say
        await pilot.pause()
        assert sent == [] and rings == []
        runs = tuple(
            replace(r, status=Status.FAILED, reason="exit code 1") if r.id == "000009" else r
            for r in first.runs
        )
        app.post_message(SnapshotReady(replace(first, runs=runs)))
        await pilot.pause()
        app.post_message(SnapshotReady(replace(first, runs=runs)))  # the same again: no alert
        await pilot.pause()
    assert rings == [1]
    assert sent == [
        "\x1b]9;Backprop: run 000009 (vit-tiny) failed: exit code 1\x07"
        "\x1b]777;notify;Backprop;run 000009 (vit-tiny) failed: exit code 1\x07"
    ]
