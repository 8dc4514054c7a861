"""The Ray backend end to end, on a real local Ray head (``.ci/ray.sh up``).

Each run's supervisor is a real Ray job's entrypoint; the trainers are the repository's real
PyTorch examples. Skipped with a reason when no head answers (``RAY_ADDRESS`` or
``http://127.0.0.1:8265``) or ``ray`` is not installed.

Ray starts each job in a fresh worker (seconds of CPU each on two cores), so the runs are few
and tiny; the submission faults use runs that ask for more GPUs than the head has: they stay
pending in Ray (no worker starts), which is all a submission needs, and cheap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from governor.dispatcher import ensure, kick
from runner import envnames
from runner.backends import ray_jobs
from runner.backends.base import ENDED, PENDING
from runner.backends.intent import read_intent
from runner.control.errors import LifecycleError
from runner.control.reruns import latest_checkpoint, resume
from runner.control.run_actions import cont, pause, stop
from runner.control.submission import SubmitOptions, captured_env, submit
from runner.metrics.history import Point, decode_record
from runner.model import Resources, RunSpec, Status
from runner.placement import Placement
from runner.registry import METRICS, Registry
from runner.retry import RetryPolicy
from runner.tickets import ADMITTED, Queue, Ticket
from tests.conftest import ROOT, wait_until

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EXAMPLES = ROOT / "examples"
RUN_S = 180.0  # a Ray job's start takes seconds on an idle box, far more on a loaded one


@pytest.fixture(scope="module")
def ray_backend() -> Iterator[Any]:
    """The backend, once a Ray head answers (else every test here skips, saying why)."""
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        pytest.skip("ray is not installed (pip install -e '.[ray]'; .ci/ray.sh up)")
    from runner.backends.ray import RayBackend

    backend = RayBackend()
    ok, why = backend.reachable()
    if not ok:
        pytest.skip(f"no Ray head: {why} (start one with .ci/ray.sh up)")
    yield backend


def run_on_ray(
    registry: Registry,
    command: Sequence[str],
    *,
    name: str,
    gpus: int | None = None,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
    retries: int = 0,
) -> str:
    """``backprop run --backend ray``: record the run, and the dispatcher hands it to Ray."""
    from governor.dispatcher import kick

    spec = submit(
        registry,
        command,
        name=name,
        options=SubmitOptions(
            cwd=str(ROOT),
            timeout_s=timeout_s,
            env={**captured_env(), **(env or {})},
            resources=Resources(gpus=gpus),
            retry=RetryPolicy(retries=retries, backoff_s=0.0),
            placement=Placement(backend="ray"),
        ),
    )
    kick(registry)
    return spec.id


def make_run(
    registry: Registry,
    command: Sequence[str],
    *,
    name: str,
    gpus: int | None = None,
    timeout_s: float | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Record a Ray run and hand its first attempt over without submitting it (the faults)."""
    run_id = registry.allocate_id()
    spec = RunSpec(
        id=run_id,
        name=name,
        command=tuple(command),
        cwd=str(ROOT),
        created_at=time.time(),
        timeout_s=timeout_s,
        env={**captured_env(), **(env or {})},
        grace_int_s=10.0,
        grace_term_s=5.0,
        resources=Resources(gpus=gpus),
        placement=Placement(backend="ray"),
    )
    registry.create(spec)
    hand_over(registry, run_id, 1, timeout_s=timeout_s)
    return run_id


def hand_over(
    registry: Registry,
    run_id: str,
    attempt: int,
    *,
    timeout_s: float | None = None,
    resume_from: str | None = None,
) -> None:
    """Admit an attempt without local placement: Ray schedules it."""
    now = time.time()
    ticket = Ticket(
        run_id=run_id,
        attempt=attempt,
        kind=ADMITTED,
        queued_at=now,
        updated_at=now,
        admitted_at=now,
        reason="handed to Ray",
        timeout_s=timeout_s,
        resume_from=resume_from,
    )
    Queue(registry.root).write_ticket(ticket)


def python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-u", str(EXAMPLES / script), *args]


