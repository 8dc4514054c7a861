"""``main``: parse, dispatch to the command, map its errors to exit codes (one line each)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from runner.config import ConfigError
from runner.control.errors import LifecycleError
from runner.registry import RunNotFound
from tui.cli import completion
from tui.cli.context import Context
from tui.cli.conventions import EXIT_FAIL, EXIT_OK, EXIT_PIPE, EXIT_USAGE, UsageError
from tui.cli.parser import build_parser
from tui.cli.run import _protect_run_separator

NO_FORK = frozenset({"tui"})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``backprop`` console script."""
    own_process = argv is None  # the process's own command line, not a caller's list
    parser = build_parser()
    completion.autocomplete(parser)  # only when the shell's completion script asks
    argv = _protect_run_separator(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        if sys.stdout.isatty() and sys.stdin.isatty() and _tui_available():
            args = parser.parse_args(["tui"] if args.home is None else ["--home", args.home, "tui"])
        else:
            parser.print_help()
            return EXIT_OK
    if own_process and args.command not in NO_FORK:
        # This process is the command: a run that fits starts as a fork of it (the TUI keeps
        # the new interpreter: its heap is large and its threads make forking unsafe).
        from runner import forkstart

        forkstart.allow()
    try:
        ctx = Context(args)
        code = int(args.func(ctx))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:
        return _reader_gone()
    except UsageError as exc:
        print(f"backprop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, ValueError) as exc:
        print(f"backprop: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (LifecycleError, RunNotFound, OSError) as exc:
        msg = str(exc) if not isinstance(exc, RunNotFound) else str(exc.args[0])
        print(f"backprop: error: {msg}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return 130


def _reader_gone() -> int:
    """The reader of stdout left: exit quietly, as Unix tools do on SIGPIPE.

    stdout is pointed at /dev/null first, so the interpreter's final flush of what is still
    buffered cannot raise (and print) a second BrokenPipeError.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_PIPE


def _tui_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("tui.app") is not None
    except ImportError:  # pragma: no cover
        return False
