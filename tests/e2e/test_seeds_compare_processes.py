"""The tests of ``tests/unit/test_seeds_compare.py`` that start a real process.

That file: Seed groups, their aggregation, and the pure comparison of runs
"""

from __future__ import annotations

import subprocess
import sys


def test_matplotlib_is_not_loaded_by_the_cli_or_the_tui() -> None:
    code = (
        "import sys, tui.cli.parser, tui.app, tui.cli.export, tui.cli.compare;"
        "tui.cli.parser.build_parser();"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
