"""Messages of the TUI: results in the past tense, intents as requests.

Results flow down from the producer thread (:class:`SnapshotReady`); intents flow up from
keys, dialogs and the command palette to the app, which hands them to the actions object
(:class:`StopRequested` and friends), and the outcome comes back as :class:`ActionFinished`.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from tui.feed.snapshot import Snapshot


@dataclass
class SnapshotReady(Message):
    """The producer built a new snapshot. A newer one replaces an older one still queued."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


@dataclass
class RunHighlighted(Message):
    """The tree's cursor moved onto a run (``None``: onto a group or nothing)."""

    run_id: str | None


@dataclass
class SelectionChanged(Message):
    """The runs marked with Space changed."""

    run_ids: frozenset[str]


@dataclass
class VisibleRunsChanged(Message):
    """The runs on screen in the tree changed (their sparklines need metric history)."""

    run_ids: frozenset[str]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, VisibleRunsChanged)


@dataclass
class NewRunRequest:
    """What the new-run dialog collected (strings as typed; the app parses them)."""

    target: str
    args: str = ""
    name: str = ""
    timeout: str = ""
    gpus: str = ""
    vram: str = ""


@dataclass
class SubmitRequested(Message):
    """Start a new run."""

    request: NewRunRequest


@dataclass
class StopRequested(Message):
    """Stop a run: gracefully, or at once with ``force``."""

    run_id: str
    force: bool = False


@dataclass
class PauseRequested(Message):
    """Pause a running run (``resume=False``) or continue a paused one (``resume=True``)."""

    run_id: str
    resume: bool = False


@dataclass
class ResumeRequested(Message):
    """Start a new attempt of a finished run from its latest checkpoint."""

    run_id: str
    timeout_s: float | None = None


@dataclass
class ForkRequested(Message):
    """A new run from a run's checkpoint with changed arguments."""

    run_id: str
    changes: tuple[str, ...] = ()
    name: str | None = None
    timeout_s: float | None = None


@dataclass
class RerunRequested(Message):
    """Run a run's command again as a new run."""

    run_id: str


@dataclass
class ActionFinished(Message):
    """An action came back from the runner: what it said, and whether it worked."""

    description: str
    ok: bool
