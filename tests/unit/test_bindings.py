"""Every action is named once (``tui.bindings.ActionName``) and carried out by the app."""

from __future__ import annotations

from typing import get_args

from tui.app import BackpropApp
from tui.bindings import BINDINGS, COMMANDS, HINT_LABELS, HINT_ORDER, ActionName, hints


def test_every_action_name_has_a_method_and_every_binding_a_name() -> None:
    names = set(get_args(ActionName))
    missing = sorted(n for n in names if not callable(getattr(BackpropApp, f"action_{n}", None)))
    assert missing == []
    assert {b.action for b in BINDINGS} == names
    assert {c.action for c in COMMANDS} == names - {"focus_tree"}
    assert len({c.key for c in COMMANDS}) == len(COMMANDS)  # no key does two things


def test_the_footer_names_only_what_the_table_holds() -> None:
    assert set(HINT_ORDER) | set(HINT_LABELS) <= {c.action for c in COMMANDS}
    writable, readonly = hints(readonly=False), hints(readonly=True)
    assert "r new" in writable and "r new" not in readonly
    assert readonly.startswith("read-only") and "c compare" in readonly
