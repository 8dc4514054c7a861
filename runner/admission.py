"""The supervisor's admission hook: the seam between a run and the governor.

The supervisor asks :meth:`AdmissionHook.request` before starting the trainer (again and again
while the answer is "not yet"), tells the hook when the trainer started and when it ended.
The governor supplies the real hook through :func:`governor.hook.build_hook`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from runner.model import RunSpec, Status


@dataclass(frozen=True)
class Admission:
    """The answer to "may this run start now?".

    Attributes:
        admitted: start the trainer now.
        reason: why (shown as the run's reason while it waits).
        env: placement and framework settings for the trainer.
        gpus: the GPUs placed on.
        retry_after_s: when to ask again at the latest.
        final: not admitted and never will be: end the run now with this status, without
            running it (a dependency failed: ``skipped``).
        wait_for: run ids whose end should make the asker ask again at once (its
            dependencies): their supervisors' locks are watched, so waiting costs no polling.
    """

    admitted: bool
    reason: str = ""
    env: dict[str, str] = field(default_factory=dict)
    gpus: tuple[int, ...] = ()
    retry_after_s: float = 1.0
    final: Status | None = None
    wait_for: tuple[str, ...] = ()


class AdmissionHook(Protocol):
    """What the supervisor needs from the governor."""

    def request(self, spec: RunSpec, run_dir: Path, attempt: int, *, force: bool) -> Admission:
        """Decide whether the run may start now (``force``: the user said start it anyway)."""

    def started(self, spec: RunSpec, run_dir: Path, trainer_pid: int) -> None:
        """The trainer is running with this pid (its process group id too)."""

    def release(self, spec: RunSpec, run_dir: Path) -> None:
        """The attempt ended or was abandoned: give back whatever was reserved for it."""


class AdmitAll:
    """Admits every run at once (no limits). The default without a governor."""

    def request(self, spec: RunSpec, run_dir: Path, attempt: int, *, force: bool) -> Admission:
        """Always admit."""
        return Admission(admitted=True, reason="admitted")

    def started(self, spec: RunSpec, run_dir: Path, trainer_pid: int) -> None:
        """Nothing to record."""

    def release(self, spec: RunSpec, run_dir: Path) -> None:
        """Nothing to release."""
