"""The Ray backend's pure half: submission ids, the job's command and env, Ray's states."""

from __future__ import annotations

import shlex

import pytest

from runner import envnames
from runner.backends import ray_jobs
from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN


def test_the_submission_id_is_deterministic_per_attempt_and_registry() -> None:
    a = ray_jobs.submission_id("000007", 1, 1700000000.25)
    assert a == ray_jobs.submission_id("000007", 1, 1700000000.25)  # every host, every retry
    assert a != ray_jobs.submission_id("000007", 2, 1700000000.25)  # a new attempt: a new job
    assert a != ray_jobs.submission_id("000007", 1, 1700000000.5)  # another registry's 000007
    assert a.startswith("backprop-000007-a1-")
    assert all(c.isalnum() or c in "-_" for c in ray_jobs.submission_id("a/b c", 1, 0.0))


def test_the_address_is_the_run_s_then_ray_s_variable_then_local() -> None:
    env = {"RAY_ADDRESS": "http://head:8265"}
    assert ray_jobs.address_for("http://x:1", env) == "http://x:1"
    assert ray_jobs.address_for(None, env) == "http://head:8265"
    assert ray_jobs.address_for(None, {}) == ray_jobs.DEFAULT_ADDRESS


def test_the_entrypoint_execs_the_supervisor_with_quoted_paths() -> None:
    cmd = ray_jobs.entrypoint("/shared/bp home", "000003", 2, python="/opt/py/bin/python")
    assert cmd.startswith("exec ")  # the supervisor is the process Ray signals and watches
    argv = shlex.split(cmd)[1:]
    assert argv == [
        "/opt/py/bin/python",
        "-m",
        "runner.supervisor.main",
        "--home",
        "/shared/bp home",
        "--run",
        "000003",
        "--attempt",
        "2",
    ]


def test_ray_stops_with_sigint_and_waits_for_our_whole_escalation() -> None:
    env = ray_jobs.runtime_env("/r", 30.0, 10.5)["env_vars"]
    assert env[ray_jobs.STOP_SIGNAL] == "SIGINT"
    assert int(env[ray_jobs.STOP_WAIT]) >= 30 + 10.5 + ray_jobs.STOP_MARGIN_S - 1
    assert env[envnames.HOME] == "/r"
    assert env["PYTHONPATH"].split(":")[0] == ray_jobs.package_root()


@pytest.mark.parametrize(
    ("ray_status", "ours"),
    [
        ("PENDING", PENDING),
        ("RUNNING", RUNNING),
        ("SUCCEEDED", ENDED),
        ("FAILED", ENDED),
        ("STOPPED", ENDED),
        ("SOMETHING_NEW", UNKNOWN),
    ],
)
def test_ray_states_map_to_ours(ray_status: str, ours: str) -> None:
    seen = ray_jobs.status_of(ray_status, "why", handle="k")
    assert seen.state == ours and seen.reason == f"Ray {ray_status}: why" and seen.handle == "k"


def test_a_failure_keeps_its_first_line_sanitised_and_the_exit_code() -> None:
    message = "Job entrypoint command failed with exit code -9, last logs:\n" + "x" * 20000
    seen = ray_jobs.status_of("FAILED", message, handle="k", exit_code=-9)
    assert seen.reason == "Ray FAILED: Job entrypoint command failed with exit code -9, last logs"
    seen = ray_jobs.status_of("FAILED", "boom \x1b[31mred\x1b[0m", handle="k", exit_code=2)
    assert seen.reason == "Ray FAILED: boom red (exit code 2)"
    assert ray_jobs.status_of("PENDING", None, handle="k").reason == "Ray PENDING"


def test_the_node_comes_from_the_driver_agent_address() -> None:
    seen = ray_jobs.status_of("RUNNING", "", handle="k", agent_address="http://10.0.0.5:52365")
    assert seen.host == "10.0.0.5"
    assert ray_jobs.host_of(None) == "" and ray_jobs.host_of("::bad") == ""


def test_jobs_api_errors_are_told_apart() -> None:
    missing = RuntimeError("Request failed with status code 404: Job x does not exist.")
    dup = RuntimeError(
        "Request failed with status code 500: ...\nValueError: Job with "
        "submission_id x already exists. Please use a different submission_id."
    )
    assert ray_jobs.is_missing(missing) and not ray_jobs.is_duplicate(missing)
    assert ray_jobs.is_duplicate(dup) and not ray_jobs.is_missing(dup)


def test_inside_an_engine_s_job_the_job_s_devices_and_cluster_win() -> None:
    from runner.backends.job_env import keep_job_placement

    job = {"CUDA_VISIBLE_DEVICES": "1", "RAY_ADDRESS": "10.0.0.1:6379", "HOME": "/root"}
    built = {"CUDA_VISIBLE_DEVICES": "7", "RAY_ADDRESS": "http://127.0.0.1:8265", "HOME": "/u"}
    out = keep_job_placement(dict(built), job, "ray")
    assert out == {"CUDA_VISIBLE_DEVICES": "1", "RAY_ADDRESS": "10.0.0.1:6379", "HOME": "/u"}
    assert keep_job_placement(dict(built), job, "local") == built  # the governor placed it
    # Slurm keeps its devices; Ray's address means nothing there.
    assert keep_job_placement(dict(built), job, "slurm")["RAY_ADDRESS"] == built["RAY_ADDRESS"]
    # No devices given by the engine (a CPU job): the submitter's choice stands.
    assert keep_job_placement(dict(built), {}, "ray") == built


def test_only_ray_s_sigint_counts_as_a_stop_of_the_whole_job() -> None:
    import signal

    from runner.backends.job_env import RAY_STOP_REASON, engine_stop

    assert engine_stop("ray", signal.SIGINT) == RAY_STOP_REASON
    assert engine_stop("ray", signal.SIGTERM) is None
    assert engine_stop("local", signal.SIGINT) is None


def test_the_ray_job_s_facts_come_from_its_entrypoint_env() -> None:
    from runner.backends.job_env import ray_job_facts

    meta = '{"runtime_env": {}, "metadata": {"job_submission_id": "backprop-000001-a1-x"}}'
    env = {"RAY_JOB_CONFIG_JSON_ENV_VAR": meta, "CUDA_VISIBLE_DEVICES": "1"}
    facts = ray_job_facts(env)
    assert facts is not None and facts["submission_id"] == "backprop-000001-a1-x"
    assert facts["cuda_visible_devices"] == "1" and facts["node"]
    assert ray_job_facts({}) is None  # not inside a Ray job
    assert ray_job_facts({"RAY_JOB_CONFIG_JSON_ENV_VAR": "{bad"})["submission_id"] == ""  # type: ignore[index]


def test_a_jobs_api_that_does_not_answer_is_said_in_one_line() -> None:
    from runner.backends.ray import RayBackend, _one_line

    ok, why = RayBackend().reachable("http://127.0.0.1:1")
    assert not ok and why.startswith("Ray Jobs API at http://127.0.0.1:1 does not answer")
    ray_error = RuntimeError(
        "Request failed with status code 500: Traceback (most recent call last):\n"
        '  File "job_head.py", line 419\nValueError: Job with submission_id x already exists.'
    )
    assert _one_line(ray_error) == (
        "Request failed with status code 500: ValueError: Job with submission_id x already exists."
    )
