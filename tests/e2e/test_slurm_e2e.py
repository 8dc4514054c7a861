# over 400 lines: one engine's whole acceptance (runs, stops, faults), sharing one cluster fixture
"""The Slurm backend on a real one-node Slurm cluster (``.ci/slurm.sh up``: two fake GPUs).

Each attempt's supervisor is a Slurm job's batch step; the run folder (here on local disk,
standing in for the cluster's shared storage) is the record. Skipped, with the reason, where
no Slurm cluster answers. Runs are the repository's PyTorch examples, kept to a few seconds.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from runner import envnames, retry
from runner.backends import slurm_cli
from runner.backends.base import ENDED, PENDING, RUNNING
from runner.backends.intent import read_intent
from runner.backends.slurm import SlurmBackend, job_name
from runner.control import readout, reruns, submission
from runner.metrics.history import read_history
from runner.model import Resources, Status
from runner.placement import Placement
from runner.registry import Registry
from runner.tickets import ADMITTED, Queue
from tests.conftest import ROOT, Cli, wait_until

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

EXAMPLES = ROOT / "examples"
CTLD_PID = Path("/run/backprop-slurm/slurmctld.pid")


def _cluster_problem() -> str | None:
    """Why the Slurm tests cannot run here (``None``: a cluster answers with an idle node)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "Slurm's client tools are not installed (.ci/slurm.sh up installs a test cluster)"
    try:
        out = slurm_cli.run(["sinfo", "--noheader", "--format=%t"], timeout_s=10)
    except slurm_cli.SlurmError as exc:
        return f"no Slurm cluster answers: {exc}"
    if not any(s.strip() in ("idle", "mix", "alloc") for s in out.splitlines()):
        return f"no usable Slurm node (sinfo says {out.strip()!r})"
    return None


@pytest.fixture(scope="module")
def cluster() -> SlurmBackend:
    problem = _cluster_problem()
    if problem:
        pytest.skip(problem)
    return SlurmBackend()


@pytest.fixture
def reg(home: Path, cluster: SlurmBackend) -> Iterator[Registry]:
    registry = Registry(home)
    registry.ensure()
    yield registry
    # Nothing of this test may stay in the cluster's queue.
    for run_dir in registry.runs_dir.glob("*"):
        for intent_file in run_dir.glob("submit-*.json"):
            intent = read_intent(registry, run_dir.name, int(intent_file.stem.split("-")[1]))
            if intent is None:
                continue
            for job in slurm_cli.squeue(name=intent.key):
                if not job.ended:
                    subprocess.run(["scancel", job.job_id], check=False)


def submit(
    reg: Registry,
    args: Sequence[str],
    *,
    gpus: int | None = None,
    timeout_s: float | None = None,
    extra: Sequence[str] = (),
    name: str = "t",
) -> str:
    """Record a Slurm run (spec + queue) the way ``backprop run --backend slurm`` does."""
    spec = submission.submit(
        reg,
        [sys.executable, "-u", *args],
        name=name,
        options=submission.SubmitOptions(
            cwd=str(ROOT),
            timeout_s=timeout_s,
            resources=Resources(gpus=gpus),
            # One thread: the box is shared, and torch's threads fighting slow every step.
            env={**submission.captured_env(), "OMP_NUM_THREADS": "1"},
            placement=Placement(backend="slurm", extra_args=tuple(extra)),
        ),
    )
    return spec.id


def admit(reg: Registry, run_id: str) -> int:
    """The dispatcher's hand-off: a run whose engine queues itself is admitted as it is."""
    q = Queue(reg.root)
    with q.locked():
        t = q.read_ticket(run_id)
        assert t is not None
        q.write_ticket(replace(t, kind=ADMITTED, admitted_at=time.time(), reason="to Slurm"))
        for entry in q.find(run_id):
            q.remove(entry)
    return t.attempt


def start(be: SlurmBackend, reg: Registry, run_id: str) -> str:
    return be.submit(reg, run_id, admit(reg, run_id))


