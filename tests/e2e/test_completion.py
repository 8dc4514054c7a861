"""Shell completion in a real bash: the script ``backprop completion bash`` prints, sourced,
completes subcommands from the parser and run ids from the registry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash"),
]

COMPLETE = r"""
source "$1"
complete_line() {
    COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
    read -ra COMP_WORDS <<< "$1"
    [[ "$1" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMPREPLY=()
    local fn
    fn=$(complete -p backprop | sed -E 's/.* -F ([^ ]+) .*/\1/')
    "$fn" backprop "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
    printf '%s\n' "${COMPREPLY[@]}" | sort
}
complete_line "$2"
"""


def complete(cli: Cli, tmp_path: Path, line: str) -> list[str]:
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        launcher = bin_dir / "backprop"  # the console script, running this checkout
        launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -m tui.cli "$@"\n')
        launcher.chmod(0o755)
        script = cli("completion", "bash").stdout
        (tmp_path / "backprop.bash").write_text(script)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "BACKPROP_HOME": str(cli.home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    script = str(tmp_path / "backprop.bash")
    proc = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", COMPLETE, "complete", script, line],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    # A lone candidate carries the space bash would type after it.
    return [w.strip() for w in proc.stdout.splitlines() if w.strip()]


def test_bash_completes_subcommands_options_and_run_ids(cli: Cli, tmp_path: Path) -> None:
    from tui.cli.parser import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    expected = sorted(name for name in subparsers.choices if name.startswith("st"))
    assert expected == ["start", "status", "stop"]
    assert complete(cli, tmp_path, "backprop st") == expected

    (cli.cwd / "quick.py").write_text("print('hi')\n")
    ids = [cli.json("run", "--name", n, "quick.py")["id"] for n in ("first", "second")]
    assert complete(cli, tmp_path, "backprop stop 0") == sorted(ids)
    assert complete(cli, tmp_path, "backprop show sec") == ["second"]
    assert "--after" in complete(cli, tmp_path, "backprop run --aft")
    assert complete(cli, tmp_path, "backprop ls --li") == ["--limit"]
