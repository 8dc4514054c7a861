"""Where a run came from: the code (git commit, branch, dirty diff), the interpreter, the host.

Recorded once at submit into the run folder: ``provenance.json`` and, when the tree has
uncommitted changes to tracked files, ``git.diff`` (at most :data:`DIFF_LIMIT` bytes, mode
0600: a diff can hold secrets). Both travel in export bundles like every file of the folder.

It must stay cheap: git runs as a subprocess with a short timeout (and without taking the
index lock), package versions come from ``importlib.metadata`` (nothing is imported), and a
folder outside any git tree costs one failed ``git rev-parse``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.durable import read_json, write_json

PROVENANCE = "provenance.json"
DIFF = "git.diff"
DIFF_LIMIT = 1024 * 1024
GIT_TIMEOUT_S = 3.0
PACKAGES = ("torch", "numpy", "transformers", "lightning", "pytorch-lightning", "jax", "backprop")

# What a package query in another interpreter prints (one JSON object; nothing imported).
_VERSIONS_SNIPPET = (
    "import json,sys\n"
    "from importlib import metadata\n"
    "out={}\n"
    "for n in sys.argv[1:]:\n"
    "    try: out[n]=metadata.version(n)\n"
    "    except Exception: pass\n"
    "print(json.dumps({'python': sys.version.split()[0], 'packages': out}))\n"
)


# Provenance is written while the run's trainer starts, on the same few cores: git and the
# interpreter query yield to it (on 2 cores, ~10 ms of the trainer's start).
BACKGROUND_NICE = 10


def _background(argv: list[str]) -> list[str]:
    """``argv`` run at a lower priority from its first instruction.

    Through ``nice``, which execs it (the pid is the helper's own). Without ``nice`` it runs at
    the caller's priority: lowering it after the start would race the helper's own work.
    """
    nice = shutil.which("nice")
    return [nice, "-n", str(BACKGROUND_NICE), *argv] if nice else argv


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never wait on or take the index lock of a repository the user is working in.
    env.update(GIT_OPTIONAL_LOCKS="0", LC_ALL="C", GIT_TERMINAL_PROMPT="0")
    return env


def _git(cwd: Path, *args: str, limit: int = 64 * 1024) -> tuple[int, bytes, bool]:
    """Run git; return its exit code, at most ``limit`` bytes of stdout and if it was cut."""
    git = shutil.which("git")
    if git is None:
        return 127, b"", False
    with subprocess.Popen(
        _background([git, "-C", str(cwd), *args]),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_git_env(),
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        deadline = time.monotonic() + GIT_TIMEOUT_S
        chunks: list[bytes] = []
        size = 0
        cut = False
        # A blocking read is bounded by the timer below, which kills git when it is late.
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), proc.kill)
        timer.start()
        try:
            while size <= limit:
                block = os.read(proc.stdout.fileno(), 65536)
                if not block:
                    break
                chunks.append(block)
                size += len(block)
            if size > limit:
                cut = True
                proc.kill()
            code = proc.wait()
        finally:
            timer.cancel()
    data = b"".join(chunks)
    return (0 if cut else code), data[:limit], cut


def git_info(cwd: Path, *, diff_limit: int = DIFF_LIMIT) -> tuple[dict[str, Any] | None, bytes]:
    """The commit, branch and dirty flag of the git tree holding ``cwd``, and its diff.

    Returns ``(None, b"")`` outside a git tree (or without git). The diff is ``git diff HEAD``
    (staged and unstaged changes to tracked files), cut at ``diff_limit`` bytes.
    """
    code, out, _ = _git(cwd, "rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD")
    lines = out.decode("utf-8", "replace").splitlines()
    if code != 0 or len(lines) < 3:
        return None, b""
    info: dict[str, Any] = {"root": lines[0], "commit": lines[1], "branch": lines[2]}
    if info["branch"] == "HEAD":
        info["branch"] = None  # detached
    code, diff, cut = _git(cwd, "diff", "HEAD", "--no-color", "--no-ext-diff", limit=diff_limit)
    if code != 0:
        info.update(dirty=None, diff_bytes=None, diff_truncated=False)
        return info, b""
    code, untracked, _ = _git(cwd, "ls-files", "--others", "--exclude-standard", limit=4096)
    info.update(
        dirty=bool(diff),
        untracked_files=bool(untracked.strip()) if code == 0 else None,
        diff_bytes=len(diff),
        diff_truncated=cut,
    )
    return info, diff


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` in this interpreter (read from metadata, not imported)."""
    from importlib import metadata  # ~50 ms of imports (email...): only when recording

    out: dict[str, str] = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError, ValueError):
            out[name] = metadata.version(name)
    return out


