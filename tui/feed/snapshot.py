"""The immutable values the widgets draw: a snapshot of every run, at one moment.

Built by the feed's producer thread (:mod:`tui.feed.producer`), never mutated; widgets and
screens import only this module of the feed, which reads no file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from governor.probes import GpuSnapshot, HostInfo
from runner.model import Status

EMPTY_MAP: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class SeriesView:
    """A run's metric history at one moment: metric name -> (steps, values), steps ascending."""

    metrics: Mapping[str, tuple[tuple[int, ...], tuple[float, ...]]] = field(
        default_factory=lambda: EMPTY_MAP
    )
    version: int = 0

    @property
    def names(self) -> tuple[str, ...]:
        """Metric names, in first-seen order."""
        return tuple(self.metrics)


@dataclass(frozen=True)
class OutputView:
    """The last lines of a run's output at one moment.

    ``total`` counts every line appended since ``generation`` began, so a reader that has
    shown ``k`` lines of this generation writes only ``lines[-(total - k):]``.
    """

    lines: tuple[str, ...] = ()
    total: int = 0
    generation: int = 0


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as the TUI draws it: every text field already made safe for a terminal."""

    id: str
    name: str
    status: Status
    reason: str = ""
    group: str | None = None
    attempt: int = 0
    attempt_text: str = ""
    command: str = ""
    step: int | None = None
    loss: float | None = None
    best_loss: float | None = None
    primary_metric: str = "loss"
    steps_per_s: float | None = None
    progress: float | None = None
    eta_s: float | None = None
    checkpoints: int = 0
    latest_checkpoint: str | None = None
    health: tuple[str, ...] = ()
    created_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    pid: int | None = None
    timeout_s: float | None = None
    gpus: tuple[int, ...] = ()
    vram_request: int | None = None
    parent: str | None = None
    after: tuple[tuple[str, str], ...] = ()  # (run id, "ok" | "any"): what it waits for
    spark: tuple[float, ...] = ()
    metric_names: tuple[str, ...] = ()
    # Where it runs (see runner.backends.where): empty for a local run.
    backend: str = "local"
    host: str = ""
    job_id: str = ""
    engine: str = ""  # the engine's last word ("ended (COMPLETED)"), "" when never asked
    engine_disagrees: bool = False


@dataclass(frozen=True)
class Snapshot:
    """Everything the TUI shows, at one moment. Built by the producer, never mutated.

    ``outputs`` and ``series`` hold only the runs the UI asked for (see :class:`Interest`)
    plus the active ones; ``follow`` interleaves every running run's new output.

    So that the UI's work follows what changed, not how many runs are registered, the
    producer also says what differs from the snapshot numbered ``seq - 1``: ``changed``, the
    rows that are new objects (``None``: runs appeared, vanished or moved; look at them all),
    and ``live``, the rows of active runs (``None``: find them in ``runs``).
    """

    seq: int = 0
    runs: tuple[RunRow, ...] = ()
    gpu: GpuSnapshot = field(default_factory=GpuSnapshot)
    host: HostInfo | None = None
    outputs: Mapping[str, OutputView] = field(default_factory=lambda: EMPTY_MAP)
    series: Mapping[str, SeriesView] = field(default_factory=lambda: EMPTY_MAP)
    follow: OutputView = field(default_factory=OutputView)
    loading: bool = False
    error: str | None = None
    changed: tuple[RunRow, ...] | None = None
    live: tuple[RunRow, ...] | None = None

    @property
    def live_rows(self) -> tuple[RunRow, ...]:
        """The rows of the active runs, in the order of ``runs``."""
        if self.live is not None:
            return self.live
        return tuple(r for r in self.runs if r.status.active)

    def changes_since(self, before: Snapshot) -> tuple[RunRow, ...] | None:
        """The rows that differ from ``before``'s, if this snapshot follows it directly."""
        return self.changed if self.seq == before.seq + 1 else None

    @property
    def queue_length(self) -> int:
        """How many runs wait for the governor."""
        return sum(1 for r in self.live_rows if r.status is Status.QUEUED)


@dataclass(frozen=True)
class Interest:
    """Which runs the UI needs output and history for, beyond the active ones."""

    visible: frozenset[str] = frozenset()
    focused: frozenset[str] = frozenset()


def frozen_output(lines: Iterable[str]) -> OutputView:
    """An :class:`OutputView` of fixed lines (tests and screenshots)."""
    items = tuple(lines)
    return OutputView(items, len(items), 0)
