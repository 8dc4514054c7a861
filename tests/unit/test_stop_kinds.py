"""Stop kinds are one Literal type (issue 13): what a request or a recorded state may name."""

from __future__ import annotations

import pytest

from runner.model import Status
from runner.supervisor.exits import STOP_KINDS, as_stop_kind, classify, classify_unknown


def test_the_kinds_are_the_literal_s_values() -> None:
    assert STOP_KINDS == ("stop", "kill", "timeout")


@pytest.mark.parametrize("value", ["stop", "kill", "timeout"])
def test_a_kind_is_read_back_as_itself(value: str) -> None:
    assert as_stop_kind(value) == value


@pytest.mark.parametrize("value", [None, "", "pause", "STOP", 1])
def test_anything_else_is_no_kind(value: object) -> None:
    assert as_stop_kind(value) is None


def test_each_kind_names_its_end() -> None:
    assert classify(-2, as_stop_kind("stop"), 1, None)[0] is Status.STOPPED
    assert classify(-9, as_stop_kind("kill"), 3, None)[0] is Status.STOPPED
    assert classify(-2, as_stop_kind("timeout"), 1, None)[0] is Status.TIMEBOXED
    assert classify_unknown(as_stop_kind("timeout"), None)[0] is Status.TIMEBOXED
    assert classify(1, as_stop_kind("bogus"), 0, None)[0] is Status.FAILED
