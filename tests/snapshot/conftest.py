"""The snapshot tests build the app like the pilot tests: their fixtures, shared by import."""

from __future__ import annotations

import pytest

from tests.pilot.conftest import FakeActions, fake_actions, make_app  # noqa: F401


@pytest.fixture(autouse=True)
def _same_picture(deterministic_env: None) -> None:
    """Every snapshot is taken in ``deterministic_env`` (tests/conftest.py): colour, UTC."""
