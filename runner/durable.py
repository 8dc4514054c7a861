"""Durable files: atomic replacement and append-only JSON lines that tolerate a torn tail.

Lifecycle files are replaced atomically: write a temp file in the same folder, fsync it,
``os.replace`` it over the target, fsync the folder. A crash at any point leaves either the old
or the new file, never an empty or partial one. The file operations go through
:class:`FileOps` so the crash-replay test can record them and drop what was not synced.

Files are private by default (0600: a spec holds the submitter's environment, tokens
included). The mode is set with ``fchmod`` on the new file, so neither the umask nor the
mode of the file being replaced widens or narrows it; the temporary file is created with
``O_EXCL | O_NOFOLLOW``, so a planted file or symlink of that name is never written through.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from runner.model import ShapeError
from runner.tail import read_lines

TMP_PREFIX = ".tmp-"
PRIVATE_FILE = 0o600


class FileOps(Protocol):
    """The handful of file-system calls an atomic write makes."""

    def create(self, path: str, mode: int = PRIVATE_FILE) -> int:
        """Create ``path`` (which must not exist) with exactly ``mode``; return a descriptor."""

    def write(self, fd: int, data: bytes) -> None:
        """Write all of ``data``."""

    def fsync(self, fd: int) -> None:
        """Flush the file's data and metadata to stable storage."""

    def close(self, fd: int) -> None:
        """Close the descriptor."""

    def replace(self, src: str, dst: str) -> None:
        """Atomically rename ``src`` over ``dst``."""

    def fsync_dir(self, path: str) -> None:
        """Flush a directory's entries to stable storage."""

    def unlink(self, path: str) -> None:
        """Remove ``path`` if it exists."""


class OsFileOps:
    """The real file system."""

    def create(self, path: str, mode: int = PRIVATE_FILE) -> int:
        """Create ``path`` (which must not exist) with exactly ``mode``; return a descriptor."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(path, flags, mode & 0o777)
        try:
            os.fchmod(fd, mode)  # the umask must not change what the caller asked for
        except BaseException:
            os.close(fd)
            raise
        return fd

    def write(self, fd: int, data: bytes) -> None:
        """Write all of ``data``."""
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    def fsync(self, fd: int) -> None:
        """Flush the file to stable storage."""
        os.fsync(fd)

    def close(self, fd: int) -> None:
        """Close the descriptor."""
        os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        """Atomically rename ``src`` over ``dst``."""
        os.replace(src, dst)

    def fsync_dir(self, path: str) -> None:
        """Flush a directory's entries to stable storage."""
        fsync_dir(path)

    def unlink(self, path: str) -> None:
        """Remove ``path`` if it exists."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


OS_OPS = OsFileOps()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Fsync a directory so that renames and creations in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    durable: bool = True,
    ops: FileOps = OS_OPS,
    mode: int = PRIVATE_FILE,
) -> None:
    """Replace ``path`` with ``data`` so that readers and crashes see old or new, never a mix.

    Args:
        path: the file to replace.
        data: its new content.
        durable: fsync the data and the folder (lifecycle files); ``False`` for caches that
            can be rebuilt, where an fsync per update would only wear the disk.
        ops: the file operations (tests record them to simulate crashes).
        mode: the new file's permissions, exactly (default 0600, private).
    """
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    tmp = os.path.join(folder, f"{TMP_PREFIX}{os.path.basename(target)}-{os.urandom(4).hex()}")
    fd = ops.create(tmp, mode)
    try:
        try:
            ops.write(fd, data)
            if durable:
                ops.fsync(fd)
        finally:
            ops.close(fd)
        ops.replace(tmp, target)
    except BaseException:
        ops.unlink(tmp)
        raise
    if durable:
        ops.fsync_dir(folder)


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def dump_json(obj: Any) -> bytes:
    """Encode ``obj`` as compact, deterministic JSON bytes ending in a newline."""
    return (_ENCODER.encode(obj) + "\n").encode()


def write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    durable: bool = True,
    ops: FileOps = OS_OPS,
    mode: int = PRIVATE_FILE,
) -> None:
    """Atomically replace ``path`` with ``obj`` as JSON (see :func:`write_atomic`)."""
    write_atomic(path, dump_json(obj), durable=durable, ops=ops, mode=mode)


MAX_JSON_FILE = 4 * 1024 * 1024


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file written by :func:`write_json`.

    Raises:
        FileNotFoundError: when it does not exist.
        ShapeError: when it is unreadable, too large, not UTF-8 or not JSON.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_JSON_FILE + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ShapeError(f"unreadable: {exc.strerror}") from None
    if len(raw) > MAX_JSON_FILE:
        raise ShapeError("file too large")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ShapeError(f"not valid JSON: {type(exc).__name__}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite constant {name}")


class JsonlAppender:
    """Appends JSON lines to a file that has exactly one writer: this object.

    On open, a torn last line (a crash mid-write) is cut back to the last newline, so a new
    record never extends a partial one. Each :meth:`append` issues one ``write`` of whole lines.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        truncate_torn_tail(self._fd)
        os.lseek(self._fd, 0, os.SEEK_END)

    def append(self, records: Iterable[Any]) -> None:
        """Append records, one JSON line each, in a single write."""
        data = b"".join(dump_json(r) for r in records)
        if data:
            self.append_raw(data)

    def append_raw(self, data: bytes) -> None:
        """Append pre-encoded whole lines (each ending in a newline): all of them or none.

        A write that fails part-way (a full disk) is cut back, so a retry never extends a
        partial line.
        """
        start = os.lseek(self._fd, 0, os.SEEK_CUR)
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            if len(view) < len(data):
                try:
                    os.ftruncate(self._fd, start)
                finally:
                    os.lseek(self._fd, start, os.SEEK_SET)
            raise

    def sync(self) -> None:
        """Fsync what was appended so far."""
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def truncate_torn_tail(fd: int) -> int:
    """Cut a file back to just after its last newline; return the new size."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0
    if os.pread(fd, 1, size - 1) == b"\n":
        return size
    pos = size
    chunk = 64 * 1024
    while pos > 0:
        start = max(0, pos - chunk)
        block = os.pread(fd, pos - start, start)
        nl = block.rfind(b"\n")
        if nl >= 0:
            new_size = start + nl + 1
            os.ftruncate(fd, new_size)
            return new_size
        pos = start
    os.ftruncate(fd, 0)
    return 0


def append_jsonl(
    path: str | os.PathLike[str], records: Iterable[Any], *, sync: bool = False
) -> None:
    """Open, append records to, and close a JSON-lines file (see :class:`JsonlAppender`)."""
    with JsonlAppender(path) as out:
        out.append(records)
        if sync:
            out.sync()


def read_jsonl(
    path: str | os.PathLike[str], offset: int = 0, max_bytes: int | None = None
) -> tuple[list[Any], int]:
    """Read whole JSON lines from ``offset``; return the records and the offset after them.

    A torn last line (no newline yet) is left for the next call. Lines that are not valid JSON
    are skipped. A missing file reads as empty.
    """
    lines, end = read_lines(path, offset, max_bytes)
    return list(_parse_lines(lines)), end


def _parse_lines(lines: Iterable[bytes]) -> Iterator[Any]:
    for line in lines:
        if not line:
            continue
        try:
            yield json.loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
