"""Detached children (supervisor, adopter, dispatcher) import this very package first."""

from __future__ import annotations

import os
from pathlib import Path

import runner
from runner.control import spawn


def test_the_package_root_comes_first_on_a_childs_path() -> None:
    root = Path(runner.__file__).resolve().parent.parent
    parts = spawn._pythonpath({"PYTHONPATH": "/elsewhere"}).split(os.pathsep)
    assert parts == [str(root), "/elsewhere"]
    # Not runner/ itself (the adopter's copy once put it there: runner/torch.py would have
    # shadowed torch in it).
    assert (Path(parts[0]) / "runner" / "__init__.py").is_file()
    assert spawn._pythonpath({}).split(os.pathsep) == [str(root)]
