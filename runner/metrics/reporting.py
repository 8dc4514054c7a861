"""``runner.report(step=None, **metrics)``: a training script's metrics, cheap enough per step.

Standard library only, and importing it imports nothing new (``os`` and ``time``); the rest
loads on the first call. Outside Backprop (no ``BACKPROP_RUN_DIR``) every call returns at
once. Inside, a call appends ``(step, time, metrics)`` to a list (``list.extend`` of a tuple is
atomic under the GIL: no lock, safe from any thread) and a daemon thread encodes and appends
the batch to ``$BACKPROP_RUN_DIR/report.jsonl`` every half second, as do exit (``atexit``),
SIGTERM (when the script left it at its default), :func:`flush`, and the caller itself once
8,192 records are waiting (which bounds memory and keeps the batch in cache). The first record
is written at once, so Backprop knows from the start that the script reports.

Each line is ``{"s": step|null, "ns": wall time in ns, "v": {"name": value, ...}}``; values
are written with 12 significant digits, non-finite ones as ``nan``/``inf`` (Python's
spelling, which the ingestor accepts). A ``total_steps=N`` value tells Backprop the total.
"""

from __future__ import annotations

import _thread
import os
import time

from runner import envnames

# ``typing`` costs a training script several modules (re, enum, collections...) on import;
# annotations are strings here, so it is needed only by the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ENV_RUN_DIR = envnames.RUN_DIR
REPORT_NAME = "report.jsonl"  # runner.registry.REPORT, not imported: this module stays light
FLUSH_INTERVAL_S = 0.5
_ENCODE_BATCH = 4096
_INLINE_FLUSH = 3 * 8192  # flush from the caller too past this many buffered items

_buf: list[Any] = []  # flat: step, time_ns, metrics, step, time_ns, metrics, ...
_extend = _buf.extend
_now = time.time_ns
_active = False
_disabled = False
_setup_lock = _thread.allocate_lock()


def report(step: int | None = None, **metrics: float) -> None:
    """Record metrics for a step (``None``: Backprop counts steps itself).

    Args:
        step: the training step these values belong to.
        **metrics: numbers by name, e.g. ``loss=0.53, lr=3e-4``; ``total_steps`` gives the
            run's total so Backprop can show progress and an ETA.
    """
    if _active:
        _extend((step, _now(), metrics))
        if len(_buf) > _INLINE_FLUSH:
            _flush_now()
    elif not _disabled:
        _first_call(step, metrics)


def _flush_now() -> None:
    state = _state
    if state is not None:
        state.flush(timeout=0)  # busy: the flusher is at it already


def flush() -> None:
    """Write what is buffered now (the daemon thread does it twice a second anyway)."""
    if _state is not None:
        _state.flush()


def shutdown() -> None:
    """Flush, stop the background thread and forget the set-up (the next call starts over)."""
    global _active, _disabled, _state
    state = _state
    _active, _disabled, _state = False, False, None
    if state is not None:
        state.close()


def is_active() -> bool:
    """Whether reports are being recorded (running under Backprop, after the first call)."""
    return _active


# --- the slow path: set-up, flushing, encoding ---------------------------------------------------


class _Sink:
    """The open report file, the flusher thread and the exit hooks of one process."""

    def __init__(self, path: str) -> None:
        import threading

        from runner.durable import truncate_torn_tail

        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        truncate_torn_tail(self.fd)  # never extend a line a killed writer left torn
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="backprop-report", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(FLUSH_INTERVAL_S):
            self.flush()

    def flush(self, timeout: float = -1) -> None:
        if not self.lock.acquire(timeout=timeout):
            return
        try:
            n = len(_buf)
            if not n:
                return
            chunk = _buf[:n]
            del _buf[:n]  # others only append at the end meanwhile
            data = encode(chunk)
            view = memoryview(data)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError:
            pass  # a full disk must not kill training; these records are lost
        finally:
            self.lock.release()

    def close(self) -> None:
        self.stop.set()
        self.flush()
        try:
            os.close(self.fd)
        except OSError:
            pass


_state: _Sink | None = None


