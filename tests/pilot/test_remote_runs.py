"""Runs on Slurm and Ray in the real app: where they run, the engine contradicting us, the
backend filter. Their files are written by hand (tests/remote_runs.py); local runs look as
before (the snapshot tests hold that)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests import remote_runs
from tests.pilot.conftest import goto, settle

SIZE = (120, 36)
LOCAL, BIG, WAIT, RAY = "000001", "000002", "000003", "000004"


def _line_of(tree: Any, run_id: str) -> str:
    y = next(i for i, ln in enumerate(tree.lines) if ln.kind == "run" and ln.key == run_id)
    return str(tree.render_line(y - int(tree.scroll_offset.y)).text)


def _details(tree: Any, run_id: str) -> dict[str, str]:
    row = tree.rows[run_id]
    return {k: tree.detail_value(row, k) for k in tree.detail_keys(row)}


async def test_the_tree_shows_where_remote_runs_are(make_app: Any, tmp_path: Path) -> None:
    app = make_app(registry=remote_runs.build(tmp_path / "remote"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.run_tree
        assert {ln.key for ln in tree.lines if ln.kind == "run"} == {LOCAL, BIG, WAIT, RAY}
        assert "@slurm ≠" in _line_of(tree, BIG)  # Slurm says ended, we say running
        assert "@slurm" in _line_of(tree, WAIT) and "≠" not in _line_of(tree, WAIT)
        assert "@ray" in _line_of(tree, RAY) and "≠" not in _line_of(tree, RAY)
        assert "@" not in _line_of(tree, LOCAL)

        await goto(pilot, BIG)
        await pilot.press("right")  # expand
        await pilot.pause()
        big = _details(tree, BIG)
        assert big["backend"] == "slurm job 4242 on node07"
        assert big["engine"] == "ended (COMPLETED), but ours is running"
        keys = [ln for ln in tree.lines if ln.kind == "detail" and ln.key == BIG]
        assert len(keys) == len(tree.detail_keys(tree.rows[BIG]))
        wait = _details(tree, WAIT)
        assert wait["status"] == "queued: slurm: Resources"  # Slurm's pending reason
        assert wait["backend"] == "slurm job 4243, host not known yet"
        assert _details(tree, RAY)["backend"] == "ray submission backprop-000004-1 on raynode1"
        assert "backend" not in _details(tree, LOCAL)

        await pilot.press("slash", *"backend:slurm", "enter")
        await pilot.pause()
        assert {ln.key for ln in tree.lines if ln.kind == "run"} == {BIG, WAIT}
        await pilot.press("slash", "ctrl+u", *"backend:local", "enter")
        await pilot.pause()
        assert {ln.key for ln in tree.lines if ln.kind == "run"} == {LOCAL}
        await pilot.press("slash", "ctrl+u", *"ray", "enter")
        await pilot.pause()
        assert {ln.key for ln in tree.lines if ln.kind == "run"} == {RAY}
