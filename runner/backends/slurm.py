"""The Slurm backend: each attempt's supervisor is the batch step of one Slurm job.

* **Submit** (:meth:`SlurmBackend.submit`): an intent record first (the job name, derived from
  the registry, run id and attempt), then ``sbatch --parsable``, then the job id. The job
  carries ``--gres=gpu:N`` from the run's GPUs, ``--time`` from the attempt's time limit plus
  the stop grace and ``--signal=B:USR1@<grace>`` (Slurm's warning; the supervisor ends the
  trainer gracefully and the run is ``timeboxed``), ``--requeue``, ``--open-mode=append``,
  its output in the run folder (``slurm-<attempt>.out``: the supervisor's own messages; the
  trainer's output is ``output.log`` as everywhere) and the placement's partition, account and
  extra arguments (last, so they win). A submitter killed between intent and job id leaves an
  intent without a handle: the next submit asks Slurm for the job name first and records what
  it finds, so one attempt is one job.
* **Describe**: the run folder (the supervisor's records) is the truth; Slurm's view is the
  cross-check. ``squeue`` says pending (with Slurm's reason), running or ended; a job Slurm
  no longer lists is asked of ``sacct`` (``--starttime`` from the intent: job ids are reused
  after a controller crash). Without accounting (no slurmdbd) that is ``unknown``, said so.
* **Cancel**: a stop is a request file in the run folder (the supervisor polls it and stops
  the trainer as locally: SIGINT, SIGTERM, SIGKILL); a job still pending is cancelled with
  ``scancel --state=PENDING`` (atomic in the controller: a job that just started is left to
  the request) and the run ends ``stopped``. A force stop also sends SIGUSR2 to the batch step
  (``scancel --batch --signal=USR2``: the supervisor's "kill now"), which reaches a supervisor
  on another node where Backprop cannot signal.
* **Pause** is the supervisor's (SIGSTOP/SIGCONT of the trainer, through a request file), not
  ``scontrol suspend`` (an operator's command): the job keeps its allocation and Slurm's clock
  keeps running while paused.
"""

from __future__ import annotations

import hashlib
import math
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

from runner import envnames
from runner.backends import slurm_cli
from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN, BackendStatus, read_output
from runner.backends.intent import (
    Intent,
    fault_point,
    read_intent,
    record_handle,
    write_intent,
)
from runner.backends.slurm_cli import Job, NoAccounting, SlurmError
from runner.durable import write_json
from runner.model import ShapeError
from runner.registry import REQUESTS, Registry
from runner.tickets import ADMITTED, CANCELLED, Queue

SUPERVISOR_MODULE = "runner.supervisor.main"
USR1_MARGIN_S = 15.0  # after the trainer's grace, time for the supervisor to record the end
EARLY_SIGNAL_S = 60.0  # Slurm may send --signal up to a minute early (its event resolution)
SLACK_S = 30.0
# Never passed to sbatch: Slurm sets the job's own allocation; the fault hook is the test's.
_NOT_EXPORTED = (
    "CUDA_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
    "ROCR_VISIBLE_DEVICES",
    envnames.FAULT_SUBMIT,
)


def job_name(registry: Registry, run_id: str, attempt: int) -> str:
    """The job name of one attempt: ``bp-<registry tag>-<run id>-a<attempt>``.

    The tag (a hash of the registry's path) keeps two registries of one user apart.
    """
    tag = hashlib.sha256(str(Path(registry.root).resolve()).encode()).hexdigest()[:6]
    return f"bp-{tag}-{run_id}-a{int(attempt)}"


def warning_grace_s(grace_int_s: float, grace_term_s: float) -> int:
    """Seconds before Slurm's limit its SIGUSR1 comes: the whole stop sequence plus a margin."""
    return int(math.ceil(grace_int_s + grace_term_s + USR1_MARGIN_S))


def time_limit_minutes(timeout_s: float, grace_s: int) -> int:
    """``--time`` in minutes: past our own limit, so the supervisor's timer ends it first."""
    return max(1, int(math.ceil((timeout_s + grace_s + EARLY_SIGNAL_S + SLACK_S) / 60.0)))


def sbatch_args(
    registry: Registry, run_id: str, attempt: int, timeout_s: float | None
) -> list[str]:
    """The ``sbatch`` options of one attempt (see the module's docstring)."""
    spec = registry.read_spec(run_id)
    folder = registry.run_dir(run_id)
    grace = warning_grace_s(spec.grace_int_s, spec.grace_term_s)
    args = [
        f"--job-name={job_name(registry, run_id, attempt)}",
        f"--chdir={folder}",
        f"--output={folder / f'slurm-{int(attempt)}.out'}",
        "--open-mode=append",
        "--requeue",
        f"--signal=B:USR1@{grace}",
    ]
    if spec.resources.gpus:
        args.append(f"--gres=gpu:{int(spec.resources.gpus)}")
    if timeout_s is not None:
        args.append(f"--time={time_limit_minutes(timeout_s, grace)}")
    p = spec.placement
    if p.partition:
        args.append(f"--partition={p.partition}")
    if p.account:
        args.append(f"--account={p.account}")
    return [*args, *p.extra_args]


