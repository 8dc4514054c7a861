"""Start a detached process by forking one that has its code loaded, instead of a new interpreter.

A fresh ``python -m ...`` costs an interpreter's start, ``site`` and every import again: about
150 ms of CPU on this machine for a supervisor, more than the rest of a run's start together.
The submitting command and the dispatcher have most of that code loaded already, so they fork
instead and call the supervisor's ``main`` in the child, detached exactly as the ``--detach``
path of a new interpreter is:

* a double fork with ``setsid`` in between: the child is in a session of its own, is not a
  session leader (it can never get a controlling terminal) and is adopted by init (or a
  subreaper) at once, so the process that forked it can exit, or be killed, at any moment;
* stdin and stdout on ``/dev/null``, stderr appended to a log file, ``sys.std*`` re-opened on
  them (a caller's replaced streams, e.g. pytest's capture, are not inherited);
* every other inherited descriptor is replaced by ``/dev/null`` with close-on-exec: a lock the
  parent holds (the dispatcher's ``flock``) is released in the child, nothing of the parent's
  reaches the trainer, and a Python file object of the parent that is collected later closes
  a harmless ``/dev/null`` rather than a descriptor the child opened since under that number;
* signal dispositions and the mask as a fresh interpreter has them; working directory and
  environment as the caller says; ``gc.freeze()`` so the child's collections do not copy the
  parent's pages;
* it ends with ``os._exit``: the parent's ``atexit`` handlers, ``finally`` blocks and buffered
  output are never run twice.

Forking is only safe in a single-threaded process (another thread may hold a lock the child
would wait on forever), so :func:`fork_call` first counts the kernel's threads of the process
(``/proc/self/task``: native threads too, e.g. watchfiles' or Textual's) and returns ``False``
when there is more than one; the caller then starts a new interpreter as before.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from runner import envnames

# ``BACKPROP_START=exec`` makes every supervisor a new interpreter (for comparison, debugging).
START_ENV = envnames.PREFIX + "START"

_kept: list[object] = []
_allowed = False


def allow() -> None:
    """Let this process fork supervisors (called by entry points: the CLI, the dispatcher).

    An entry point knows what its process holds; a library caller (the TUI's threads, a
    user's script, a test) never forks.
    """
    global _allowed
    _allowed = True


def fork_allowed() -> bool:
    """Whether this process may fork: allowed, single-threaded, in its main thread."""
    if not _allowed or os.environ.get(START_ENV, "") == "exec" or not hasattr(os, "fork"):
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:  # no /proc: no way to count native threads nor to list descriptors
        return False


def fork_call(
    main: Callable[[], int],
    *,
    cwd: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
    title: Sequence[str] = (),
) -> bool:
    """Run ``main()`` in a detached grandchild (see the module docstring); ``False``: not forked.

    Returns once the intermediate child has exited (the grandchild runs on, adopted by init).
    Raises :class:`OSError` if ``log`` cannot be opened (as starting a new interpreter would).

    Args:
        main: what the grandchild runs; its return value is the exit code.
        cwd: the grandchild's working directory.
        log: the grandchild's stderr (appended to).
        env: variables set in the grandchild's environment.
        title: the grandchild's command line as ``ps`` shows it (else it would show the
            parent's: a supervisor must never look like the dispatcher to a ``pkill -f``).
    """
    if not fork_allowed():
        return False
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or odd stream is no reason not to start
            stream.flush()
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        pid = os.fork()
    except OSError:
        os.close(log_fd)
        raise
    if pid == 0:  # the intermediate child: a new session, then the grandchild, then gone
        code = 1
        try:
            os.setsid()
            if os.fork() == 0:
                code = _grandchild(main, cwd=cwd, log_fd=log_fd, env=env or {}, title=title)
            else:
                code = 0
        finally:
            os._exit(code)
    os.close(log_fd)
    if signal.getsignal(signal.SIGCHLD) != signal.SIG_IGN:
        # It exits right after its fork; reap it. With SIGCHLD ignored (the dispatcher) the
        # kernel does, and waiting would only add its scheduling to every start.
        with contextlib.suppress(ChildProcessError, InterruptedError):
            os.waitpid(pid, 0)
    return True


def _grandchild(
    main: Callable[[], int],
    *,
    cwd: Path,
    log_fd: int,
    env: Mapping[str, str],
    title: Sequence[str],
) -> int:
    """The detached process: clean up what the parent left, run ``main``, return its code."""
    global _allowed
    _allowed = False  # a supervisor starts no supervisors; nor does anything it runs
    try:
        gc.freeze()  # the parent's objects stay shared pages; collections skip them
        if title:
            with contextlib.suppress(OSError, ValueError, IndexError):
                set_title(title)
        _reset_signals()
        _redirect(log_fd)
        os.chdir(cwd)
        os.environ.update(env)
    except BaseException:  # noqa: BLE001 - nothing of the child may reach the parent's stack
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
        return 1
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - as an interpreter would: traceback, exit 1
        with contextlib.suppress(Exception):
            import traceback

            traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


def _reset_signals() -> None:
    """Dispositions and mask as a new interpreter starts with them."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python's own start does so
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def _redirect(log_fd: int) -> None:
    """stdin/stdout on /dev/null, stderr on the log, every other descriptor on /dev/null."""
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log_fd, 2)
    keep = {0, 1, 2, null}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep:
            continue
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone already
            os.fstat(fd)
            os.dup2(null, fd, inheritable=False)
    _kept.extend((sys.stdin, sys.stdout, sys.stderr))  # never collected: they may own 0-2
    sys.stdin = open(0, closefd=False, encoding="utf-8")  # noqa: SIM115 - lives as long as we do
    sys.stdout = open(1, "w", closefd=False, encoding="utf-8")  # noqa: SIM115
    sys.stderr = open(  # noqa: SIM115
        2, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace"
    )


def set_title(argv: Sequence[str]) -> None:
    """Replace this process's command line as ``/proc/<pid>/cmdline`` (and ``ps``) show it.

    The kernel shows the memory the original ``argv`` strings occupy; after start-up the
    interpreter keeps its own copies, so that memory is overwritten in place (as
    ``setproctitle`` does), through ``/proc/self/mem``: the arguments NUL-separated, cut to
    the space there is, the rest NUL.
    """
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    # Fields 48 and 49 of stat (arg_start, arg_end); 46 and 47 counted after the comm field.
    start, end = int(fields[45]), int(fields[46])
    size = end - start
    if size <= 1:
        return
    data = b"\0".join(os.fsencode(a) for a in argv)[: size - 1]
    with open("/proc/self/mem", "r+b", buffering=0) as mem:
        mem.seek(start)
        mem.write(data + b"\0" * (size - len(data)))
