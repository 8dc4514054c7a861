"""Where a run is, as the TUI and the CLI show it: backend, host, job id and the engine's view.

One read model, built from the run folder only (no engine is asked here, so listing stays
cheap and works on a laptop that cannot reach the cluster):

* the backend: the spec's :class:`runner.placement.Placement`;
* the host the supervisor runs on: ``host`` in ``state.json`` (written by the supervisor),
  else the engine's last word (``engine.json``); the host an attempt was *submitted from*
  (the latest ``submit-<attempt>.json``) is kept apart, since it is not where the run runs;
* the handle (Slurm job id, Ray submission id): the latest intent record
  (:mod:`runner.backends.intent`), else the engine's last word;
* the engine's own view: ``engine.json``, written by :func:`record_engine_view` by whoever
  asked the engine (:meth:`runner.backends.base.Backend.describe`).

``engine.json`` (0600, replaced atomically)::

    {"state": "pending|running|ended|unknown", "reason": "...", "handle": "...",
     "host": "...", "at": 1765130000.0}

An engine view whose handle differs from the latest intent's is of an earlier attempt and is
ignored. Every field is plain text as the engine gave it: displays make it terminal-safe.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN, BackendStatus
from runner.backends.intent import read_intent
from runner.durable import read_json, write_json
from runner.model import FINISHED, ShapeError, Status

if TYPE_CHECKING:
    from runner.registry import Registry

ENGINE = "engine.json"
ENGINE_STATES = (PENDING, RUNNING, ENDED, UNKNOWN)
INTENT_NAME = re.compile(r"^submit-([0-9]{1,9})\.json$")
_MAX_TEXT = 300
# Which of our statuses each engine state agrees with (``unknown`` agrees with none).
_AGREES = {
    PENDING: frozenset({Status.STARTING, Status.QUEUED}),
    RUNNING: frozenset({Status.STARTING, Status.RUNNING, Status.PAUSED}),
    ENDED: FINISHED | {Status.CORRUPT},
}


@dataclass(frozen=True)
class Where:
    """Where a run is, from its folder (see the module docstring).

    Attributes:
        backend: ``local``, ``slurm`` or ``ray``.
        host: the host (node) the supervisor runs on, when known.
        handle: the engine's id of the latest attempt (job id, submission id), when known.
        engine_state: the engine's last word (``pending``, ``running``, ``ended``,
            ``unknown``), empty when nobody asked it yet.
        engine_reason: the engine's words with it (Slurm's pending reason, "no accounting").
        checked_at: when the engine was asked (``None``: never).
        submitted_from: the host the latest attempt was submitted from.
    """

    backend: str = "local"
    host: str = ""
    handle: str = ""
    engine_state: str = ""
    engine_reason: str = ""
    checked_at: float | None = None
    submitted_from: str = ""

    @property
    def is_local(self) -> bool:
        """True for the default backend (nothing else to show)."""
        return self.backend == "local"

    def disagrees(self, status: Status) -> bool:
        """Whether the engine's view contradicts ours (``status``): worth showing.

        ``unknown`` contradicts an active run only: a finished run the engine has forgotten
        (Slurm without accounting) is no news.
        """
        if not self.engine_state:
            return False
        if self.engine_state == UNKNOWN:
            return status.active
        return status not in _AGREES.get(self.engine_state, frozenset())

    def engine_text(self) -> str:
        """The engine's view in a few words: ``ended (COMPLETED)``, ``unknown (no accounting)``."""
        if not self.engine_state:
            return ""
        return self.engine_state + (f" ({self.engine_reason})" if self.engine_reason else "")

    def queue_reason(self, status: Status) -> str:
        """The engine's reason for a run both sides see queued (Slurm's pending reason)."""
        if status is Status.QUEUED and self.engine_state == PENDING and self.engine_reason:
            return self.engine_reason
        return ""

    def to_json(self, status: Status | None = None) -> dict[str, Any]:
        """The JSON form (``show --json``/``ls --json``); with ``status``, whether they disagree."""
        out: dict[str, Any] = {
            "backend": self.backend,
            "host": self.host or None,
            "handle": self.handle or None,
            "engine_state": self.engine_state or None,
            "engine_reason": self.engine_reason or None,
            "checked_at": self.checked_at,
            "submitted_from": self.submitted_from or None,
        }
        if status is not None:
            out["engine_disagrees"] = self.disagrees(status)
        return out


