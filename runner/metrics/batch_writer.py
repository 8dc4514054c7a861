"""Appending the ingestor's batches to ``metrics.jsonl``, holding them while writes fail."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from runner.durable import JsonlAppender
from runner.registry import METRICS
from runner.supervisor.recordkeeper import describe_write_error

MAX_PENDING_BYTES = 8 * 1024 * 1024  # metric lines held in memory while writes fail


class BatchWriter:
    """The only writer of one run's ``metrics.jsonl``.

    Encoded records wait in :attr:`records` until :meth:`append` writes them, with the
    offsets record, in one write (all or nothing). A batch that cannot be written stays in
    memory up to :data:`MAX_PENDING_BYTES`; lines past that are counted in :attr:`dropped`.

    Args:
        run_dir: the run's folder.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / METRICS
        self.records: list[bytes] = []  # encoded metrics.jsonl lines not yet appended
        self.dropped = 0  # metric lines that could not be written
        self.error: str | None = None  # the first write error
        self._appender: JsonlAppender | None = None
        with contextlib.suppress(OSError):  # a full or read-only disk: opened on a retry
            self._appender = JsonlAppender(self.path)

    def append(self, marker: bytes) -> bool:
        """Write the pending records and ``marker`` (the offsets record); ``True`` on success."""
        try:
            if self._appender is None:
                self._appender = JsonlAppender(self.path)
            self._appender.append_raw(b"".join(self.records) + marker)
        except OSError as exc:
            if self.error is None:
                self.error = describe_write_error(exc, METRICS)
                with contextlib.suppress(OSError, ValueError):  # stderr may be on that disk
                    print(f"backprop: metrics held in memory: {self.error}", file=sys.stderr)
                    sys.stderr.flush()
            self._shed()
            return False
        self.records = []
        return True

    def drop_pending(self) -> None:
        """Count every pending metric line as dropped and forget them."""
        self.dropped += sum(1 for r in self.records if r)
        self.records = []

    def _shed(self) -> None:
        """Keep at most :data:`MAX_PENDING_BYTES` of pending records; count the rest."""
        total = sum(map(len, self.records))
        drop = 0
        while total > MAX_PENDING_BYTES and drop < len(self.records):
            total -= len(self.records[drop])
            self.dropped += bool(self.records[drop])
            drop += 1
        if drop:
            del self.records[:drop]

    def close(self) -> None:
        """Release the file (idempotent)."""
        if self._appender is not None:
            self._appender.close()
