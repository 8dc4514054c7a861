r"""The one reader of append-only files: complete lines from a byte offset.

Every file Backprop follows (``metrics.jsonl``, ``events.jsonl``, ``report.jsonl``, a run's
output) is appended to by another process while it is read, so a read can end inside a line.
:class:`LineTail` hands out complete lines only and holds a torn last line back (its offset
stays before it) until its newline arrives; a line longer than ``max_line`` is never buffered
whole: its first ``max_line`` bytes are handed out (or it is dropped) and it is counted.
A file that shrank below the offset or was replaced (another inode) is read again from 0.

Lines are bytes without their ``\n`` (nor the ``\r`` of a CRLF ending): callers decode them.
A line is cut only at a newline or, past ``max_line``, at a UTF-8 character boundary, so a
multi-byte character is never split by the reader.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

READ_CHUNK = 1024 * 1024
MAX_LINE = 16 * 1024 * 1024  # no record Backprop writes comes near this


class LineTail:
    """Follows one file by byte offset; each idle :meth:`read` costs one ``stat``.

    Args:
        path: the file (it need not exist yet).
        offset: where the first read starts (a line boundary).
        max_line: the longest line handed out whole.
        over_long: ``"cut"`` hands out the first ``max_line`` bytes of a longer line,
            ``"drop"`` leaves it out; either way :attr:`over_long` counts it.
        rewrite: what a file that shrank below the offset or was replaced means:
            ``"restart"`` reads it again from 0, ``"end"`` goes on from the end of a shrunk
            file, ``"wait"`` reads nothing until it grows past the offset.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int = 0,
        *,
        max_line: int = MAX_LINE,
        over_long: Literal["cut", "drop"] = "cut",
        rewrite: Literal["restart", "end", "wait"] = "restart",
    ) -> None:
        self.path = Path(path)
        self.offset = offset
        self.max_line = max_line
        self.keep_head = over_long == "cut"
        self.rewrite = rewrite
        self.over_long = 0  # lines longer than max_line seen so far
        self.restarts = 0  # times the file was found shrunk or replaced
        self._skipping = False  # inside an over-long line whose head was already dealt with
        self._ino: int | None = None

    def read(self, max_bytes: int | None = None, end: int | None = None) -> list[bytes]:
        """The complete lines appended since the last read.

        Args:
            max_bytes: read at most this much now (the rest waits for the next call).
            end: read no further than this offset.

        Returns:
            The lines, in order; :attr:`offset` is then just past the last one.
        """
        out: list[bytes] = []
        for batch in self.batches(max_bytes, end):
            out += batch
        return out

    def batches(
        self, max_bytes: int | None = None, end: int | None = None
    ) -> Iterator[list[bytes]]:
        """Like :meth:`read`, one list per chunk read (a long file is never held whole)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return
        if self._rewritten(st):
            return
        stop = st.st_size if end is None else min(st.st_size, end)
        if max_bytes is not None:
            stop = min(stop, self.offset + max_bytes)
        if stop <= self.offset:
            return
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - a generator closes it below
        except OSError:
            return
        with f:
            if self._rewritten(os.fstat(f.fileno())):  # replaced between the stat and the open
                return
            f.seek(self.offset)
            pos = self.offset  # the file position of held[0]
            held = b""
            while pos + len(held) < stop:
                try:
                    data = f.read(min(READ_CHUNK, stop - pos - len(held)))
                except OSError:
                    break
                if not data:
                    break
                batch, held, pos = self._split(held + data, pos)
                self.offset = pos
                if batch:
                    yield batch

    def _rewritten(self, st: os.stat_result) -> bool:
        """Note a shrunk or replaced file; ``True`` when it is to be read as empty now."""
        shrunk = st.st_size < self.offset
        replaced = self._ino is not None and st.st_ino != self._ino
        self._ino = st.st_ino
        if self.rewrite != "restart":
            if shrunk and self.rewrite == "end":
                self.offset, self._skipping = st.st_size, False
            return shrunk
        if not (shrunk or replaced):
            return False
        self.offset, self._skipping = 0, False
        self.restarts += 1
        return False

    def _split(self, data: bytes, pos: int) -> tuple[list[bytes], bytes, int]:
        """Cut ``data`` (read at ``pos``) into complete lines, the held rest and its position."""
        parts = data.split(b"\n")
        rest = parts.pop()
        lines: list[bytes] = []
        for line in parts:
            pos += len(line) + 1
            if self._skipping:  # the end of an over-long line
                self._skipping = False
                continue
            if len(line) > self.max_line:
                self.over_long += 1
                if self.keep_head:
                    lines.append(_head(line, self.max_line))
                continue
            lines.append(line[:-1] if line.endswith(b"\r") else line)
        if len(rest) > self.max_line:  # no newline in sight: never hold more than max_line
            if not self._skipping:
                self.over_long += 1
                if self.keep_head:
                    lines.append(_head(rest, self.max_line))
            self._skipping = True
            pos += len(rest)
            rest = b""
        return lines, rest, pos


def read_lines(
    path: str | os.PathLike[str],
    offset: int = 0,
    max_bytes: int | None = None,
    *,
    max_line: int = MAX_LINE,
) -> tuple[list[bytes], int]:
    """The complete lines of ``path`` from ``offset`` (one read, no state kept).

    A missing file, or one shorter than ``offset``, reads as empty.

    Returns:
        The lines and the offset just past the last of them.
    """
    tail = LineTail(path, offset, max_line=max_line, rewrite="wait")
    lines = tail.read(max_bytes)
    return lines, tail.offset


def _head(line: bytes, size: int) -> bytes:
    """The first ``size`` bytes of ``line``, not ending inside a UTF-8 character."""
    cut = size
    while cut > 0 and cut > size - 4 and (line[cut] & 0xC0) == 0x80:
        cut -= 1  # line[cut] continues a character that began before it
    return line[:cut]