def wait_status(reg: Registry, run_id: str, *statuses: Status, timeout: float = 40) -> Status:
    st: Status = wait_until(
        lambda: (lambda s: s if s in statuses else None)(reg.load(run_id).status),
        timeout=timeout,
        interval=0.1,
        message=f"run {run_id} to be {[s.value for s in statuses]}",
    )
    return st


def jobs_named(key: str) -> list[slurm_cli.Job]:
    return slurm_cli.squeue(name=key)


def test_example_run_completes_as_a_slurm_job_with_its_metrics(
    cluster: SlurmBackend, reg: Registry
) -> None:
    run_id = submit(reg, [str(EXAMPLES / "train_plain.py"), "--steps", "60", "--log-every", "10"])
    t0 = time.monotonic()
    job_id = start(cluster, reg, run_id)
    sbatch_s = time.monotonic() - t0
    assert job_id.isdigit() and cluster.submit(reg, run_id, 1) == job_id  # idempotent
    wait_status(reg, run_id, Status.COMPLETED, timeout=60)
    view = reg.load(run_id)
    assert view.reason == "exit 0" or view.reason.startswith("exit 0"), view.reason
    steps, losses = read_history(reg.run_dir(run_id)).series("loss")
    assert steps[-1] == 60 and len(losses) == 6 and losses[-1] < losses[0]
    # The supervisor records the end, then exits: the job ends a moment after the run.
    st = wait_until(
        lambda: (lambda s: s if s.state == ENDED else None)(cluster.describe(reg, run_id)),
        message="Slurm to end the job",
    )
    assert (st.handle, st.reason) == (job_id, "completed")
    assert (reg.run_dir(run_id) / "slurm-1.out").exists()
    print(f"sbatch (submit incl. intent record) took {sbatch_s * 1000:.0f} ms")


def test_graceful_stop_saves_and_resume_continues_the_steps(
    cluster: SlurmBackend, reg: Registry
) -> None:
    run_id = submit(
        reg,
        [str(EXAMPLES / "train_helpers.py"), "--steps", "300", "--step-time", "0.01"],
        name="stopme",
    )
    start(cluster, reg, run_id)
    folder = reg.run_dir(run_id)
    wait_until(
        lambda: read_history(folder).points and read_history(folder).points[-1].step >= 30,
        timeout=60,
        message="30 steps",
    )
    assert "stop requested" in cluster.cancel(reg, run_id, force=False)
    wait_status(reg, run_id, Status.STOPPED)
    ckpts = sorted((folder / "checkpoints").glob("*.pt"))
    assert ckpts, "the SIGINT handler saved no checkpoint"
    stopped_at = read_history(folder).points[-1].step
    assert stopped_at < 300
    # Resume waits for the supervisor to be gone (it exits right after its last record).
    wait_until(lambda: not reg.supervisor_locked(run_id), message="job 1's supervisor gone")
    assert reruns.resume(reg, run_id) == 2
    start(cluster, reg, run_id)
    wait_status(reg, run_id, Status.COMPLETED, timeout=60)
    history = read_history(folder)
    second = [p.step for p in history.points if p.attempt == 2]
    assert second and second[0] > stopped_at - 1 and second[-1] == 300
    assert "resumed from step" in (folder / "output.log").read_text()
    assert len({read_intent(reg, run_id, a).handle for a in (1, 2)}) == 2  # type: ignore[union-attr]


def test_time_limit_and_slurms_warning_both_end_timeboxed(
    cluster: SlurmBackend, reg: Registry
) -> None:
    long_run = [str(EXAMPLES / "train_plain.py"), "--steps", "100000", "--step-time", "0.01"]
    own = submit(reg, long_run, timeout_s=4.0, name="ownlimit")
    warned = submit(reg, long_run, name="warned")
    start(cluster, reg, own)
    job = start(cluster, reg, warned)
    wait_status(reg, warned, Status.RUNNING)
    # Slurm's time-limit warning, delivered as Slurm delivers it: SIGUSR1 to the batch step.
    slurm_cli.scancel(job, signal="USR1", batch=True)
    wait_status(reg, warned, Status.TIMEBOXED)
    assert "Slurm" in reg.load(warned).reason
    wait_status(reg, own, Status.TIMEBOXED, timeout=60)


