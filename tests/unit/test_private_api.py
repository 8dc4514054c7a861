"""No ``_private`` name of a third-party package is used outside its one sanctioned seam.

A dependency's private names change without notice; an upgrade then breaks the TUI silently.
The scan reads every module of runner/, governor/, tui/ and bench/ and flags:

- ``import pkg._mod`` / ``from pkg._mod import x`` / ``from pkg import _x``;
- ``Name._x`` where ``Name`` was imported from a third-party package;
- in a class that subclasses a third-party class, ``self._x`` / ``super()._x`` / ``def _x``
  where the base (or one of its ancestors) owns ``_x``: overriding or reading a private member.

The standard library is out of scope (it is versioned with the interpreter this project pins,
and ``argparse`` offers no public walk over a parser's actions).
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runner", "governor", "tui", "bench")
OWN = {"runner", "governor", "tui", "bench", "tests", "examples"}
# Each seam wraps one dependency's internals and has a test that fails loudly on upgrade.
SEAMS = {
    "tui/seams.py": "watchfiles' RustNotify, plotext's theme table (tests/unit/test_seams.py)",
    "tui/widgets/output_pane.py": "Textual Log's line cache (tests/pilot/test_log_seam.py)",
}


def _third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top not in OWN and top not in sys.stdlib_module_names and top != "__future__"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@functools.cache
def _source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        return ""


def _owns(base: type, name: str) -> bool:
    """Whether ``base`` or an ancestor defines ``name`` (as a member or a ``self.`` attribute)."""
    return any(
        name in vars(k) or f"self.{name} " in _source(k) or f"self.{name}:" in _source(k)
        for k in base.__mro__
        if k is not object
    )


def _imports(tree: ast.Module) -> tuple[dict[str, str], list[tuple[int, str]]]:
    bound: dict[str, str] = {}
    hits: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _third_party(alias.name):
                    if any(_private(p) for p in alias.name.split(".")):
                        hits.append((node.lineno, f"import {alias.name}"))
                    bound[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else alias.name.split(".")[0]
                    )
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not _third_party(node.module):
                continue
            if any(_private(p) for p in node.module.split(".")):
                hits.append((node.lineno, f"from {node.module} import ..."))
            for alias in node.names:
                if _private(alias.name):
                    hits.append((node.lineno, f"from {node.module} import {alias.name}"))
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound, hits


def _resolve(dotted: str) -> object:
    module, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return importlib.import_module(dotted)


def _private_uses(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    bound, hits = _imports(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
        ):
            hits.append((node.lineno, f"{node.value.id}.{node.attr}"))
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [
            base
            for b in node.bases
            if isinstance(b, ast.Name) and b.id in bound
            if isinstance(base := _resolve(bound[b.id]), type)
        ]
        for sub in ast.walk(node) if bases else ():
            names = []
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and _private(sub.name):
                names.append(sub.name)
            if isinstance(sub, ast.Attribute) and _private(sub.attr):
                owner = sub.value
                on_self = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
                on_super = isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super"
                if on_self or on_super:
                    names.append(sub.attr)
            hits += [
                (sub.lineno, f"{node.name} uses its base's {n}")
                for n in names
                if any(_owns(b, n) for b in bases)
            ]
    return sorted(set(hits))


def test_no_private_api_of_a_dependency_outside_its_seam() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in SEAMS:
                continue
            found += [f"{rel}:{n}: {what}" for n, what in _private_uses(path.read_text())]
    assert found == [], (
        "private API of a dependency (use the public one, or a seam):\n" + "\n".join(found)
    )


def test_the_scan_sees_each_kind_of_private_use() -> None:
    """The scan itself: each pattern it claims to catch is caught, the public forms are not."""
    source = """
import watchfiles._rust_notify
from plotext._dict import themes
from textual_plotext.plot import _sequence
from textual.widgets import Log
import rich

rich._console = None

class Mine(Log):
    def _update_size(self, updates, lines):
        return self._lines

    def public(self):
        return super()._process_line("x"), self._mine
"""
    found = {what for _, what in _private_uses(source)}
    assert found == {
        "import watchfiles._rust_notify",
        "from plotext._dict import ...",
        "from textual_plotext.plot import _sequence",
        "rich._console",
        "Mine uses its base's _update_size",
        "Mine uses its base's _lines",
        "Mine uses its base's _process_line",
    }
    public = (
        "import argparse\nfrom textual.widgets import Log\n"
        "class A(Log):\n    def _mine(self): pass\n"
    )
    assert _private_uses(public) == []


def test_every_seam_is_still_needed() -> None:
    """A seam that no longer touches private API should leave the allowlist."""
    for rel in SEAMS:
        assert _private_uses((ROOT / rel).read_text()), f"{rel} uses no private API any more"