def interpreter_versions(python: str) -> dict[str, Any] | None:
    """The Python version and packages of another interpreter (``None`` if it cannot say)."""
    try:
        with subprocess.Popen(
            _background([python, "-I", "-c", _VERSIONS_SNIPPET, *PACKAGES]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        ) as proc:
            try:
                out, _ = proc.communicate(timeout=GIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        doc = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _same_interpreter(python: str) -> bool:
    with contextlib.suppress(OSError):
        return os.path.samefile(python, sys.executable)
    return False


def collect(cwd: Path, command: Sequence[str], script: str | None) -> tuple[dict[str, Any], bytes]:
    """Everything :func:`record` writes: the provenance document and the diff."""
    import platform  # only when recording: the notifier imports this module for its helpers

    git, diff = git_info(cwd)
    python = command[0] if script and command else sys.executable
    doc: dict[str, Any] = {
        "schema": 1,
        "recorded_at": time.time(),
        "git": git,
        "python": {"executable": python, "version": platform.python_version()},
        "packages": package_versions(),
        "host": {
            "hostname": os.uname().nodename,
            "platform": platform.platform(terse=True),
            "machine": platform.machine(),
        },
    }
    if python != sys.executable and not _same_interpreter(python):
        other = interpreter_versions(python)
        if other is not None:
            doc["python"]["version"] = other.get("python")
            doc["packages"] = other.get("packages") or {}
        else:
            doc["python"]["version"] = None
            doc["packages"] = {}
    return doc, diff


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, readable by its owner only (mode 0600)."""
    tmp = path.with_name(f".{path.name}.{os.urandom(3).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def record(run_dir: Path, cwd: Path, command: Sequence[str], script: str | None) -> dict[str, Any]:
    """Write the run's provenance (and its diff when the tree is dirty); return the document."""
    doc, diff = collect(cwd, command, script)
    return write(run_dir, doc, diff)


def write(run_dir: Path, doc: dict[str, Any], diff: bytes) -> dict[str, Any]:
    """Write a document :func:`collect` returned (a sweep collects once for all its runs)."""
    doc = {**doc, "git": dict(doc["git"])} if isinstance(doc.get("git"), dict) else dict(doc)
    if diff:
        write_private(run_dir / DIFF, diff)
        doc["git"]["diff_file"] = DIFF
    write_json(run_dir / PROVENANCE, doc, durable=False)
    return doc


def read(run_dir: Path) -> dict[str, Any] | None:
    """The run's provenance document (``None`` when absent or unreadable)."""
    try:
        doc = read_json(run_dir / PROVENANCE)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def describe(doc: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Label/value lines for ``show`` (every value is a plain string, not yet sanitised)."""
    if not doc:
        return [("code", "no provenance recorded")]
    lines: list[tuple[str, str]] = []
    git = doc.get("git")
    if isinstance(git, dict):
        commit = str(git.get("commit") or "?")[:12]
        branch = git.get("branch") or "detached"
        state = {True: "dirty", False: "clean", None: "unknown"}.get(git.get("dirty"), "unknown")
        if git.get("dirty"):
            size = git.get("diff_bytes")
            cut = " (cut)" if git.get("diff_truncated") else ""
            state += f", diff {size} bytes in {git.get('diff_file', DIFF)}{cut}"
        lines.append(("commit", f"{commit} on {branch} ({state})"))
    else:
        lines.append(("commit", "not a git tree"))
    py = doc.get("python") or {}
    if isinstance(py, dict):
        lines.append(("python", f"{py.get('version') or '?'} ({py.get('executable')})"))
    pkgs = doc.get("packages") or {}
    if isinstance(pkgs, dict) and pkgs:
        lines.append(("packages", ", ".join(f"{k} {v}" for k, v in sorted(pkgs.items()))))
    host = doc.get("host") or {}
    if isinstance(host, dict):
        lines.append(("host", f"{host.get('hostname')} ({host.get('platform')})"))
    return lines
