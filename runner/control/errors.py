"""The one error of run control: an action a run's state does not allow."""

from __future__ import annotations


class LifecycleError(RuntimeError):
    """An action that cannot be done to a run in its current state (one-line message)."""
