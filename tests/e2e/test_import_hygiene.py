"""The core never imports the UI, and the monitor never imports torch.

Each module is imported in a fresh interpreter and ``sys.modules`` is checked, so an import
buried in any module of the chain is caught.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Training-side modules that may (lazily) use torch.
TORCH_ALLOWED = {"runner.torch", "runner.checkpoints.inspection"}


def modules(package: str) -> list[str]:
    path = ROOT / package.replace(".", "/")
    found = [package]
    for m in pkgutil.iter_modules([str(path)]):
        if m.name == "__main__":
            continue
        name = f"{package}.{m.name}"
        # subpackages (runner.metrics, runner.checkpoints, ...): every module in them too
        found += modules(name) if m.ispkg else [name]
    return found


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("module", modules("runner") + modules("governor"))
def test_core_never_imports_textual(module: str) -> None:
    loaded = loaded_after_import(module)
    assert not any(m == "textual" or m.startswith("textual.") for m in loaded), module
    assert "rich" not in loaded, module
    if module not in TORCH_ALLOWED:
        assert "torch" not in loaded, module


def test_cli_listing_path_imports_neither_textual_nor_torch() -> None:
    loaded = loaded_after_import("tui.cli.entry")  # main and every command module
    assert "textual" not in loaded and "torch" not in loaded


def test_report_helper_is_cheap_to_import() -> None:
    loaded = loaded_after_import("runner")
    heavy = {"psutil", "textual", "torch", "numpy", "pynvml", "watchfiles", "tomli_w"}
    assert not (heavy & loaded)
