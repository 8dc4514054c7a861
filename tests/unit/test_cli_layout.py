"""The ``backprop`` CLI's layout: a package of small command modules, no import cycles.

grimp (import-linter's graph) reads every import statement, the lazy ones inside functions
too, so a cycle hidden behind a function-level import is still caught.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "tui" / "cli"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("tui")


def test_the_demo_and_the_cli_import_each_other_in_one_direction_only(
    graph: grimp.ImportGraph,
) -> None:
    """``backprop demo`` opens tui.demo, which prints with the CLI's table: never a loop."""
    cli = graph.find_descendants("tui.cli") | {"tui.cli"}
    assert any(graph.find_shortest_chain(importer=m, imported="tui.demo") for m in cli)
    looped = {
        m
        for m in cli
        if graph.find_shortest_chain(importer=m, imported="tui.demo")
        and graph.find_shortest_chain(importer="tui.demo", imported=m)
    }
    assert looped == set()


def test_every_cli_module_holds_one_concept_within_400_lines() -> None:
    long = {
        p.name: n
        for p in CLI.glob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
        and not p.read_text().startswith("# over 400 lines: ")
    }
    assert long == {}


def test_the_package_root_stays_light() -> None:
    text = (CLI / "__init__.py").read_text()
    imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
    assert imports == [
        "from __future__ import annotations",
        "from collections.abc import Sequence",
    ]
