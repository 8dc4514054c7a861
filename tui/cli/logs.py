"""A run's output on the terminal: ``backprop logs`` and the follow loop of ``run -f``."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from runner.control import run_actions
from runner.control.errors import LifecycleError
from runner.model import Status
from runner.registry import OUTPUT, Registry, RunNotFound, RunView
from runner.tail import LineTail
from runner.textsafe import sanitize_line
from tui.cli.context import Context
from tui.cli.conventions import EXIT_OK

# A line longer than this is shown cut (its head), never buffered whole.
MAX_LINE = 64 * 1024


def follow(
    registry: Registry,
    run_id: str,
    *,
    stop_on_interrupt: bool,
    out: Any,
    raw: bool = False,
    from_offset: int = 0,
) -> RunView:
    """Stream a run's output until it ends. Ctrl-C: graceful stop, twice: force stop."""
    tail = _tail(registry.run_dir(run_id) / OUTPUT, from_offset)
    interrupts = 0

    def on_int(signum: int, frame: Any) -> None:
        nonlocal interrupts
        interrupts += 1
        if not stop_on_interrupt:
            raise KeyboardInterrupt
        with contextlib.suppress(LifecycleError, RunNotFound):
            run_actions.stop(registry, run_id, force=interrupts > 1)
        msg = "force-stopping" if interrupts > 1 else "stopping gracefully (Ctrl-C again to force)"
        print(f"\nbackprop: {msg} run {run_id}", file=sys.stderr, flush=True)

    old = signal.signal(signal.SIGINT, on_int)
    try:
        while True:
            view = registry.load(run_id)
            _pump(tail, out, raw)
            if view.status.finished or view.status is Status.CORRUPT:
                _pump(tail, out, raw)
                _finish(tail, out, raw)
                return view
            time.sleep(0.1)
    finally:
        signal.signal(signal.SIGINT, old)


def _tail(path: Path, offset: int) -> LineTail:
    """The output's reader: a file compacted by the output cap goes on from its new end."""
    return LineTail(path, offset, max_line=MAX_LINE, rewrite="end")


def _pump(tail: LineTail, out: Any, raw: bool) -> None:
    """Write every complete line appended since the last call."""
    wrote = False
    for batch in tail.batches():
        for line in batch:
            out.write(_render(line, raw) + "\n")
        wrote = True
    if wrote:
        out.flush()


def _finish(tail: LineTail, out: Any, raw: bool) -> None:
    """Write the last line when the run ended without a newline after it."""
    try:
        with open(tail.path, "rb") as f:
            f.seek(tail.offset)
            rest = f.read(MAX_LINE)
    except OSError:
        rest = b""
    if rest:
        out.write(_render(rest.split(b"\n", 1)[0], raw) + "\n")
    out.flush()


def _render(line: bytes, raw: bool) -> str:
    text = line.decode("utf-8", "replace")
    return text if raw else sanitize_line(text, keep_colour=sys.stdout.isatty())


def cmd_logs(ctx: Context) -> int:
    """``backprop logs``."""
    run_id = ctx.resolve(ctx.args.id)
    path = ctx.registry.run_dir(run_id) / OUTPUT
    start = 0
    if ctx.args.tail is not None:
        start = _tail_offset(path, ctx.args.tail)
    if ctx.args.follow:
        try:
            follow(
                ctx.registry,
                run_id,
                stop_on_interrupt=False,
                out=sys.stdout,
                raw=ctx.args.raw,
                from_offset=start,
            )
        except KeyboardInterrupt:
            pass
        return EXIT_OK
    tail = _tail(path, start)
    _pump(tail, sys.stdout, ctx.args.raw)
    _finish(tail, sys.stdout, ctx.args.raw)
    return EXIT_OK


def _tail_offset(path: Path, lines: int) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    with open(path, "rb") as f:
        pos, found = size, 0
        while pos > 0 and found <= lines:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            block = f.read(step)
            found += block.count(b"\n")
        if found <= lines:
            return 0
        f.seek(pos)
        block = f.read(size - pos)
        idx = len(block)
        for _ in range(lines + 1):
            idx = block.rfind(b"\n", 0, idx)
        return pos + idx + 1
