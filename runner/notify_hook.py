"""Runs one notification hook, bounded in time: ``python -m runner.notify_hook RUN_DIR``.

Started detached by :func:`runner.notify.spawn_hook` with ``{"command", "timeout_s",
"event"}`` on stdin. The hook (``/bin/sh -c COMMAND``) gets the event as JSON on its stdin,
runs in its own process group with its output appended to ``notify.log``, and is killed
(SIGTERM to the group, then SIGKILL) after its timeout. The outcome is one line of
``notify.jsonl``; nothing here can reach the run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

KILL_GRACE_S = 2.0
MAX_TIMEOUT_S = 3600.0


def _kill_group(pgid: int, sig: int) -> None:
    if pgid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def run_hook(
    run_dir: Path, command: str, timeout_s: float, event: dict[str, object]
) -> dict[str, object]:
    """Run the hook to its end or its timeout; return the outcome record."""
    started = time.time()
    outcome: dict[str, object] = {"t": started, "event": event.get("event"), "command": command}
    out_fd = os.open(run_dir / "notify.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=out_fd,
            stderr=out_fd,
            process_group=0,  # one group to kill; same session, so the supervisor spares it
            close_fds=True,
            cwd=run_dir,
        )
    except OSError as exc:
        os.close(out_fd)
        return {**outcome, "outcome": "error", "error": str(exc)[:300]}
    os.close(out_fd)
    assert proc.stdin is not None
    with contextlib.suppress(OSError):  # a hook that does not read stdin is fine
        proc.stdin.write(json.dumps(event).encode() + b"\n")
        proc.stdin.close()
    try:
        code = proc.wait(timeout=max(0.0, min(timeout_s, MAX_TIMEOUT_S)))
        result = "ok" if code == 0 else "failed"
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            code = proc.wait()
        result = "timeout"
    _kill_group(proc.pid, signal.SIGKILL)  # whatever the hook left behind in its group
    return {**outcome, "outcome": result, "exit_code": code, "duration_s": time.time() - started}


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0])
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        job = json.loads(sys.stdin.buffer.read(4 * 1024 * 1024))
        record = run_hook(run_dir, str(job["command"]), float(job["timeout_s"]), job["event"])
    except Exception as exc:
        record = {"t": time.time(), "outcome": "error", "error": repr(exc)[:300]}
    line = json.dumps(record, default=str) + "\n"
    with contextlib.suppress(OSError):
        fd = os.open(run_dir / "notify.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