def batch_script(registry: Registry, run_id: str, attempt: int) -> str:
    """The job's script: it ``exec``s the supervisor, so Slurm's batch signals reach it."""
    pkg_root = str(Path(__file__).resolve().parents[2])
    q = shlex.quote
    root = q(str(Path(registry.root).resolve()))
    return (
        "#!/bin/sh\n"
        f"# Backprop run {run_id}, attempt {int(attempt)}: the supervisor is this batch step.\n"
        f"export {envnames.HOME}={root}\n"
        f'export PYTHONPATH={q(pkg_root)}"${{PYTHONPATH:+:$PYTHONPATH}}"\n'
        f"exec {q(sys.executable)} -m {SUPERVISOR_MODULE} --home {root} "
        f"--run {q(run_id)} --attempt {int(attempt)}\n"
    )


def find_job(intent: Intent, *, fresh: bool = True) -> Job | None:
    """The job of a submission, by id when known (its name checked: ids are reused), else name.

    ``fresh=False`` reads this user's jobs from one ``squeue`` shared by every look-up of the
    next few seconds (listings: one call for all runs, not one per run); submitting and
    cancelling always ask afresh. Raises :class:`SlurmError` when Slurm does not answer
    (never guess "not submitted").
    """
    mine = None if fresh else slurm_cli.my_jobs(since=intent.at)
    if intent.handle:
        if mine is None:
            jobs = slurm_cli.squeue(job_id=intent.handle)
        else:
            jobs = [j for j in mine if j.job_id == intent.handle]
        if any(j.name == intent.key for j in jobs):
            return next(j for j in jobs if j.name == intent.key)
        if jobs:  # the id now belongs to another job: ours was lost (controller crash)
            return None
    named = slurm_cli.squeue(name=intent.key) if mine is None else mine
    jobs = [j for j in named if j.name == intent.key]
    if jobs:
        return min(jobs, key=lambda j: int(j.job_id) if j.job_id.isdigit() else 0)
    try:
        found = slurm_cli.sacct(name=intent.key, since=intent.at)
    except NoAccounting:
        return None
    return found[-1] if found else None


class SlurmBackend:
    """Supervisors as Slurm batch jobs; the cluster's scheduler decides where and when."""

    name = "slurm"
    queues_itself = True
    remote = True

    def reconcile(self, registry: Registry, run_id: str, attempt: int) -> Intent | None:
        """Complete a dangling intent: record the job Slurm knows by its name, if any."""
        intent = read_intent(registry, run_id, attempt)
        if intent is None or intent.handle:
            return intent
        job = find_job(intent)
        if job is None:
            return intent
        return record_handle(registry, run_id, intent, job.job_id)

    def submit(self, registry: Registry, run_id: str, attempt: int) -> str:
        """Submit the attempt's job once (a repeated call returns the same job id)."""
        intent = self.reconcile(registry, run_id, attempt)
        if intent is not None and intent.handle:
            return intent.handle
        if _attempt_started(registry, run_id, attempt):
            return ""  # a supervisor already ran it: its job is over, never submit twice
        ticket = Queue(registry.root).read_ticket(run_id)
        if ticket is None or ticket.attempt != attempt or ticket.kind != ADMITTED:
            return ""  # ended before it was submitted (stopped, or refused by Slurm)
        spec = registry.read_spec(run_id)
        timeout_s = ticket.timeout_s if ticket and ticket.attempt == attempt else spec.timeout_s
        args = sbatch_args(registry, run_id, attempt, timeout_s)
        script = batch_script(registry, run_id, attempt)
        env = {k: v for k, v in os.environ.items() if k not in _NOT_EXPORTED}
        key = job_name(registry, run_id, attempt)
        intent = write_intent(
            registry, run_id, attempt, backend=self.name, key=key, host=os.uname()[1]
        )
        fault_point("before")
        try:
            job_id = slurm_cli.sbatch(args, script, env=env)
        except SlurmError as exc:
            if not exc.transient:  # Slurm refused the job: the run ends, saying why
                _cancel_ticket(registry, run_id, attempt, f"Slurm refused the job: {exc}", "failed")
            raise
        fault_point("after")
        record_handle(registry, run_id, intent, job_id)
        return job_id

    def describe(self, registry: Registry, run_id: str) -> BackendStatus:
        """Slurm's view of the latest attempt: pending (with its reason), running, ended."""
        attempt = _latest_attempt(registry, run_id)
        intent = read_intent(registry, run_id, attempt) if attempt else None
        if intent is None:
            return BackendStatus(UNKNOWN, "not submitted to Slurm")
        try:
            job = find_job(intent, fresh=False)
        except SlurmError as exc:
            return BackendStatus(UNKNOWN, f"Slurm does not answer: {exc}", intent.handle or "")
        return status_of(job, intent, accounting=_has_accounting())

    def cancel(self, registry: Registry, run_id: str, *, force: bool) -> str:
        """Stop through a request file; cancel a job still pending; SIGUSR2 for force."""
        write_request(registry, run_id, "kill" if force else "stop")
        attempt = _latest_attempt(registry, run_id)
        intent = self.reconcile(registry, run_id, attempt) if attempt else None
        what = f"{'force-' if force else ''}stop requested for run {run_id}"
        if intent is None or not intent.handle:
            return what
        job = find_job(intent)
        if job is not None and job.waiting:
            slurm_cli.scancel(intent.handle, state="PENDING")
            after = find_job(intent)
            if after is not None and after.state == "CANCELLED":
                why = f"stopped while pending in Slurm (job {intent.handle} cancelled)"
                _cancel_ticket(registry, run_id, attempt, why)
                return f"stopped run {run_id}: cancelled Slurm job {intent.handle} while pending"
        elif job is not None and job.active and force:
            slurm_cli.scancel(intent.handle, signal="USR2", batch=True)
        return f"{what} (Slurm job {intent.handle})"

    def logs(self, registry: Registry, run_id: str, offset: int, limit: int) -> tuple[bytes, int]:
        """Read ``output.log`` from ``offset`` (the run folder is on shared storage)."""
        return read_output(registry, run_id, offset, limit)

    def reachable(self) -> tuple[bool, str]:
        """Whether ``sinfo`` answers, with the partitions and node states it lists."""
        try:
            return True, f"slurm: {slurm_cli.sinfo()}"
        except SlurmError as exc:
            return False, str(exc)


