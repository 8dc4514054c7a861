"""The TUI's new-run and fork dialogs refuse id-shaped names like the CLI (issue 12 item 8)."""

from __future__ import annotations

import pytest

from tui.actions import parse_new_run
from tui.messages import NewRunRequest
from tui.screens.dialogs import fork_dialog


def test_the_new_run_dialog_refuses_an_id_shaped_name() -> None:
    with pytest.raises(ValueError, match="looks like a run id"):
        parse_new_run(NewRunRequest(target="train.py", name="000001"))
    assert parse_new_run(NewRunRequest(target="train.py", name="run-1")).name == "run-1"


def test_the_fork_dialog_refuses_an_id_shaped_name() -> None:
    dialog = fork_dialog("base")
    with pytest.raises(ValueError, match="looks like a run id"):
        dialog.parse({"changes": "--lr 1", "name": "42", "timeout": ""})
