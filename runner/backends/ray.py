"""The Ray backend: each attempt's supervisor is the entrypoint of one Ray job.

``backprop run --backend ray [--ray-address URL]`` records the run as usual; once the
dispatcher hands it over (Ray queues itself: no local admission, no local GPU placement), it
is submitted through Ray's Jobs API with ``entrypoint_num_gpus`` from ``--gpus``. Ray decides
when and where it runs and sets the job's ``CUDA_VISIBLE_DEVICES``, which the trainer sees
unchanged. The run folder (on storage the cluster's nodes share) stays the record; Ray's view
(:meth:`RayBackend.describe`) is the cross-check for what the folder cannot say: a job still
pending in Ray, or one whose supervisor died.

Submission is crash-safe (:mod:`runner.backends.intent`): the intent (the deterministic
submission id) is written first, then ``submit_job``, then the handle. A submitter killed in
between leaves an intent without a handle; submitting again asks Ray, which refuses a second
job under the same id, so a run is never run twice.

Stop: a graceful stop is our own request in the run folder (the supervisor sends SIGINT to the
trainer's group, then SIGTERM, then SIGKILL); only when the supervisor has not started or does
not take the request does ``stop_job`` go to Ray, which signals the whole job tree with SIGINT
and SIGKILLs it after our grace. Logs are the run folder's ``output.log``, not Ray's copy.

``ray`` is imported only when a Ray run is submitted, described or stopped.
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.request
from dataclasses import replace
from typing import Any

from runner.backends import ray_jobs
from runner.backends.base import UNKNOWN, BackendStatus, read_output
from runner.backends.intent import (
    Intent,
    fault_point,
    read_intent,
    record_handle,
    write_intent,
)
from runner.model import ShapeError, Status
from runner.registry import REQUESTS, Registry
from runner.tickets import ADMITTED, CANCELLED, Queue

REACT_S = 5.0  # how long a supervisor may take to pick up a stop request before Ray is asked
PROBE_TIMEOUT_S = 3.0


class RayError(RuntimeError):
    """A Jobs API call that failed (one line, Ray's words)."""


class RayBackend:
    """Runs each attempt's supervisor as a Ray job (see the module docstring)."""

    name = "ray"
    queues_itself = True
    remote = True

    def __init__(self) -> None:
        """No connection yet: one client per address, made on first use."""
        # Typed loosely: ray is optional, and mypy must pass where it is not installed.
        self._clients: dict[str, Any] = {}

    # --- plumbing ---------------------------------------------------------------------------

    def address(self, registry: Registry, run_id: str) -> str:
        """The Jobs API of the run's cluster (its spec's address, ``RAY_ADDRESS``, or local)."""
        return ray_jobs.address_for(registry.read_spec(run_id).placement.address)

    def client(self, address: str) -> Any:
        """A Jobs API client for ``address`` (raises :class:`RayError` when unreachable)."""
        if address not in self._clients:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError as exc:
                raise RayError(f"the ray package is not installed here ({exc})") from None
            try:
                self._clients[address] = JobSubmissionClient(address)
            except Exception as exc:  # ConnectionError, ValueError, RuntimeError...
                raise RayError(f"Ray at {address} does not answer: {_one_line(exc)}") from None
        return self._clients[address]

    def job_info(self, address: str, key: str) -> Any | None:
        """Ray's record of the job submitted as ``key``, or ``None`` when Ray has none."""
        try:
            return self.client(address).get_job_info(key)
        except RayError:
            raise
        except Exception as exc:
            if ray_jobs.is_missing(exc):
                return None
            raise RayError(f"Ray at {address}: {_one_line(exc)}") from None

    # --- the Backend protocol ---------------------------------------------------------------

    def submit(self, registry: Registry, run_id: str, attempt: int) -> str:
        """Submit the attempt's supervisor as a Ray job, at most once; return the submission id.

        Idempotent: an attempt whose handle is recorded is not submitted again, and one whose
        intent has no handle (a submitter killed mid-way) is submitted under the same id,
        which Ray refuses if the first call got through: then the handle is recorded.
        """
        spec = registry.read_spec(run_id)
        key = ray_jobs.submission_id(run_id, attempt, spec.created_at)
        intent = read_intent(registry, run_id, attempt)
        if intent is not None and intent.key == key and intent.handle:
            return intent.handle
        if intent is None or intent.key != key:
            intent = write_intent(
                registry, run_id, attempt, backend=self.name, key=key, host=os.uname()[1]
            )
        fault_point("before")
        address = ray_jobs.address_for(spec.placement.address)
        client = self.client(address)
        try:
            client.submit_job(
                entrypoint=ray_jobs.entrypoint(registry.root, run_id, attempt),
                submission_id=key,
                entrypoint_num_gpus=spec.resources.gpus or 0,
                runtime_env=ray_jobs.runtime_env(
                    registry.root, spec.grace_int_s, spec.grace_term_s
                ),
                metadata={"backprop_run": run_id, "backprop_attempt": str(attempt)},
            )
        except Exception as exc:
            # Refused as a duplicate (an earlier call got through) or failed in a way that
            # leaves it unclear: Ray's record of the key decides.
            if not ray_jobs.is_duplicate(exc) and self.job_info(address, key) is None:
                raise RayError(f"Ray refused run {run_id}: {_one_line(exc)}") from None
        fault_point("after")
        record_handle(registry, run_id, intent, key)
        return key

    def reconcile(self, registry: Registry, run_id: str, attempt: int) -> Intent | None:
        """Settle an intent left without a handle: record it if Ray has the job.

        Returns the (possibly completed) intent; ``None`` when there is none. An intent Ray
        does not know stays as it is: submitting the attempt again sends it under its key.
        """
        intent = read_intent(registry, run_id, attempt)
        if intent is None or intent.handle:
            return intent
        address = self.address(registry, run_id)
        if self.job_info(address, intent.key) is not None:
            return record_handle(registry, run_id, intent, intent.key)
        return intent

    def describe(self, registry: Registry, run_id: str) -> BackendStatus:
        """Ray's view of the latest attempt (``unknown`` with why, when Ray cannot say)."""
        attempt = latest_attempt(registry, run_id)
        intent = read_intent(registry, run_id, attempt) if attempt else None
        if intent is None:
            return BackendStatus(state=UNKNOWN, reason="not submitted to Ray yet")
        try:
            info = self.job_info(self.address(registry, run_id), intent.key)
        except RayError as exc:
            return BackendStatus(state=UNKNOWN, reason=str(exc), handle=intent.key)
        if info is None:
            why = (
                "Ray has no record of this job (was its head restarted?)"
                if intent.handle
                else "submission not confirmed, and Ray has no such job"
            )
            return BackendStatus(state=UNKNOWN, reason=why, handle=intent.key)
        return ray_jobs.status_of(
            str(getattr(info.status, "value", info.status)),
            info.message,
            handle=intent.key,
            exit_code=getattr(info, "driver_exit_code", None),
            agent_address=getattr(info, "driver_agent_http_address", None),
        )

    def cancel(self, registry: Registry, run_id: str, *, force: bool) -> str:
        """Stop an active run: through its supervisor when it runs, else (or if deaf) in Ray.

        Called by :func:`runner.control.run_actions.stop` (which refuses ended runs, ends lost
        ones and cancels queued ones itself). Graceful: our stop request (SIGINT to the
        trainer's group, then SIGTERM, then SIGKILL, each after the run's grace); ``force``:
        our kill request. An attempt Ray has not started is recorded as stopped at once.
        """
        from runner.control.run_actions import send_request

        attempt = latest_attempt(registry, run_id)
        intent = self.reconcile(registry, run_id, attempt) if attempt else None
        state = registry.read_state(run_id)
        started = state is not None and state.attempt == attempt
        action = "kill" if force else "stop"
        if started and state is not None and not state.status.active:
            return f"run {run_id} has ended"
        if started:
            send_request(registry, run_id, action)
            if _request_taken(registry, run_id, REACT_S):
                return f"{'force-' if force else ''}stop requested for run {run_id}"
        stopped = False
        if intent is not None:
            address = self.address(registry, run_id)
            try:
                info = self.job_info(address, intent.key)
                stopped = info is not None and bool(self.client(address).stop_job(intent.key))
            except RayError as exc:
                raise RayError(f"cannot stop run {run_id}: {exc}") from None
        if (
            not started
            and attempt
            and _cancel_unstarted(registry, run_id, attempt, "stopped before Ray started it")
        ):
            # Ray keeps a pending job pending after stop_job (2.60); should it start later,
            # its supervisor finds this request (and the cancelled ticket) and runs nothing.
            send_request(registry, run_id, action)
            return f"stopped run {run_id} before Ray started it"
        if intent is not None and stopped:
            return f"stop sent to Ray job {intent.key} (SIGINT, SIGKILL after the grace)"
        return f"{'force-' if force else ''}stop requested for run {run_id}"

    def logs(self, registry: Registry, run_id: str, offset: int, limit: int) -> tuple[bytes, int]:
        """Read the run folder's ``output.log`` from ``offset`` (shared storage, not Ray's)."""
        return read_output(registry, run_id, offset, limit)

    def reachable(self, address: str | None = None) -> tuple[bool, str]:
        """Whether the Jobs API at ``address`` (default: ``RAY_ADDRESS`` or local) answers."""
        address = address or ray_jobs.address_for(None)
        if address.startswith(("http://", "https://")):
            url = address.rstrip("/") + "/api/version"
            try:
                with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as resp:
                    resp.read(4096)
            except (OSError, ValueError) as exc:
                return False, f"Ray Jobs API at {address} does not answer: {_one_line(exc)}"
            try:
                import ray.job_submission  # noqa: F401
            except ImportError:
                return False, f"Ray answers at {address}, but ray is not installed here"
            return True, f"Ray Jobs API at {address}"
        try:
            self.client(address)
        except RayError as exc:
            return False, str(exc)
        return True, f"Ray at {address}"


def latest_attempt(registry: Registry, run_id: str) -> int:
    """The run's latest attempt: its ticket's or its state's, whichever is later (0: none)."""
    attempt = 0
    with contextlib.suppress(ShapeError, OSError):
        ticket = Queue(registry.root).read_ticket(run_id)
        if ticket is not None:
            attempt = ticket.attempt
    with contextlib.suppress(ShapeError, OSError):
        state = registry.read_state(run_id)
        if state is not None:
            attempt = max(attempt, state.attempt)
    return attempt


def _request_taken(registry: Registry, run_id: str, within_s: float) -> bool:
    """Whether the supervisor consumed the run's control requests within ``within_s``."""
    folder = registry.run_dir(run_id) / REQUESTS
    deadline = time.monotonic() + within_s
    while True:
        try:
            pending = [n for n in os.listdir(folder) if n.endswith(".json")]
        except FileNotFoundError:
            pending = []
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _cancel_unstarted(registry: Registry, run_id: str, attempt: int, reason: str) -> bool:
    """Record that an attempt Ray never started ended: its ticket, cancelled as stopped.

    Returns ``False`` when its supervisor started after all (it records the stop itself).
    """
    queue = Queue(registry.root)
    with queue.locked():
        ticket = queue.read_ticket(run_id)
        state = registry.read_state(run_id)
        if ticket is None or ticket.attempt != attempt or ticket.kind != ADMITTED:
            return False
        if state is not None and state.attempt >= attempt:
            return False
        queue.write_ticket(
            replace(ticket, kind=CANCELLED, reason=reason, end_status=Status.STOPPED.value)
        )
    return True


def _one_line(exc: BaseException) -> str:
    """An exception as one short line (Ray's errors carry whole tracebacks)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # Ray's HTTP errors put the server's traceback first and its verdict last.
    text = lines[-1] if lines else type(exc).__name__
    if len(lines) > 1 and lines[0].startswith("Request failed"):
        text = f"{lines[0].split(':', 1)[0]}: {lines[-1]}"
    return text[:300]
