"""Turning a run's output and reports into its metric history (placeholder seam).

The supervisor owns one :class:`Ingestor` per attempt and calls :meth:`Ingestor.poll` about
ten times a second. It reads ``output.log`` and ``report.jsonl`` incrementally by byte offset,
appends normalised records to ``metrics.jsonl`` and refreshes ``summary.json``.
"""

from __future__ import annotations

from pathlib import Path

from runner.model import RunSpec


class Ingestor:
    """Incremental capture of one attempt's metrics."""

    def __init__(self, run_dir: Path, spec: RunSpec, attempt: int) -> None:
        self.run_dir = run_dir
        self.spec = spec
        self.attempt = attempt

    def poll(self, *, final: bool = False) -> None:
        """Consume whatever was written since the last call."""

    def output_rewritten(self, new_size: int) -> None:
        """``output.log`` was compacted to ``new_size`` bytes, all of them already consumed."""

    def failure_hint(self) -> str | None:
        """A reason seen in the output that explains a failure (for example out of memory)."""
        return None

    def close(self) -> None:
        """Release files."""
