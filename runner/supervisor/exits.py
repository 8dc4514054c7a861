"""How the end of a run is named: truthfully, from what is known (pure functions).

An exit code names ``completed`` or ``failed``; a stop or the time limit names ``stopped`` or
``timeboxed``; a supervisor that re-adopted a trainer it could not ``wait()`` for may not know
the code, and then never guesses ``completed``. What went wrong with the records meanwhile (a
full disk, a read-only registry, metric lines dropped) is added to the reason.
"""

from __future__ import annotations

import signal
from typing import Literal, get_args

from runner.model import Status

StopKind = Literal["stop", "kill", "timeout"]
"""Why a supervisor stops its trainer: the user asked (``stop``, or ``kill`` at once), or the
time limit was reached (``timeout``). Recorded as the state's ``stop_requested``."""

STOP_KINDS: tuple[StopKind, ...] = get_args(StopKind)


def as_stop_kind(value: object) -> StopKind | None:
    """``value`` if it names a stop kind (a control request, a recorded state), else ``None``."""
    for kind in STOP_KINDS:
        if value == kind:
            return kind
    return None


def classify(
    code: int,
    stop_kind: StopKind | None,
    stop_phase: int,
    hint: str | None,
    terminate_reason: str = "",
) -> tuple[Status, str]:
    """Name an exit truthfully (pure).

    Args:
        code: the exit code, or minus the signal number (as ``waitstatus_to_exitcode``).
        stop_kind: ``"stop"``/``"kill"`` (the user asked), ``"timeout"``, or ``None``.
        stop_phase: how far the stop sequence went (1 SIGINT, 2 SIGTERM, 3 SIGKILL).
        hint: a failure reason seen in the output (out of memory, ...).
        terminate_reason: why the supervisor itself was asked to stop, if it was.
    """
    how = _describe(code)
    forced = {2: signal.SIGTERM, 3: signal.SIGKILL}.get(stop_phase)
    if stop_kind is not None:
        status = Status.TIMEBOXED if stop_kind == "timeout" else Status.STOPPED
        who = terminate_reason or (
            "time limit reached" if stop_kind == "timeout" else "stopped by user"
        )
        if forced is not None and code == -forced:  # it took the escalation
            if not terminate_reason and stop_kind != "timeout":
                who = "stopped"  # the status says the user asked: "stopped (forced: SIGKILL)"
            return status, f"{who} (forced: {forced.name})"
        after = f" after {forced.name}" if forced is not None else ""
        return status, f"{who}; {how}{after}"
    if code == 0:
        return Status.COMPLETED, "exit 0"
    if hint:
        return Status.FAILED, f"{hint}; {how}"
    if code == -signal.SIGKILL:
        return Status.FAILED, f"{how} (not by Backprop: possibly the out-of-memory killer)"
    return Status.FAILED, how


def _describe(code: int) -> str:
    if code >= 0:
        return f"exit {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"killed by {name}"


def classify_unknown(stop_kind: StopKind | None, hint: str | None) -> tuple[Status, str]:
    """Name the end of a trainer whose exit code cannot be known (pure)."""
    if stop_kind == "timeout":
        return Status.TIMEBOXED, "time limit reached; exit code unknown"
    if stop_kind in ("stop", "kill"):
        who = "stopped (forced)" if stop_kind == "kill" else "stopped by user"
        return Status.STOPPED, f"{who}; exit code unknown"
    if hint:
        return Status.FAILED, f"{hint}; exit code unknown"
    return Status.LOST, "trainer ended under a re-adopted supervisor; exit code unknown"


def with_write_note(reason: str, trouble: str | None, dropped: int) -> str:
    """A final reason plus what went wrong with the records meanwhile (pure)."""
    if trouble:
        reason = f"{reason}; {trouble}"
    if dropped:
        reason = f"{reason}; {dropped} metric lines dropped (backprop reingest can re-read them)"
    return reason[:400]
