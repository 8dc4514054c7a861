"""One options object for a submission: every run of it gets the same validated fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runner.control.submission import SubmitOptions, submit, submit_many
from runner.registry import Registry
from runner.tickets import Queue


def test_options_reach_every_run_of_a_submission(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.ensure()
    opts = SubmitOptions(
        timeout_s=90.0, group="sw", env={"A": "1"}, priority=7, checkpoint_globs=("*.pt",)
    )
    specs = submit_many(reg, [(["true"], "a"), (["false"], "b")], opts)
    queue = Queue(reg.root)
    for spec in specs:
        stored = reg.read_spec(spec.id)
        assert (stored.timeout_s, stored.group, stored.env) == (90.0, "sw", {"A": "1"})
        assert "*.pt" in stored.checkpoint_globs
        ticket = queue.read_ticket(spec.id)
        assert ticket is not None and ticket.priority == 7 and ticket.timeout_s == 90.0


def test_start_false_records_without_a_ticket(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.ensure()
    spec = submit(reg, ["true"], name="only", options=SubmitOptions(start=False))
    assert reg.read_spec(spec.id).name == "only"
    assert Queue(reg.root).read_ticket(spec.id) is None


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SubmitOptions().priority = 3  # type: ignore[misc]  # the point: it must refuse
