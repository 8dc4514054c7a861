"""The app takes a snapshot's changed rows alone, and ends where a full comparison ends."""

from __future__ import annotations

import json
from dataclasses import replace

from runner.model import Status
from tests.pilot.conftest import settle
from tui.feed.snapshot import Snapshot

SIZE = (120, 36)
RUNNING = "000008"


def _append_step(app, step: int) -> None:
    folder = app.registry.runs_dir / RUNNING
    with open(folder / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"a": 9, "s": step, "t": 1.0, "v": {"loss": 0.125}}) + "\n")
    app.producer.handle_changes([str(folder / "metrics.jsonl")])


async def test_a_changed_row_reaches_the_tree_through_the_delta(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = app.snapshot
        _append_step(app, 77_777)
        snap = app.producer.tick(force=True)
        assert snap is not None and snap.changes_since(before) is not None
        assert [r.id for r in snap.changed or ()] == [RUNNING]
        app._apply(snap)
        await pilot.pause()
        assert app.run_tree.rows[RUNNING].step == 77_777
        # The tree holds exactly the rows a full comparison would have given it.
        assert tuple(app.run_tree.rows.values()) == snap.runs
        assert app.run_tree.order == tuple(r.id for r in snap.runs)


async def test_a_failure_in_a_delta_rings_once(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        snap = app.snapshot
        row = next(r for r in snap.runs if r.id == RUNNING)
        failed = replace(row, status=Status.FAILED, reason="exit code 1")
        runs = tuple(failed if r.id == RUNNING else r for r in snap.runs)
        sent = len(app.alerts.sent)
        app._apply(Snapshot(seq=snap.seq + 1, runs=runs, changed=(failed,), live=()))
        await pilot.pause()
        assert [a.run_id for a in app.alerts.sent[sent:]] == [RUNNING]
        assert app.run_tree.rows[RUNNING].status is Status.FAILED
        assert "running" not in str(app.run_tree.border_title)  # counted from the live rows
        # The same rows again, as a full snapshot: nothing new to ring about.
        app._apply(Snapshot(seq=snap.seq + 5, runs=runs))
        assert len(app.alerts.sent) == sent + 1