def test_two_one_gpu_runs_get_different_devices_and_a_third_waits_for_one(
    cluster: SlurmBackend, reg: Registry
) -> None:
    show = (
        "import os, time; print('CVD=' + os.environ.get('CUDA_VISIBLE_DEVICES', '-'), flush=True);"
        " time.sleep(120)"
    )
    a, b, c = (submit(reg, ["-c", show], gpus=1, name=n) for n in ("ga", "gb", "gc"))
    for run_id in (a, b):
        start(cluster, reg, run_id)
    for run_id in (a, b):
        wait_status(reg, run_id, Status.RUNNING)
    start(cluster, reg, c)
    st = wait_until(
        lambda: (lambda s: s if s.state == PENDING and s.reason != "pending" else None)(
            cluster.describe(reg, c)
        ),
        message="the third run pending with Slurm's reason",
    )
    assert st.reason in ("Resources", "Priority")  # Slurm's own reason: both GPUs are taken
    assert "stopped run" in cluster.cancel(reg, c, force=False)
    assert reg.load(c).status is Status.STOPPED and "pending in Slurm" in reg.load(c).reason
    seen = set()
    for run_id in (a, b):
        out: str = wait_until(
            partial(_output_once, reg.run_dir(run_id) / "output.log", "CVD="),
            message="the device it was given",
        )
        seen.add(out.split("CVD=")[1].split()[0])
        cluster.cancel(reg, run_id, force=True)
    assert seen == {"0", "1"}
    for run_id in (a, b):
        wait_status(reg, run_id, Status.STOPPED)


def test_sigterm_from_slurm_is_a_preemption_and_is_retried(cluster: SlurmBackend, cli: Cli) -> None:
    (cli.cwd / "backprop.toml").write_text('[retry]\nbackoff = "1s"\n')
    out = cli.json(
        "run",
        "--backend",
        "slurm",
        "--retries",
        "1",
        "--env",
        "OMP_NUM_THREADS=1",
        str(EXAMPLES / "train_helpers.py"),
        "--steps",
        "400",
        "--step-time",
        "0.02",
    )
    run_id = out["id"]
    reg = Registry(cli.home)
    folder = reg.run_dir(run_id)
    wait_until(lambda: read_history(folder).points, timeout=60, message="a first metric")
    job = read_intent(reg, run_id, 1).handle  # type: ignore[union-attr]
    assert job
    # What a preemption (or an administrator's scancel) does: SIGTERM to the job's processes.
    slurm_cli.scancel(job)
    shown = cli.wait_status(run_id, "completed", timeout=90)
    assert shown["attempt"] == 2
    ends = [e for e in readout.events(reg, run_id) if e["event"] == "exited"]
    first = ends[0]
    assert first["status"] == "stopped" and first["attempt"] == 1
    assert first["reason"].startswith(f"supervisor received SIGTERM (Slurm job {job}")
    assert retry.cause_of(Status.STOPPED, first["reason"]) == "preempted"
    assert "resumed from step" in (folder / "output.log").read_text()  # its SIGTERM checkpoint
    facts = [e for e in readout.events(reg, run_id) if e["event"] == "slurm_job"]
    assert [f["job_id"] == job for f in facts] == [True, False]
    assert facts[0]["restart_count"] == 0


