"""Names cannot pose as ids (issue 12 item 8): ``--name 000001`` was accepted for run 000002."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.control import submission
from runner.control.submission import SubmitOptions
from runner.durable import write_json
from runner.model import RunSpec, Status, validate_new_name
from runner.registry import Registry


@pytest.mark.parametrize("name", ["000001", "1", "42", "000000000001", "0000000000001", "12 "])
def test_all_digit_names_are_refused_in_one_line(name: str) -> None:
    with pytest.raises(ValueError, match="looks like a run id") as err:
        validate_new_name(name)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["run1", "1e-3", "000001-fork", "lr 1", "v2"])
def test_names_with_anything_but_digits_are_fine(name: str) -> None:
    assert validate_new_name(name) == name


def test_submit_refuses_before_allocating_an_id(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "home")
    with pytest.raises(ValueError, match="looks like a run id"):
        submission.submit(reg, ["true"], name="000001", options=SubmitOptions(start=False))
    assert reg.ids() == []


def test_a_script_named_by_digits_gets_a_name_that_is_not_an_id() -> None:
    name = submission.default_name(["python3", "/x/123.py"], "/x/123.py")
    assert validate_new_name(name) == "run-123"


def test_a_run_named_so_before_the_rule_still_lists(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "home")
    reg.ensure()
    (reg.runs_dir / "000001").mkdir()
    old = RunSpec(id="000001", name="000007", command=("true",), cwd="/", created_at=time.time())
    write_json(reg.runs_dir / "000001" / "spec.json", old.to_json())
    assert reg.load("000001").status is not Status.CORRUPT
