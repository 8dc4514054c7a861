"""The UI's import-linter contracts hold: widgets and screens never read files.

``lint-imports`` runs the two contracts of ``pyproject.toml`` (ids below) on the code, and on
a copy where a widget imports the registry, to show the contract is not vacuous.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ("widgets-read-no-files", "screens-read-no-files")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("import-linter is not installed: pip install -e '.[dev]'")
    args = [a for c in CONTRACTS for a in ("--contract", c)]
    return subprocess.run(
        [exe, "--no-cache", *args],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        timeout=120,
    )


def test_widgets_and_screens_read_no_files() -> None:
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 kept, 0 broken" in proc.stdout


def test_a_widget_that_reads_the_registry_breaks_the_contract(tmp_path: Path) -> None:
    for package in ("runner", "governor", "tui"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    widget = tmp_path / "tui" / "widgets" / "gpu_footer.py"
    widget.write_text(widget.read_text() + "\nfrom runner.registry import Registry  # noqa\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert "tui.widgets.gpu_footer -> runner.registry" in proc.stdout


def test_a_widget_reaching_a_tail_through_another_module_breaks_the_contract(
    tmp_path: Path,
) -> None:
    """Indirect imports count too: only ``tui.feed.snapshot`` of the feed is open to widgets."""
    for package in ("runner", "governor", "tui"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "tui" / "go_between.py").write_text(
        "from tui.feed.tails import OutputTail  # noqa\n"
    )
    widget = tmp_path / "tui" / "widgets" / "gpu_footer.py"
    widget.write_text(widget.read_text() + "\nimport tui.go_between  # noqa\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert "tui.go_between -> tui.feed.tails" in proc.stdout
