"""What every command-line tool has: documented exit codes, one-line errors, ``--version``.

Exit codes: 0 success, 1 failure (the run or the action failed), 2 usage error, 141 when
the reader of our output went away (``backprop ls | head -1``): the status a Unix tool killed
by SIGPIPE reports, with no message.
"""

from __future__ import annotations

import argparse
import signal
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 128 + signal.SIGPIPE  # what `git log | head -1` reports for git under pipefail


class UsageError(Exception):
    """Bad input from the user: exit code 2."""


COMMON_EXITS = "0 success; 1 failure (the action failed, or no such run); 2 usage error"
EXIT_CODES: dict[str, str] = {
    "run": (
        "0 submitted (with --follow: the run completed); 1 it could not be submitted (with"
        " --follow: it ended otherwise); 2 usage error, including an unknown --after run, a"
        " dependency cycle or a bad {after...} placeholder; 130 interrupted"
    ),
    "wait": (
        "0 every run completed; 1 at least one ended otherwise (failed, stopped, timeboxed,"
        " lost, skipped or corrupt); 2 usage error (no runs named, unknown run); 124 the"
        " --timeout passed first; 130 interrupted"
    ),
    "stop": "0 every run acted on; 1 at least one could not be (each is reported); 2 usage",
    "logs": "0 printed (with -f: until the run ended or Ctrl-C); 1 no such run; 2 usage error",
    "completion": "0 the script was printed; 2 unknown shell",
    "tui": "0 closed normally (runs keep running); 1 could not start; 2 usage error",
}
for _name in ("pause", "continue", "start", "rm"):
    EXIT_CODES[_name] = EXIT_CODES["stop"]
EXIT_CODES["demo"] = EXIT_CODES["tui"]


def exit_epilog(command: str | None) -> str:
    """The ``--help`` epilog of ``command`` (``None``: the top-level one)."""
    if command is None:
        return (
            "exit status: 0 success, 1 failure, 2 usage error, 124 `wait --timeout` passed,"
            " 130 interrupted; each command's --help says what they mean for it"
        )
    return "exit status: " + EXIT_CODES.get(command, COMMON_EXITS)


def version() -> str:
    """The installed package's version (from its metadata)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("backprop")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class VersionAction(argparse.Action):
    """``--version``: looks the version up only when asked (reading metadata costs ms)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kw: Any) -> None:
        print(f"backprop {version()}")
        parser.exit()
