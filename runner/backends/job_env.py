"""What a supervisor running inside an engine's job keeps from the job (pure; no engine import).

A run's spec carries the submitter's environment, which the supervisor normally lays over its
own. Inside a Slurm or Ray job that would be wrong for what the engine decided: the devices it
gave the job (Ray sets ``CUDA_VISIBLE_DEVICES`` for ``entrypoint_num_gpus``; a
``CUDA_VISIBLE_DEVICES=7`` left in the submitter's shell must not override it) and, for Ray,
the address of the cluster the job is in (the trainer may ``ray.init()`` itself). Those values
are taken from the job's environment after the submitter's.

An engine frees a job's GPUs when the job's main process (our supervisor) dies, but a trainer
in a process group of its own outlives it (Ray kills only the entrypoint's group): it would go
on using GPUs given to the next job. Locally a new supervisor re-adopts such an orphan; inside
an engine's job the trainer dies with its supervisor instead (``PR_SET_PDEATHSIG``, see
:func:`runner.backends.slurm_job.die_with_supervisor`), the run reads ``lost`` and its retry
goes back through the engine.

Ray's ``stop_job`` signals the job's whole process tree (the trainer too) with
``RAY_JOB_STOP_SIGNAL``: a supervisor that receives SIGINT there did not get it from Backprop
(whose stop is a request file) and must not send the trainer a second SIGINT (it could cut
short the checkpoint the first one started).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping

# The job's devices, on every engine (NVIDIA; AMD's equivalents, which Ray also sets).
DEVICE_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
# Ray: the cluster the job runs in (the GCS address) and the job's own configuration.
_ENGINE_VARS = {"ray": ("RAY_ADDRESS", "RAY_JOB_CONFIG_JSON_ENV_VAR")}
RAY_STOP_REASON = "stopped from Ray (ray job stop: SIGINT to the whole job)"


def keep_job_placement(
    env: dict[str, str], job_env: Mapping[str, str], backend: str
) -> dict[str, str]:
    """Put the engine's own settings back over the submitter's in ``env`` (in place).

    Args:
        env: the trainer's environment as built so far (the submitter's on top).
        job_env: the supervisor's own environment, as the engine started it.
        backend: the run's backend; ``local`` changes nothing (the governor placed it).
    """
    if backend == "local":
        return env
    for name in (*DEVICE_VARS, *_ENGINE_VARS.get(backend, ())):
        if name in job_env:
            env[name] = job_env[name]
    return env


def engine_stop(backend: str, signum: int) -> str | None:
    """Why the supervisor got ``signum``, when it came from the engine to the whole job tree.

    ``None``: a signal meant for the supervisor alone (it passes it on as usual).
    """
    if backend == "ray" and signum == signal.SIGINT:
        return RAY_STOP_REASON
    return None


def ray_job_facts(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The Ray job this supervisor is the entrypoint of (for the run's events), or ``None``.

    Ray passes the job's metadata to the entrypoint in ``RAY_JOB_CONFIG_JSON_ENV_VAR``.
    """
    raw = environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if not raw:
        return None
    try:
        meta = json.loads(raw).get("metadata") or {}
    except (ValueError, AttributeError):
        meta = {}
    return {
        "backend": "ray",
        "submission_id": str(meta.get("job_submission_id", ""))[:200],
        "node": os.uname()[1],
        "cuda_visible_devices": environ.get("CUDA_VISIBLE_DEVICES", ""),
    }
