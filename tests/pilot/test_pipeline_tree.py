"""The tree shows the dependency graph: what a dependent waits for, and, in the details,
its dependencies and its dependents (rows built from a real registry)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from textual.app import App, ComposeResult

from runner import identity
from runner.durable import write_json
from runner.model import Dependency, RunSpec, RunState, Status
from runner.registry import STATE, Registry
from tui.feed.rows import row_from_view
from tui.feed.snapshot import RunRow
from tui.widgets.run_tree import RunTree
from tui.widgets.tree_lines import DETAIL_FIELDS

TRAIN, EVAL, REPORT = "000001", "000002", "000003"


class TreeApp(App[None]):
    CSS_PATH = str(Path(__file__).resolve().parents[2] / "tui" / "app.tcss")

    def compose(self) -> ComposeResult:
        yield RunTree(clock=lambda: 1_800_000_000.0)


def pipeline_rows(tmp_path: Path) -> list[RunRow]:
    """train (failed) <- eval (skipped) and train <- report (--after-any, queued)."""
    reg = Registry(tmp_path)
    after = {EVAL: (Dependency(TRAIN),), REPORT: (Dependency(TRAIN, "any"),)}
    for run_id, name in ((TRAIN, "train"), (EVAL, "eval"), (REPORT, "report")):
        reg.allocate_id()
        reg.create(
            RunSpec(
                id=run_id,
                name=name,
                command=("python", f"{name}.py"),
                cwd="/",
                created_at=1.0,
                after=after.get(run_id, ()),
            )
        )
    rows = {v.id: row_from_view(v) for v in reg.list_runs()}
    rows[TRAIN] = RunRow(id=TRAIN, name="train", status=Status.RUNNING)
    return [rows[REPORT], rows[EVAL], rows[TRAIN]]


def test_rows_carry_dependencies_from_the_registry(tmp_path: Path) -> None:
    rows = {r.id: r for r in pipeline_rows(tmp_path)}
    assert rows[EVAL].after == ((TRAIN, "ok"),)
    assert rows[REPORT].after == ((TRAIN, "any"),)
    assert rows[TRAIN].after == ()


async def test_tree_shows_what_a_dependent_waits_for_and_lists_the_graph(tmp_path: Path) -> None:
    rows = [
        RunRow(id=r.id, name=r.name, status=Status.QUEUED, after=r.after) if r.after else r
        for r in pipeline_rows(tmp_path)
    ]
    app = TreeApp()
    async with app.run_test(size=(70, 20)) as pilot:
        tree = app.query_one(RunTree)
        tree.update_rows(rows)
        await pilot.pause()
        text = [tree.render_line(y).text for y in range(3)]
        assert f"← {TRAIN}" in text[0] and text[0].lstrip(" ").startswith("○ report")
        assert f"← {TRAIN}" in text[1]
        assert "←" not in text[2]  # train waits for nothing

        tree.expanded.update({TRAIN, EVAL})
        tree.rebuild()
        await pilot.pause()
        train, evaluate = tree.rows[TRAIN], tree.rows[EVAL]
        assert tree.detail_keys(train) == (*DETAIL_FIELDS, "needed by")
        assert tree.detail_keys(evaluate) == (*DETAIL_FIELDS, "after")
        assert tree.detail_value(train, "needed by") == f"{EVAL} queued, {REPORT} queued"
        assert tree.detail_value(evaluate, "after") == f"{TRAIN} running (must complete)"
        details = [ln for ln in tree.lines if ln.kind == "detail" and ln.key == TRAIN]
        assert len(details) == len(DETAIL_FIELDS) + 1
        index = tree.detail_keys(train).index("needed by")
        drawn = "".join(seg.text for seg in tree._detail_segments(train, index, 70))
        assert drawn.strip() == f"needed by {EVAL} queued, {REPORT} queued"

        # The dependency ends: the dependent no longer shows it waits (the live status wins).
        ended = [
            RunRow(id=TRAIN, name="train", status=Status.FAILED) if r.id == TRAIN else r
            for r in rows
        ]
        ended[1] = RunRow(id=EVAL, name="eval", status=Status.SKIPPED, after=((TRAIN, "ok"),))
        tree.update_rows(ended)
        await pilot.pause()
        assert "←" not in tree.render_line(tree._line_of[EVAL]).text
        assert tree.render_line(tree._line_of[EVAL]).text.lstrip(" •").startswith("⊘ eval")


def test_a_skipped_state_file_reads_back(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.allocate_id()
    reg.create(RunSpec(id=TRAIN, name="t", command=("true",), cwd="/", created_at=time.time()))
    me = identity.identity_of(os.getpid())
    assert me is not None
    state = RunState(TRAIN, 1, Status.SKIPPED, time.time(), me, reason="dependency 000009 failed")
    write_json(reg.run_dir(TRAIN) / STATE, state.to_json())
    view = reg.load(TRAIN)
    assert view.status is Status.SKIPPED and view.status.finished and not view.status.active
    assert row_from_view(view).reason == "dependency 000009 failed"
