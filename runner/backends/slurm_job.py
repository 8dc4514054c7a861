"""What a supervisor running as a Slurm batch step needs to know about its job.

The supervisor (``runner.supervisor.main``) is the batch step's process: ``sbatch`` runs a
script that ``exec``s it, so Slurm's signals for the batch step reach it directly.

* **SIGUSR1 means "time is nearly up".** The job is submitted with
  ``--signal=B:USR1@<grace>``. Backprop's own nudge ("read your requests") is also SIGUSR1,
  but Backprop never nudges a run placed on an engine
  (:func:`runner.control.run_actions.send_request` leaves a request file only; the supervisor
  polls for it ten times a second), so inside a
  Slurm job a SIGUSR1 is Slurm's warning — unless a request file is waiting at that moment
  (a nudge from an older Backprop), see :func:`usr1_is_time_warning`. The supervisor then ends
  the trainer gracefully and the run is ``timeboxed``.
* **SIGTERM from Slurm** (a preemption, an administrator's ``scancel``, the node going down)
  reaches the supervisor as "supervisor received SIGTERM": the run ends ``stopped`` with that
  reason, which the retry policy counts as ``preempted``. ``SLURM_RESTART_COUNT`` (set when
  Slurm requeued the job) is recorded with the job's facts.
* **The engine's GPUs win.** Slurm sets ``CUDA_VISIBLE_DEVICES`` for the allocation; the
  trainer sees it unchanged, whatever the submitter's environment (kept in the spec) said.

This module imports nothing heavy: the supervisor loads it at start.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

# Variables that describe the job's allocation: the job's own values win over the spec's.
_ALLOCATION = ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "ROCR_VISIBLE_DEVICES")
_SLURM_PREFIX = "SLURM_"


def in_slurm_job(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs inside a Slurm job (as the batch step)."""
    env = os.environ if environ is None else environ
    return bool(env.get("SLURM_JOB_ID"))


def applies(backend: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a supervisor of a run placed on ``backend`` is a Slurm job's batch step.

    Both are needed: a local run started from a shell inside a Slurm allocation inherits
    ``SLURM_JOB_ID`` but is not a batch step, and keeps local behaviour.
    """
    return backend == "slurm" and in_slurm_job(environ)


def job_facts(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The job's facts worth recording in the run folder (id, node, restarts, GPUs)."""
    env = os.environ if environ is None else environ
    restarts = env.get("SLURM_RESTART_COUNT", "0")
    return {
        "backend": "slurm",
        "job_id": env.get("SLURM_JOB_ID", ""),
        "job_name": env.get("SLURM_JOB_NAME", ""),
        "node": env.get("SLURMD_NODENAME") or os.uname()[1],
        "partition": env.get("SLURM_JOB_PARTITION", ""),
        "restart_count": int(restarts) if restarts.isdigit() else 0,
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
    }


def trainer_env(
    env: dict[str, str], spec_env: Mapping[str, str], job_env: Mapping[str, str]
) -> dict[str, str]:
    """``env`` with the job's allocation put back over what the spec's environment said.

    The spec keeps the submitter's environment (a login node's ``SLURM_*`` or
    ``CUDA_VISIBLE_DEVICES``); inside the job, Slurm's values are the truth, and a variable
    the job does not set is removed rather than left with the submitter's value.
    """
    out = dict(env)
    for key in spec_env:
        if (key in _ALLOCATION or key.startswith(_SLURM_PREFIX)) and key not in job_env:
            out.pop(key, None)
    for key, value in job_env.items():
        if key in _ALLOCATION or key.startswith(_SLURM_PREFIX):
            out[key] = value
    return out


def usr1_is_time_warning(requests_dir: Path) -> bool:
    """Whether a SIGUSR1 a batch step's supervisor just received is Slurm's time warning.

    Backprop does not nudge a run on an engine, so SIGUSR1 is Slurm's — unless a request file
    is waiting (then it is a nudge from a Backprop that did, and the request is served).
    """
    try:
        return not any(
            n.endswith(".json") and not n.startswith(".") for n in os.listdir(requests_dir)
        )
    except OSError:
        return True


def attach(sup: Any, requests_dir: Path) -> None:
    """Slurm's side of a supervisor that is a job's batch step (check :func:`applies` first).

    Records the job's facts (event ``slurm_job``), reads SIGUSR1 as Slurm's time-limit
    warning (see :func:`usr1_is_time_warning`) and words a SIGTERM with the job it came to,
    keeping the "supervisor received SIG..." that the retry policy reads as a preemption.
    ``sup`` is the :class:`~runner.supervisor.loop.Supervisor` (duck-typed: ``record``,
    ``stop_kind``, ``_terminate_reason``), with its own handlers installed already.
    """
    facts = job_facts()
    sup.record("slurm_job", **facts)
    where = f"Slurm job {facts['job_id']}" + (
        f", restart {facts['restart_count']}" if facts["restart_count"] else ""
    )
    on_term = signal.getsignal(signal.SIGTERM)

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        if sup.stop_kind is None and usr1_is_time_warning(requests_dir):
            sup.stop_kind = "timeout"
            sup._terminate_reason = f"Slurm's time limit is near (SIGUSR1 to {where})"

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        fresh = sup.stop_kind is None
        if callable(on_term):
            on_term(signum, frame)
        if fresh and str(sup._terminate_reason).startswith("supervisor received SIG"):
            sup._terminate_reason = f"{sup._terminate_reason} ({where})"

    signal.signal(signal.SIGUSR1, on_usr1)
    signal.signal(signal.SIGTERM, on_sigterm)


def die_with_supervisor(then: Callable[[], None]) -> Callable[[], None]:
    """A ``preexec_fn``: the trainer dies with its supervisor, then ``then`` runs.

    For a supervisor that is a Slurm batch step (check :func:`applies` first): when the batch
    step dies, Slurm releases the job's GPUs, but with ``proctrack/linuxproc`` it does not find
    a trainer in a process group of its own, which would go on using GPUs given to the next
    job. ``PR_SET_PDEATHSIG`` ends it. (Locally a new supervisor re-adopts an orphan instead.)
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child only calls it
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)
        then()

    return preexec


_PR_SET_PDEATHSIG = 1