def wait_status(registry: Registry, run_id: str, *statuses: Status, timeout: float = RUN_S) -> Any:
    return wait_until(
        lambda: (lambda v: v if v.status in statuses else None)(registry.load(run_id)),
        timeout=timeout,
        interval=0.2,
        message=f"run {run_id} to be {[s.value for s in statuses]}",
    )


def metric_steps(registry: Registry, run_id: str, attempt: int | None = None) -> list[int]:
    """Steps of the run's metric history (of one attempt), as the supervisor recorded them."""
    path = registry.run_dir(run_id) / METRICS
    if not path.exists():
        return []
    points = [decode_record(json.loads(line)) for line in path.read_text().splitlines()]
    return [
        p.step for p in points if isinstance(p, Point) and (attempt is None or p.attempt == attempt)
    ]


def test_a_pytorch_example_completes_on_ray_with_its_metrics_in_the_tui_data(
    ray_backend: Any, home: Path
) -> None:
    from tui.feed.tails import MetricTail

    registry = Registry(home)
    run_id = run_on_ray(registry, python("train_helpers.py", "--steps", "40"), name="ray-ok")
    handle = read_intent(registry, run_id, 1).handle  # type: ignore[union-attr]
    assert handle == ray_jobs.submission_id(run_id, 1, registry.read_spec(run_id).created_at)
    assert ray_backend.submit(registry, run_id, 1) == handle  # idempotent: no second job

    view = wait_status(registry, run_id, Status.COMPLETED, Status.FAILED, Status.LOST)
    assert view.status is Status.COMPLETED, view.reason
    tail = MetricTail(registry.run_dir(run_id) / METRICS)
    tail.poll()
    steps, values = tail.view().metrics["loss"]
    assert steps[-1] == 40 and len(values) == 40
    data, _ = ray_backend.logs(registry, run_id, 0, 1 << 20)
    assert b"done: 40 steps" in data
    events = [json.loads(x) for x in (registry.run_dir(run_id) / "events.jsonl").open()]
    job = next(e for e in events if e["event"] == "ray_job")
    assert job["submission_id"] == handle and job["node"]  # what `show` can tell
    seen = wait_until(
        lambda: (lambda s: s if s.state == ENDED else None)(ray_backend.describe(registry, run_id)),
        timeout=30,
        message="Ray to report the job's end",
    )
    assert seen.reason.startswith("Ray SUCCEEDED") and seen.handle == handle
    with pytest.raises(LifecycleError, match="completed"):  # nothing left to stop
        stop(registry, run_id)
    assert not list((registry.run_dir(run_id) / "requests").glob("*.json"))


def test_a_graceful_stop_checkpoints_a_resume_continues_and_ray_s_own_stop_is_told_apart(
    ray_backend: Any, home: Path
) -> None:
    registry = Registry(home)
    args = ("--steps", "100000", "--step-time", "0.03", "--ckpt-every", "100000")
    run_id = run_on_ray(registry, python("train_helpers.py", *args), name="ray-stop")
    wait_until(
        lambda: len(metric_steps(registry, run_id)) >= 10,
        timeout=RUN_S,
        interval=0.2,
        message="10 steps",
    )
    pause(registry, run_id)  # as locally: the supervisor stops the trainer's tree
    wait_status(registry, run_id, Status.PAUSED, timeout=30)
    cont(registry, run_id)
    wait_status(registry, run_id, Status.RUNNING, timeout=30)
    stop(registry, run_id)  # ours: a request, one SIGINT
    view = wait_status(registry, run_id, Status.STOPPED, Status.COMPLETED, Status.FAILED)
    assert view.status is Status.STOPPED and view.reason.startswith("stopped by user"), view.reason
    ckpt = latest_checkpoint(registry, run_id)
    assert ckpt is not None and Path(ckpt).is_file()  # saved by the script's SIGINT handler
    stopped_at = max(metric_steps(registry, run_id, 1))

    def resumed() -> int | None:  # `backprop resume`, once attempt 1's supervisor has exited
        try:
            return resume(registry, run_id)
        except LifecycleError as exc:
            assert "still alive" in str(exc)
            return None

    assert wait_until(resumed, timeout=60, interval=0.2, message="resume") == 2
    kick(registry)
    wait_until(
        lambda: len(metric_steps(registry, run_id, 2)) >= 5,
        timeout=RUN_S,
        interval=0.2,
        message="5 steps of attempt 2",
    )
    assert metric_steps(registry, run_id, 2)[0] == stopped_at + 1  # the steps went on
    # `ray job stop`: Ray sends SIGINT to the whole job; the run says who stopped it, and the
    # trainer got one SIGINT (a second one would have cut its checkpoint short).
    ray_backend.client(ray_jobs.address_for(None)).stop_job(ray_backend.submit(registry, run_id, 2))
    view = wait_status(registry, run_id, Status.STOPPED, Status.COMPLETED, Status.FAILED)
    assert view.status is Status.STOPPED and "stopped from Ray" in view.reason, view.reason
    assert view.reason.endswith("exit 0")  # it saved and left on its own
    last = max(metric_steps(registry, run_id, 2))
    assert latest_checkpoint(registry, run_id) != ckpt and str(last) in str(
        latest_checkpoint(registry, run_id)
    )