@pytest.mark.parametrize("point", ["before", "after"])
def test_kill_9_of_the_submitter_around_sbatch_leaves_one_job_per_run(
    cluster: SlurmBackend, reg: Registry, point: str
) -> None:
    reps = 20
    # Held jobs (--hold) never start: the test counts jobs, not runs of them.
    runs = [submit(reg, ["-c", "pass"], extra=["--hold"], name=f"k{i}") for i in range(reps)]
    code = (
        "import sys; from runner.registry import Registry; "
        "from runner.backends.slurm import SlurmBackend; "
        "SlurmBackend().submit(Registry(sys.argv[1]), sys.argv[2], 1)"
    )
    env = {**os.environ, envnames.FAULT_SUBMIT: point, "PYTHONPATH": str(ROOT)}
    for run_id in runs:
        admit(reg, run_id)
        proc = subprocess.run(
            [sys.executable, "-c", code, str(reg.root), run_id], env=env, timeout=60, check=False
        )
        assert proc.returncode == -signal.SIGKILL
        intent = read_intent(reg, run_id, 1)
        assert intent is not None and intent.handle is None  # killed before the id was kept
    # The next start (the dispatcher's) reconciles each intent by its job name.
    for run_id in runs:
        cluster.submit(reg, run_id, 1)
        cluster.submit(reg, run_id, 1)  # and again: still the same job
    for run_id in runs:
        key = job_name(reg, run_id, 1)
        jobs = jobs_named(key)
        assert len(jobs) == 1, (run_id, jobs)
        assert read_intent(reg, run_id, 1).handle == jobs[0].job_id  # type: ignore[union-attr]
        subprocess.run(["scancel", jobs[0].job_id], check=False)


def test_kill_9_of_the_jobs_supervisor_ends_truthfully_and_is_retried(
    cluster: SlurmBackend, cli: Cli
) -> None:
    (cli.cwd / "backprop.toml").write_text('[retry]\nbackoff = "1s"\n')
    out = cli.json(
        "run",
        "--backend",
        "slurm",
        "--retries",
        "1",
        "--env",
        "OMP_NUM_THREADS=1",
        str(EXAMPLES / "train_plain.py"),
        "--steps",
        "40",
        "--step-time",
        "0.1",
    )
    run_id = out["id"]
    reg = Registry(cli.home)
    cli.wait_status(run_id, "running", timeout=60)
    state = reg.read_state(run_id)
    assert state is not None and state.trainer is not None and state.attempt == 1
    os.kill(state.supervisor.pid, signal.SIGKILL)
    # Its batch step is gone, so Slurm ends the job; its trainer dies with it; the run is
    # lost, and the retry policy (through the dispatcher) gives it a new attempt: a new job.
    wait_until(lambda: not _alive(state.trainer.pid), message="the trainer ended too")  # type: ignore[union-attr]
    shown = cli.wait_status(run_id, "completed", timeout=90)
    assert shown["attempt"] == 2
    events = readout.events(reg, run_id)
    assert [e["attempt"] for e in events if e["event"] == "slurm_job"] == [1, 2]
    jobs = {read_intent(reg, run_id, a).handle for a in (1, 2)}  # type: ignore[union-attr]
    assert len(jobs) == 2 and None not in jobs


@pytest.mark.skipif(os.geteuid() != 0, reason="restarting slurmctld needs root")
def test_kill_9_of_slurmctld_while_a_run_runs(cluster: SlurmBackend, reg: Registry) -> None:
    run_id = submit(
        reg, [str(EXAMPLES / "train_plain.py"), "--steps", "100000", "--step-time", "0.01"]
    )
    start(cluster, reg, run_id)
    wait_status(reg, run_id, Status.RUNNING)
    # The controller saves its job state a few seconds after each change (FIELD_NOTES): wait
    # until it saved this job at all, then crash it.
    saved = Path(_ctld_config("StateSaveLocation")) / "job_state"
    key = job_name(reg, run_id, 1).encode()
    wait_until(lambda: key in saved.read_bytes(), timeout=60, message="the job's state saved")
    pid = int(CTLD_PID.read_text())
    os.kill(pid, signal.SIGKILL)
    try:
        wait_until(lambda: not _alive(pid), message="slurmctld gone")
        slurm_cli.forget()  # describe may answer from a listing of the last seconds: ask now
        # Slurm's tools retry an absent controller for about 9 s: ask both at once.
        with ThreadPoolExecutor(2) as pool:
            view = pool.submit(cluster.describe, reg, run_id)
            ok, why = cluster.reachable()
            st = view.result()
        assert st.state == "unknown" and "does not answer" in st.reason
        assert not ok and "Unable to contact slurm controller" in why
        # The run folder, not the controller, is the record: the run goes on meanwhile.
        assert reg.load(run_id).status is Status.RUNNING
    finally:
        # Not in the test's environment: teardown ends whatever carries this BACKPROP_HOME.
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
        subprocess.run(["slurmctld"], check=True, timeout=30, env=clean, start_new_session=True)
        wait_until(lambda: cluster.reachable()[0], timeout=30, message="slurmctld back")
    # Either the restarted controller recovered the running job (then the run is stopped as
    # usual), or it had saved the job as pending only and killed what ran on the node (then
    # the run's supervisor died without a record: lost). Never "running" for a dead job.
    asked: list[bool] = []

    def ended() -> Status | None:
        status = reg.load(run_id).status
        if status in (Status.LOST, Status.STOPPED):
            return status
        if (
            status is Status.RUNNING
            and not asked
            and cluster.describe(reg, run_id).state == RUNNING
        ):
            asked.append(bool(cluster.cancel(reg, run_id, force=False)))
        return None

    end = wait_until(ended, timeout=60, interval=0.5, message="the run to end truthfully")
    if end is Status.LOST:  # Slurm requeues the job; its copy finds the attempt taken, exits
        assert "supervisor gone" in reg.load(run_id).reason
    else:
        wait_until(lambda: cluster.describe(reg, run_id).state == ENDED, message="job ended")
    wait_until(lambda: _cluster_problem() is None or _resume_node(), message="node usable")


