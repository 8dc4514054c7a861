"""Backprop's environment variable names are spelled once, in :mod:`runner.envnames` (issue 13)."""

from __future__ import annotations

import ast
from pathlib import Path

from runner import envnames

ROOT = Path(__file__).resolve().parents[2]


def _literals(path: Path) -> list[tuple[int, str]]:
    """String and bytes constants that name a variable (docstrings are prose, not spellings)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and id(node) not in docs:
            value = (
                node.value.decode("ascii", "replace")
                if isinstance(node.value, bytes)
                else node.value
            )
            if isinstance(value, str) and value.startswith("BACKPROP_"):
                found.append((node.lineno, value))
    return found


def test_no_module_spells_a_variable_name_itself() -> None:
    spelled = {
        f"{path.relative_to(ROOT)}:{line}: {value}"
        for package in ("runner", "governor", "tui", "bench")
        for path in (ROOT / package).rglob("*.py")
        if path.name != "envnames.py"
        for line, value in _literals(path)
    }
    assert spelled == set()


def test_the_names_are_distinct_and_prefixed() -> None:
    names = [v for k, v in vars(envnames).items() if k.isupper()]
    assert len(names) == len(set(names)) >= 15
    assert all(n.startswith("BACKPROP_") for n in names)