def test_kill_9_of_the_job_s_supervisor_ends_the_attempt_lost_and_retries_it_on_ray(
    ray_backend: Any, home: Path
) -> None:
    registry = Registry(home)
    args = ("--steps", "100000", "--step-time", "0.05")
    run_id = run_on_ray(registry, python("train_helpers.py", *args), name="ray-kill", retries=1)
    view = wait_status(registry, run_id, Status.RUNNING, Status.FAILED, Status.COMPLETED)
    assert view.status is Status.RUNNING, view.reason
    first_key = read_intent(registry, run_id, 1).key  # type: ignore[union-attr]
    os.kill(view.state.supervisor.pid, signal.SIGKILL)

    def retried() -> Any:
        ensure(registry)  # what every command does: a round for leases left behind
        v = registry.load(run_id)
        return v if v.state and v.state.attempt == 2 and v.status is Status.RUNNING else None

    # Attempt 1 ends lost (its trainer died with it: never `running` forever), and its retry
    # goes back through Ray as a new job.
    view = wait_until(retried, timeout=RUN_S, interval=0.5, message="attempt 2 running on Ray")
    events = [json.loads(x) for x in (registry.run_dir(run_id) / "events.jsonl").open()]
    assert [e["attempt"] for e in events if e["event"] == "ray_job"] == [1, 2]
    ticket = Queue(registry.root).read_ticket(run_id)
    assert ticket is not None and ticket.retry.get("after") == "lost", ticket
    second_key = read_intent(registry, run_id, 2).key  # type: ignore[union-attr]
    assert second_key != first_key
    info = ray_backend.job_info(ray_jobs.address_for(None), first_key)
    assert info.status.value == "FAILED" and info.driver_exit_code == -9
    stop(registry, run_id, force=True)
    view = wait_status(registry, run_id, Status.STOPPED, Status.FAILED, Status.COMPLETED)
    assert view.status is Status.STOPPED, view.reason


def test_two_one_gpu_runs_get_different_devices_and_a_time_limit_ends_them_timeboxed(
    ray_backend: Any, home: Path
) -> None:
    registry = Registry(home)
    cmd = python("train_gpu.py", "--steps", "100000000", "--min-seconds", "600")
    # The submitter's own CUDA_VISIBLE_DEVICES must not reach a trainer Ray placed. The limit
    # leaves room for torch's import on a loaded box (the limit runs from the trainer's start).
    env = {"CUDA_VISIBLE_DEVICES": "7"}
    ids = [
        run_on_ray(registry, cmd, name=f"ray-gpu{i}", gpus=1, timeout_s=15, env=env)
        for i in range(2)
    ]

    def device_line(run_id: str) -> dict[str, Any] | None:
        path = registry.run_dir(run_id) / "output.log"
        for line in (path.read_text() if path.exists() else "").splitlines():
            if line.startswith("{") and "cuda_visible_devices" in line:
                return dict(json.loads(line))
        return None

    devices = [
        wait_until(lambda r=r: device_line(r), timeout=RUN_S, message=f"run {r} to start")
        for r in ids
    ]
    assert sorted(d["cuda_visible_devices"] for d in devices) == ["0", "1"]
    for run_id in ids:
        view = wait_status(registry, run_id, Status.TIMEBOXED, Status.FAILED, Status.COMPLETED)
        assert view.status is Status.TIMEBOXED, view.reason