def _resume_node() -> bool:
    """Give back a node the crash drained (as ``.ci/slurm.sh up`` does)."""
    subprocess.run(
        ["scontrol", "update", f"nodename={os.uname()[1]}", "state=resume"],
        check=False,
        capture_output=True,
    )
    return False


def _output_once(log: Path, words: str) -> str:
    """The run's output once it holds ``words`` (else empty)."""
    text = log.read_text()
    return text if words in text else ""


def _ctld_config(key: str) -> str:
    for line in slurm_cli.run(["scontrol", "show", "config"]).splitlines():
        name, _, value = line.partition("=")
        if name.strip() == key:
            return value.strip()
    raise AssertionError(f"scontrol show config has no {key}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_backprop_run_backend_flags_place_the_run_on_slurm(cluster: SlurmBackend, cli: Cli) -> None:
    out = cli.json(
        "run",
        "--backend",
        "slurm",
        "--partition",
        "debug",
        "--slurm-arg=--hold",  # never starts: this test is about the record and the stop
        "--name",
        "placed",
        sys.executable,
        "-c",
        "import time; time.sleep(60)",
    )
    reg = Registry(cli.home)
    where = reg.read_spec(out["id"]).placement
    assert (where.backend, where.partition, where.extra_args) == ("slurm", "debug", ("--hold",))
    # The dispatcher hands it to Slurm; it shows as queued with Slurm's own pending reason.
    shown = wait_until(
        lambda: (lambda d: d if "JobHeldUser" in d["reason"] else None)(cli.show(out["id"])),
        timeout=40,
        interval=0.5,
        message="queued with Slurm's reason",
    )
    assert shown["status"] == "queued"
    intent = read_intent(reg, out["id"], 1)
    assert intent is not None and intent.handle and len(jobs_named(intent.key)) == 1
    assert "cancelled Slurm job" in cli("stop", out["id"]).stdout
    shown = cli.wait_status(out["id"], "stopped")
    assert "pending in Slurm" in shown["reason"]
    for bad, words in (
        (["--partition", "gpu"], "need --backend slurm"),
        (["--backend", "slurm", "--slurm-arg", "qos"], "one option like --qos=high"),
        (["--backend", "slurm", "--ray-address", "http://x"], "needs --backend ray"),
    ):
        proc = cli("run", *bad, "true", check=False)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and words in proc.stderr


def test_a_job_slurm_refuses_ends_the_run_failed_with_slurms_words(
    cluster: SlurmBackend, reg: Registry
) -> None:
    run_id = submit(reg, ["-c", "pass"], extra=["--partition=no-such-partition"])
    with pytest.raises(slurm_cli.SlurmError, match="Invalid partition"):
        start(cluster, reg, run_id)
    view = reg.load(run_id)
    assert view.status is Status.FAILED and "Slurm refused the job" in view.reason
    assert cluster.submit(reg, run_id, 1) == ""  # never submitted again