def _first_call(step: int | None, metrics: dict[str, float]) -> None:
    global _active, _disabled, _state
    run_dir = os.environ.get(ENV_RUN_DIR)
    if not run_dir:
        _disabled = True
        return
    with _setup_lock:
        if _state is None:
            try:
                _state = _Sink(os.path.join(run_dir, REPORT_NAME))
            except OSError as exc:
                import sys

                print(f"backprop: reports disabled: {exc}", file=sys.stderr)
                _disabled = True
                return
            _install_exit_hooks()
            _active = True
    _extend((step, _now(), metrics))
    flush()


def _install_exit_hooks() -> None:
    import atexit
    import signal
    import threading

    atexit.register(flush)
    os.register_at_fork(after_in_child=_after_fork)
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        pass


def _on_sigterm(signum: int, frame: object) -> None:
    import signal

    state = _state
    if state is not None:
        state.flush(timeout=0.5)  # the lock may be held by the code this handler interrupted
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _after_fork() -> None:
    """A forked child starts afresh: no thread, no inherited records."""
    global _active, _disabled, _state, _setup_lock
    del _buf[:]
    _active, _disabled, _state, _setup_lock = False, False, None, _thread.allocate_lock()


# --- encoding --------------------------------------------------------------------------------

_formats: dict[tuple[tuple[str, ...], bool], str] = {}


def encode(flat: list[Any]) -> bytes:
    """Encode buffered records (flat ``step, time_ns, metrics`` triples) as JSON lines.

    Runs of records with the same metric names are formatted with one ``%`` operation each;
    anything the fast path cannot format (a value that is not a number, say) goes through
    :mod:`json` one record at a time.
    """
    steps, times, dicts = flat[0::3], flat[1::3], flat[2::3]
    n = len(dicts)
    if not n:
        return b""
    first = dicts[0]
    if list(map(len, dicts)).count(len(first)) == n:
        try:
            return b"".join(
                _encode_run(
                    steps[i : i + _ENCODE_BATCH],
                    times[i : i + _ENCODE_BATCH],
                    dicts[i : i + _ENCODE_BATCH],
                    tuple(first),
                )
                for i in range(0, n, _ENCODE_BATCH)
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            pass
    from itertools import groupby

    keys = list(map(tuple, dicts))
    out, start = [], 0
    for key, group in groupby(keys):
        size = sum(1 for _ in group)
        end = start + size
        try:
            out.append(_encode_run(steps[start:end], times[start:end], dicts[start:end], key))
        except (KeyError, TypeError, ValueError, OverflowError):
            out.append(_encode_slow(steps[start:end], times[start:end], dicts[start:end]))
        start = end
    return b"".join(out)


def _encode_run(
    steps: list[Any], times: list[Any], dicts: list[dict[str, Any]], keys: tuple[str, ...]
) -> bytes:
    from operator import itemgetter

    n = len(dicts)
    nullable = None in steps
    if nullable:
        steps = ["null" if s is None else "%d" % s for s in steps]  # noqa: UP031 (ints, floats)
    fmt = _formats.get((keys, nullable))
    if fmt is None:
        fmt = _make_format(keys, nullable)
    width = 2 + len(keys)
    args: list[Any] = [None] * (width * n)
    args[0::width] = steps
    args[1::width] = times
    for j, key in enumerate(keys):
        args[2 + j :: width] = list(map(itemgetter(key), dicts))
    return ((fmt * n) % tuple(args)).encode()


def _make_format(keys: tuple[str, ...], nullable: bool) -> str:
    import json

    fields = ",".join(json.dumps(k).replace("%", "%%") + ":%.12g" for k in keys)
    fmt = '{"s":' + ("%s" if nullable else "%d") + ',"ns":%d,"v":{' + fields + "}}\n"
    if len(_formats) > 256:
        _formats.clear()
    _formats[(keys, nullable)] = fmt
    return fmt


def _encode_slow(steps: list[Any], times: list[Any], dicts: list[dict[str, Any]]) -> bytes:
    import json

    lines = []
    for step, ns, metrics in zip(steps, times, dicts, strict=True):
        values = {}
        for key, value in metrics.items():
            try:
                values[str(key)] = float(value)
            except (TypeError, ValueError, OverflowError):
                continue  # not a number (a string, a multi-element tensor): dropped
        try:
            s: int | None = None if step is None else int(step)
        except (TypeError, ValueError, OverflowError):
            s = None
        lines.append(json.dumps({"s": s, "ns": int(ns), "v": values}, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode()
