"""Crash-safe submission to an engine that queues itself (Slurm, Ray).

Before the engine's submit call the submitter writes an *intent* to the run folder
(``submit-<attempt>.json``: backend, attempt, the deterministic key the engine will know the job
by — a Slurm job name, a Ray submission id); after the call it adds the engine's handle (a job
id). A submitter killed between the two leaves an intent without a handle: whoever next looks
(the dispatcher, a listing, ``describe``) asks the engine for the key — found: the handle is
recorded, never submitted again; not found: submitted once more under the same key. Slurm reuses
job ids after a controller crash, so the key (and the submit time), not the id, is the identity.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner import envnames
from runner.durable import read_json, write_json
from runner.registry import Registry

INTENT = "submit-{attempt}.json"


@dataclass(frozen=True)
class Intent:
    """One attempt's submission record.

    Attributes:
        backend: the engine (``slurm``, ``ray``).
        attempt: the run's attempt number.
        key: the name the engine knows the job by (deterministic from run id + attempt).
        at: when the intent was written (the ``--starttime`` for accounting queries).
        handle: the engine's id once the submit call returned, else ``None``.
        host: the host that submitted.
    """

    backend: str
    attempt: int
    key: str
    at: float
    handle: str | None = None
    host: str = ""

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "backend": self.backend,
            "attempt": self.attempt,
            "key": self.key,
            "at": self.at,
            "handle": self.handle,
            "host": self.host,
        }


def intent_path(registry: Registry, run_id: str, attempt: int) -> Path:
    """Where the record of ``attempt``'s submission lives."""
    return registry.run_dir(run_id) / INTENT.format(attempt=int(attempt))


def read_intent(registry: Registry, run_id: str, attempt: int) -> Intent | None:
    """The attempt's submission record, or ``None`` when there is none (or it is unreadable)."""
    try:
        raw = read_json(intent_path(registry, run_id, attempt))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    try:
        handle = raw.get("handle")
        return Intent(
            backend=str(raw["backend"]),
            attempt=int(raw["attempt"]),
            key=str(raw["key"]),
            at=float(raw["at"]),
            handle=str(handle) if handle is not None else None,
            host=str(raw.get("host") or ""),
        )
    except (KeyError, TypeError, ValueError):
        return None


def write_intent(
    registry: Registry, run_id: str, attempt: int, *, backend: str, key: str, host: str
) -> Intent:
    """Record (durably) that ``attempt`` is about to be submitted under ``key``."""
    intent = Intent(backend=backend, attempt=attempt, key=key, at=time.time(), host=host)
    write_json(intent_path(registry, run_id, attempt), intent.to_json())
    return intent


def record_handle(registry: Registry, run_id: str, intent: Intent, handle: str) -> Intent:
    """Record (durably) the engine's id for a submitted attempt."""
    done = Intent(
        backend=intent.backend,
        attempt=intent.attempt,
        key=intent.key,
        at=intent.at,
        handle=handle,
        host=intent.host,
    )
    write_json(intent_path(registry, run_id, intent.attempt), done.to_json())
    return done


def fault_point(stage: str) -> None:
    """Test hook: die by SIGKILL right ``before`` or ``after`` an engine's submit call.

    ``BACKPROP_FAULT_SUBMIT=before|after`` makes the crash-safety tests kill the submitter at
    exactly the moments the intent record must cover.
    """
    if os.environ.get(envnames.FAULT_SUBMIT) == stage:
        os.kill(os.getpid(), signal.SIGKILL)