def _text(value: Any) -> str:
    return value[:_MAX_TEXT] if isinstance(value, str) else ""


def _read_object(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object from ``path``, or ``None`` when missing, unreadable or another shape."""
    try:
        raw = read_json(path)
    except (OSError, ShapeError):
        return None
    return raw if isinstance(raw, dict) else None


def latest_intent_attempt(folder: str | os.PathLike[str]) -> int | None:
    """The highest attempt with a ``submit-<attempt>.json`` in ``folder``, or ``None``."""
    best: int | None = None
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                m = INTENT_NAME.match(entry.name)
                if m and (best is None or int(m.group(1)) > best):
                    best = int(m.group(1))
    except OSError:
        return None
    return best


def read_engine_view(registry: Registry, run_id: str) -> tuple[BackendStatus, float | None] | None:
    """The engine's last recorded view of the run and when it was recorded.

    ``None``: never recorded, or damaged (a display then shows no engine view, never fails).
    """
    raw = _read_object(registry.run_dir(run_id) / ENGINE)
    if raw is None or raw.get("state") not in ENGINE_STATES:
        return None
    at = raw.get("at")
    view = BackendStatus(
        state=str(raw["state"]),
        reason=_text(raw.get("reason")),
        handle=_text(raw.get("handle")),
        host=_text(raw.get("host")),
    )
    return view, float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None


def record_engine_view(
    registry: Registry, run_id: str, status: BackendStatus, *, now: float | None = None
) -> None:
    """Record what the engine said about the run (whoever calls ``describe`` calls this).

    Raises:
        ValueError: for a state that is not one of :data:`ENGINE_STATES`.
    """
    if status.state not in ENGINE_STATES:
        raise ValueError(f"engine state {status.state!r} is not one of {', '.join(ENGINE_STATES)}")
    record = {
        "state": status.state,
        "reason": status.reason[:_MAX_TEXT],
        "handle": status.handle[:_MAX_TEXT],
        "host": status.host[:_MAX_TEXT],
        "at": time.time() if now is None else now,
    }
    write_json(registry.run_dir(run_id) / ENGINE, record)


def where(registry: Registry, run_id: str) -> Where:
    """Where ``run_id`` is, from its folder; never raises for missing or damaged files.

    A local run reads only its spec (the caller usually knows the backend already and asks
    only about remote runs).
    """
    try:
        backend = registry.read_spec(run_id).placement.backend
    except (OSError, ValueError):  # ShapeError is a ValueError
        backend = "local"
    if backend == "local":
        return Where()
    folder = registry.run_dir(run_id)
    state = _read_object(folder / "state.json") or {}
    attempt = latest_intent_attempt(folder)
    intent = read_intent(registry, run_id, attempt) if attempt is not None else None
    recorded = read_engine_view(registry, run_id)
    engine, engine_at = recorded if recorded is not None else (None, None)
    if (
        engine is not None
        and intent is not None
        and intent.handle
        and engine.handle
        and engine.handle != intent.handle
    ):
        engine, engine_at = None, None  # the engine spoke of an earlier attempt's job
    handle = (intent.handle if intent else None) or (engine.handle if engine else "")
    return Where(
        backend=backend,
        host=_text(state.get("host")) or (engine.host if engine else ""),
        handle=handle or "",
        engine_state=engine.state if engine else "",
        engine_reason=engine.reason if engine else "",
        checked_at=engine_at,
        submitted_from=intent.host if intent else "",
    )
