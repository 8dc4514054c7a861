"""What the Ray backend says to and hears from Ray's Jobs API, as pure functions (no ``ray``).

:mod:`runner.backends.ray` does the calls; everything decided about them lives here so it can
be tested without a cluster:

* :func:`submission_id`: the deterministic key of one attempt (run id + attempt + a digest of
  the spec's creation time, so two registries sharing a cluster never collide on ``000001``).
  Ray refuses a second job with the same id, which makes a repeated submit harmless.
* :func:`entrypoint` and :func:`runtime_env`: the supervisor as the job's entrypoint, and the
  job's environment (our registry, our package on ``PYTHONPATH``, and stop as SIGINT with our
  grace: Ray's default is SIGTERM then SIGKILL 3 s later).
* :func:`status_of`: Ray's ``JobStatus`` and message as a :class:`BackendStatus`.

Measured (Ray 2.60, one node): the entrypoint runs under ``/bin/sh -c`` in a session of its
own; ``stop_job`` signals that process *and all its descendants* (the trainer too) with
``RAY_JOB_STOP_SIGNAL``, then SIGKILLs them after ``RAY_JOB_STOP_WAIT_TIME_S`` (an integer).
An entrypoint with ``entrypoint_num_gpus=1`` gets ``CUDA_VISIBLE_DEVICES`` set by Ray (two
such jobs: ``0`` and ``1``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from runner import envnames
from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN, BackendStatus
from runner.textsafe import sanitize_line

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
RAY_ADDRESS = "RAY_ADDRESS"  # Ray's own variable (not ours): the cluster to talk to
STOP_SIGNAL = "RAY_JOB_STOP_SIGNAL"
STOP_WAIT = "RAY_JOB_STOP_WAIT_TIME_S"
KEY_PREFIX = "backprop-"
# Ray's SIGKILL must come after our own escalation (SIGINT, grace, SIGTERM, grace, SIGKILL)
# and the supervisor's last records.
STOP_MARGIN_S = 15.0
REASON_CHARS = 200

# Ray's JobStatus values, and what each means to us.
_STATES = {
    "PENDING": PENDING,
    "RUNNING": RUNNING,
    "SUCCEEDED": ENDED,
    "FAILED": ENDED,
    "STOPPED": ENDED,
}
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def address_for(placement_address: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The Jobs API to use: the run's ``--ray-address``, else ``RAY_ADDRESS``, else local."""
    env = os.environ if environ is None else environ
    return placement_address or env.get(RAY_ADDRESS) or DEFAULT_ADDRESS


def submission_id(run_id: str, attempt: int, created_at: float) -> str:
    """The Ray submission id of one attempt: the same on every host and every retry.

    ``created_at`` (the spec's, written once) tells apart runs of different registries that
    share a cluster and an id.
    """
    digest = hashlib.sha256(f"{run_id}:{created_at!r}".encode()).hexdigest()[:10]
    return f"{KEY_PREFIX}{_SAFE.sub('_', run_id)}-a{int(attempt)}-{digest}"


def package_root() -> str:
    """The folder holding this ``runner`` package (the job must import the very same code)."""
    return str(Path(__file__).resolve().parent.parent.parent)


def entrypoint(root: Path | str, run_id: str, attempt: int, python: str | None = None) -> str:
    """The job's shell command: our supervisor, not detached, replacing the shell.

    ``exec`` makes the supervisor the process Ray signals and watches (its exit code is the
    job's). ``python``: the submitter's interpreter, which must exist on the cluster's nodes
    (a shared environment, like the shared registry).
    """
    argv = [
        python or sys.executable,
        "-m",
        "runner.supervisor.main",
        "--home",
        str(root),
        "--run",
        run_id,
        "--attempt",
        str(int(attempt)),
    ]
    return "exec " + shlex.join(argv)


def stop_wait_s(grace_int_s: float, grace_term_s: float) -> int:
    """Seconds Ray waits after its SIGINT before SIGKILL: our whole escalation and a margin."""
    return int(math.ceil(max(0.0, grace_int_s) + max(0.0, grace_term_s) + STOP_MARGIN_S))


def runtime_env(
    root: Path | str, grace_int_s: float, grace_term_s: float, *, pythonpath: str | None = None
) -> dict[str, Any]:
    """The job's runtime environment: where the registry is, our code, and how to stop."""
    path = os.pathsep.join(filter(None, [package_root(), pythonpath]))
    return {
        "env_vars": {
            envnames.HOME: str(root),
            "PYTHONPATH": path,
            STOP_SIGNAL: "SIGINT",
            STOP_WAIT: str(stop_wait_s(grace_int_s, grace_term_s)),
        }
    }


def host_of(agent_address: str | None) -> str:
    """The node a job's driver runs on, from its agent's address (``http://10.0.0.5:52365``)."""
    if not agent_address:
        return ""
    try:
        return urlsplit(agent_address).hostname or ""
    except ValueError:
        return ""


def status_of(
    ray_status: str,
    message: str | None,
    *,
    handle: str,
    exit_code: int | None = None,
    agent_address: str | None = None,
) -> BackendStatus:
    """Ray's view of a job as ours: its state and, in Ray's words, why.

    Args:
        ray_status: Ray's ``JobStatus`` value (``PENDING`` ... ``STOPPED``).
        message: Ray's message (a failure's carries up to 20,000 characters of log: only its
            first line is kept, sanitised).
        handle: the submission id.
        exit_code: the entrypoint's exit code, when Ray knows it.
        agent_address: the driver's agent address (gives the node).
    """
    state = _STATES.get(ray_status, UNKNOWN)
    first = (message or "").strip().splitlines()[0] if (message or "").strip() else ""
    words = sanitize_line(first)[:REASON_CHARS].rstrip(" ,;:")
    reason = f"Ray {ray_status}" + (f": {words}" if words else "")
    if ray_status == "FAILED" and exit_code is not None and "exit code" not in words:
        reason += f" (exit code {exit_code})"
    return BackendStatus(state=state, reason=reason, handle=handle, host=host_of(agent_address))


def is_missing(error: BaseException) -> bool:
    """Whether a Jobs API error says the job does not exist (HTTP 404)."""
    text = str(error)
    return "404" in text.split(":", 1)[0] or "does not exist" in text


def is_duplicate(error: BaseException) -> bool:
    """Whether a submit was refused because the submission id exists already."""
    return "already exists" in str(error)