def test_a_run_pending_in_ray_shows_ray_s_reason_and_stops_there(
    ray_backend: Any, home: Path
) -> None:
    registry = Registry(home)
    run_id = run_on_ray(registry, python("train_plain.py"), name="ray-wait", gpus=3)
    seen = ray_backend.describe(registry, run_id)
    assert seen.state == PENDING and "waiting for resources" in seen.reason
    stop(registry, run_id)
    view = registry.load(run_id)
    assert view.status is Status.STOPPED and "before Ray started it" in view.reason


FAULT_DRIVER = r"""
import os, sys
import ray.job_submission  # once, before the forks
from runner import envnames
from runner.backends.ray import RayBackend
from runner.registry import Registry
home, stage, *ids = sys.argv[1:]
os.environ[envnames.FAULT_SUBMIT] = stage
for run_id in ids:
    pid = os.fork()
    if pid == 0:
        RayBackend().submit(Registry(home), run_id, 1)
        os._exit(0)  # never reached: the hook SIGKILLs the submitter
    _, status = os.waitpid(pid, 0)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9):
        sys.exit(f"submitter of {run_id} was not killed: {status}")
"""


def _jobs_of(ray_backend: Any, run_ids: set[str]) -> dict[str, list[str]]:
    """Ray's jobs per run of this registry (by the run's metadata and submission id)."""
    client = ray_backend.client(ray_jobs.address_for(None))
    out: dict[str, list[str]] = {r: [] for r in run_ids}
    for job in client.list_jobs():
        run = (job.metadata or {}).get("backprop_run")
        if run in out and job.submission_id and job.submission_id.startswith("backprop-"):
            out[run].append(job.submission_id)
    return out


@pytest.mark.parametrize("stage", ["before", "after"])
def test_kill_9_of_the_submitter_around_submit_job_never_loses_or_doubles_a_run(
    ray_backend: Any, home: Path, stage: str
) -> None:
    registry = Registry(home)
    # 3 GPUs on a 2-GPU head: the jobs stay pending in Ray, so no worker starts for them.
    ids = [make_run(registry, ["true"], name=f"f{i}", gpus=3) for i in range(20)]
    # Only this registry's jobs count: run ids repeat across registries, the keys do not.
    keys = {r: ray_jobs.submission_id(r, 1, registry.read_spec(r).created_at) for r in ids}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", FAULT_DRIVER, str(home), stage, *ids],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    def ours() -> dict[str, list[str]]:
        jobs = _jobs_of(ray_backend, set(ids))
        return {r: [k for k in found if k == keys[r]] for r, found in jobs.items()}

    for run_id in ids:
        intent = read_intent(registry, run_id, 1)
        assert intent is not None and intent.handle is None and intent.key == keys[run_id]
    before = ours()
    assert all(len(v) == (0 if stage == "before" else 1) for v in before.values()), before
    for run_id in ids:  # the next command (the dispatcher's retry of an unstarted attempt)
        assert ray_backend.submit(registry, run_id, 1) == keys[run_id]
    after = ours()
    assert all(v == [keys[r]] for r, v in after.items()), after  # exactly one job each
    assert sorted(registry.ids()) == sorted(ids)
    for run_id in ids:
        assert read_intent(registry, run_id, 1).handle == keys[run_id]  # type: ignore[union-attr]
        # The backend's part of a stop (what stop() calls for an engine's run): such a run may
        # read `lost` here until remote runs are reconciled with Ray's view.
        ray_backend.cancel(registry, run_id, force=True)
        assert registry.load(run_id).status is Status.STOPPED
    assert envnames.FAULT_SUBMIT not in os.environ
