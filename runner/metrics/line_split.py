"""Raw output bytes into text lines, as they arrive."""

from __future__ import annotations

MAX_LINE = 32 * 1024


class LineSplitter:
    r"""Cuts a byte stream into text lines as it arrives.

    ``\n``, ``\r\n`` and bare ``\r`` (progress-bar redraws) end a line; a line split across
    reads is joined; invalid UTF-8 becomes U+FFFD. The unfinished line is kept up to
    ``max_line`` bytes: the excess of an endless line is dropped, never buffered.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._pending = b""
        self._overflow = False

    @property
    def pending_bytes(self) -> int:
        """How many bytes of an unfinished line are held (never more than ``max_line``)."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[str]:
        """Add bytes; return the lines completed by them."""
        if not data:
            return []
        if b"\r" in data:
            data = data.replace(b"\r", b"\n")
        cut = data.rfind(b"\n")
        if cut < 0:
            self._hold(data)
            return []
        head = data[: cut + 1]
        first_nl = head.find(b"\n")
        if self._pending or self._overflow:
            self._hold(head[:first_nl])
            block = self._pending + head[first_nl:]
            self._pending, self._overflow = b"", False
        else:
            block = head
        self._hold(data[cut + 1 :])
        return self._lines(block[:-1])

    def flush(self) -> list[str]:
        """Return the unfinished line, if any, as a last line (at end of stream)."""
        if not self._pending:
            self._overflow = False
            return []
        block, self._pending, self._overflow = self._pending, b"", False
        return self._lines(block)

    def _hold(self, data: bytes) -> None:
        room = self.max_line - len(self._pending)
        if len(data) > room:
            data = data[: max(room, 0)]
            self._overflow = True
        if data:
            self._pending += data

    def _lines(self, block: bytes) -> list[str]:
        lines = block.decode("utf-8", "replace").split("\n")
        if len(block) > self.max_line:
            cap = self.max_line
            lines = [ln if len(ln) <= cap else ln[:cap] for ln in lines]
        return lines
