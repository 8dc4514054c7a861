"""The governor's admission hook for the supervisor (see :mod:`runner.admission`)."""

from __future__ import annotations

from pathlib import Path

from runner.admission import AdmissionHook, AdmitAll
from runner.config import Config


def build_hook(home: Path, config: Config) -> AdmissionHook:
    """Return the hook the supervisor of a run under ``home`` should ask."""
    return AdmitAll()