def status_of(job: Job | None, intent: Intent, *, accounting: bool) -> BackendStatus:
    """Slurm's answer about one submission, in the backend's words (pure)."""
    handle = intent.handle or ""
    if job is None:
        if not handle:
            return BackendStatus(UNKNOWN, "submission interrupted; Slurm has no such job", "")
        if accounting:
            return BackendStatus(ENDED, f"Slurm has no record of job {handle}: lost", handle)
        return BackendStatus(
            UNKNOWN,
            f"Slurm no longer lists job {handle} and keeps no accounting (slurmdbd): "
            "how it ended is unknown",
            handle,
        )
    # Slurm's own words (the caller says which engine): "Resources", "running", "node_fail".
    if job.waiting:
        return BackendStatus(PENDING, job.reason or job.state.lower(), job.job_id, job.node)
    if job.active:
        return BackendStatus(RUNNING, job.state.lower(), job.job_id, job.node)
    detail = f" ({job.reason})" if job.reason else ""
    return BackendStatus(ENDED, f"{job.state.lower()}{detail}", job.job_id, job.node)


def write_request(registry: Registry, run_id: str, action: str) -> None:
    """Leave a control request for the run's supervisor (no signal: it may be on another node)."""
    folder = registry.run_dir(run_id) / REQUESTS
    folder.mkdir(exist_ok=True)
    name = f"{time.time_ns():020d}-{os.urandom(3).hex()}.json"
    write_json(folder / name, {"action": action, "at": time.time(), "by": os.getpid()})


def _latest_attempt(registry: Registry, run_id: str) -> int:
    """The run's latest attempt (the ticket's, or the supervisor's record)."""
    best = 0
    try:
        ticket = Queue(registry.root).read_ticket(run_id)
        best = ticket.attempt if ticket else 0
        state = registry.read_state(run_id)
        best = max(best, state.attempt if state else 0)
    except (ShapeError, OSError):
        pass
    return best


def _attempt_started(registry: Registry, run_id: str, attempt: int) -> bool:
    """Whether a supervisor already took this attempt (its record says so)."""
    try:
        state = registry.read_state(run_id)
    except (ShapeError, OSError):
        return False
    return state is not None and state.attempt >= attempt


def _cancel_ticket(
    registry: Registry, run_id: str, attempt: int, reason: str, end: str = "stopped"
) -> None:
    """End an attempt that never reached its supervisor: ``stopped`` (or ``end``), saying why."""
    queue = Queue(registry.root)
    with queue.locked():
        ticket = queue.read_ticket(run_id)
        if ticket is None or ticket.attempt != attempt or ticket.kind != ADMITTED:
            return
        if _attempt_started(registry, run_id, attempt):
            return
        queue.write_ticket(replace(ticket, kind=CANCELLED, reason=reason, end_status=end))
    queue.poke()


_ACCOUNTING: bool | None = None


def _has_accounting() -> bool:
    """Whether ``sacct`` answers here (asked once per process)."""
    global _ACCOUNTING
    if _ACCOUNTING is None:
        try:
            slurm_cli.sacct(name="backprop-probe", since=time.time())
            _ACCOUNTING = True
        except SlurmError:
            _ACCOUNTING = False
    return _ACCOUNTING
