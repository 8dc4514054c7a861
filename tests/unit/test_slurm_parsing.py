"""The Slurm backend's pure parts: Slurm's answers parsed, its view worded, the job built.

The texts are what Slurm 22.05 printed on the one-node test cluster (``.ci/slurm.sh``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from runner.backends import slurm_job
from runner.backends.base import ENDED, PENDING, RUNNING, UNKNOWN
from runner.backends.intent import Intent
from runner.backends.slurm import (
    EARLY_SIGNAL_S,
    batch_script,
    job_name,
    sbatch_args,
    status_of,
    time_limit_minutes,
    warning_grace_s,
)
from runner.backends.slurm_cli import (
    Job,
    SlurmError,
    last_line,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
)
from runner.model import Resources, RunSpec
from runner.placement import Placement
from runner.registry import Registry

SQUEUE = """\
17|bp-1a2b3c-00042-a1|PENDING||Resources
18|bp-1a2b3c-00043-a1|PENDING|(null)|Priority
4|bp-1a2b3c-00001-a2|RUNNING|vm|None
3|env.sh|COMPLETED|vm|None
2|bp-x|CANCELLED by 0|vm|None
garbage without separators
|no-id|RUNNING|vm|None
"""

SACCT = """\
12|bp-1a2b3c-00007-a1|COMPLETED|vm|0:0
12.batch|batch|COMPLETED|vm|0:0
13|bp-1a2b3c-00007-a1|CANCELLED by 0|None assigned|0:0
14|bp-1a2b3c-00007-a1|NODE_FAIL|vm|1:0
"""


def test_sbatch_parsable_answers_give_the_job_id() -> None:
    assert parse_sbatch("123\n") == "123"
    assert parse_sbatch("77;cluster-b\n") == "77"
    for bad in ("", "Submitted batch job 5\n", "sbatch: error: nope"):
        with pytest.raises(SlurmError, match="not a job id"):
            parse_sbatch(bad)


def test_squeue_lines_become_jobs_and_malformed_ones_are_skipped() -> None:
    jobs = parse_squeue(SQUEUE)
    assert [j.job_id for j in jobs] == ["17", "18", "4", "3", "2"]
    pending, priority, running, done, cancelled = jobs
    assert (pending.state, pending.node, pending.reason) == ("PENDING", "", "Resources")
    assert pending.waiting and not pending.active and not pending.ended
    assert (priority.node, priority.reason) == ("", "Priority")
    assert (running.state, running.node, running.reason) == ("RUNNING", "vm", "")
    assert running.active and not running.ended
    assert done.ended and cancelled.state == "CANCELLED" and cancelled.ended


def test_sacct_skips_job_steps_and_reads_exit_codes() -> None:
    jobs = parse_sacct(SACCT)
    assert [(j.job_id, j.state, j.node) for j in jobs] == [
        ("12", "COMPLETED", "vm"),
        ("13", "CANCELLED", ""),
        ("14", "NODE_FAIL", "vm"),
    ]
    assert jobs[2].reason == "exit code 1:0"


def test_slurm_messages_are_cut_to_their_last_line() -> None:
    err = (
        "sbatch: error: invalid partition specified: nope\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n"
    )
    assert last_line(err) == "Batch job submission failed: Invalid partition name specified"
    assert last_line("\n  \n") == ""


def _intent(handle: str | None) -> Intent:
    return Intent(backend="slurm", attempt=1, key="bp-k-1-a1", at=time.time(), handle=handle)


def test_slurm_view_is_worded_pending_running_ended_or_unknown() -> None:
    waiting = Job("17", "bp-k-1-a1", "PENDING", "", "Resources")
    st = status_of(waiting, _intent("17"), accounting=False)
    assert (st.state, st.reason, st.handle) == (PENDING, "Resources", "17")
    st = status_of(Job("17", "bp-k-1-a1", "RUNNING", "node7"), _intent("17"), accounting=False)
    assert (st.state, st.host) == (RUNNING, "node7")
    st = status_of(
        Job("17", "k", "NODE_FAIL", "node7", "exit code 1:0"), _intent("17"), accounting=True
    )
    assert (st.state, st.reason) == (ENDED, "node_fail (exit code 1:0)")
    # Gone from squeue: without accounting nobody can say how it ended, and we say so.
    st = status_of(None, _intent("17"), accounting=False)
    assert st.state == UNKNOWN and "keeps no accounting" in st.reason and st.handle == "17"
    st = status_of(None, _intent("17"), accounting=True)
    assert st.state == ENDED and "no record of job 17" in st.reason
    assert status_of(None, _intent(None), accounting=False).state == UNKNOWN


def test_time_limit_leaves_room_for_our_own_timer_and_the_stop_grace() -> None:
    grace = warning_grace_s(30.0, 10.0)
    assert grace == 55
    minutes = time_limit_minutes(120.0, grace)
    # Slurm's warning (up to a minute early) comes after our own limit plus the stop sequence.
    assert minutes * 60 - grace - EARLY_SIGNAL_S >= 120.0 + 30.0 + 10.0
    assert time_limit_minutes(0.0, 1) == 2
    assert time_limit_minutes(3600.0, grace) == 63


def test_sbatch_arguments_carry_the_run_and_its_placement(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    run_id = reg.allocate_id()
    where = Placement(
        backend="slurm", partition="gpu", account="lab", extra_args=("--qos=high", "--time=5")
    )
    spec = RunSpec(
        id=run_id,
        name="r",
        command=("true",),
        cwd="/",
        created_at=time.time(),
        placement=where,
        resources=Resources(gpus=2),
    )
    reg.create(spec)
    args = sbatch_args(reg, run_id, 3, 600.0)
    name = job_name(reg, run_id, 3)
    assert name.startswith("bp-") and name.endswith(f"-{run_id}-a3")
    assert job_name(Registry(tmp_path / "other"), run_id, 3) != name  # registries kept apart
    folder = reg.run_dir(run_id)
    assert args[:6] == [
        f"--job-name={name}",
        f"--chdir={folder}",
        f"--output={folder}/slurm-3.out",
        "--open-mode=append",
        "--requeue",
        "--signal=B:USR1@55",
    ]
    assert "--gres=gpu:2" in args and "--time=5" in args
    # The user's own arguments come last, so they win (here: their --time over ours).
    assert args[-4:] == ["--partition=gpu", "--account=lab", "--qos=high", "--time=5"]
    assert args.index("--time=5") > args.index(f"--time={time_limit_minutes(600.0, 55)}")
    script = batch_script(reg, run_id, 3)
    assert script.startswith("#!/bin/sh\n")
    assert f"--run {run_id} --attempt 3" in script and "\nexec " in script


def test_the_jobs_allocation_wins_over_the_submitters_environment() -> None:
    spec_env = {"CUDA_VISIBLE_DEVICES": "7", "SLURM_JOB_ID": "1", "SLURM_MEM": "9", "HOME": "/h"}
    job_env = {"CUDA_VISIBLE_DEVICES": "1", "SLURM_JOB_ID": "42", "PATH": "/bin"}
    merged = slurm_job.trainer_env({**job_env, **spec_env}, spec_env, job_env)
    assert merged["CUDA_VISIBLE_DEVICES"] == "1" and merged["SLURM_JOB_ID"] == "42"
    assert "SLURM_MEM" not in merged and merged["HOME"] == "/h"
    no_gpu = slurm_job.trainer_env(dict(spec_env), spec_env, {"SLURM_JOB_ID": "43"})
    assert "CUDA_VISIBLE_DEVICES" not in no_gpu


def test_usr1_inside_a_job_is_slurms_warning_unless_a_request_waits(tmp_path: Path) -> None:
    requests = tmp_path / "requests"
    requests.mkdir()
    job = {"SLURM_JOB_ID": "5", "SLURM_RESTART_COUNT": "2", "SLURMD_NODENAME": "n1"}
    assert slurm_job.applies("slurm", job)
    assert not slurm_job.applies("local", job)  # a local run started inside an allocation
    assert not slurm_job.applies("slurm", {})
    assert slurm_job.usr1_is_time_warning(requests)
    (requests / "0001-ab.json").write_text('{"action": "stop"}')
    assert not slurm_job.usr1_is_time_warning(requests)  # a nudge: its request waits
    facts = slurm_job.job_facts(job)
    assert (facts["job_id"], facts["node"], facts["restart_count"]) == ("5", "n1", 2)


def test_backend_flags_override_the_backend_section_key_by_key() -> None:
    from runner.backends.settings import placement_from
    from runner.config import Config, ConfigError

    assert placement_from(Config()) == Placement()
    file = Config(
        raw={
            "backend": {
                "name": "slurm",
                "partition": "gpu",
                "account": "lab",
                "slurm_args": ["--qos=high"],
                "ray_address": "",
            }
        }
    )
    assert placement_from(file) == Placement("slurm", "gpu", "lab", ("--qos=high",))
    assert placement_from(file, partition="big", slurm_args=["--exclusive"]) == Placement(
        "slurm", "big", "lab", ("--exclusive",)
    )
    assert placement_from(file, backend="local") == Placement()  # the file's Slurm keys stay out
    ray = placement_from(file, backend="ray", ray_address="http://127.0.0.1:8265")
    assert (ray.backend, ray.address, ray.partition) == ("ray", "http://127.0.0.1:8265", None)
    for kwargs, words in (
        ({"backend": "local", "partition": "gpu"}, "need --backend slurm"),
        ({"backend": "pbs"}, "unknown backend 'pbs'"),
        ({"backend": "slurm", "ray_address": "http://x"}, "needs --backend ray"),
        ({"backend": "slurm", "slurm_args": ["qos"]}, "one option"),
    ):
        with pytest.raises(ConfigError, match=words):
            placement_from(Config(), **kwargs)
    with pytest.raises(ConfigError, match="unknown keys: queue"):
        placement_from(Config(raw={"backend": {"queue": "x"}}))
    with pytest.raises(ConfigError, match="list of strings"):
        placement_from(Config(raw={"backend": {"name": "slurm", "slurm_args": [1]}}))


def test_a_run_request_names_its_backend_or_leaves_it_to_the_configuration() -> None:
    from runner.request import RequestError, parse_run_request

    req = parse_run_request(
        "train.py", [], backend="Slurm", partition=" gpu ", slurm_args=["--qos=high"]
    )
    assert (req.backend, req.partition, req.slurm_args) == ("slurm", "gpu", ("--qos=high",))
    assert parse_run_request("train.py", []).backend is None  # [backend] decides
    with pytest.raises(RequestError, match="backend: unknown 'pbs'"):
        parse_run_request("train.py", [], backend="pbs")


def test_a_refusal_ends_the_run_and_an_absent_controller_is_tried_again() -> None:
    refused = SlurmError("sbatch: Batch job submission failed: Invalid partition name specified")
    assert not refused.transient and isinstance(refused, OSError)
    for words in (
        "sbatch: Batch job submission failed: Unable to contact slurm controller (connect failure)",
        "sbatch did not answer in 20s",
        "sbatch: Slurm temporarily unable to accept job, sleeping and retrying",
    ):
        assert SlurmError(words).transient, words
    assert not SlurmError("sbatch not found: Slurm's client tools are not installed").transient


def test_backprop_init_documents_backend_and_its_defaults_read_back_as_local() -> None:
    import tomllib

    from runner.backends.settings import placement_from
    from runner.config import Config, default_config_text

    raw = tomllib.loads(default_config_text())
    assert set(raw["backend"]) == {"name", "partition", "account", "slurm_args", "ray_address"}
    assert placement_from(Config(raw=raw)) == Placement()
