"""Remote runs in the feed's rows and the tree's filter (files written by hand)."""

from __future__ import annotations

from pathlib import Path

from governor.probes import GpuSnapshot
from runner.backends.base import BackendStatus
from runner.backends.where import ENGINE, record_engine_view
from runner.config import Config
from runner.model import Status
from tests import remote_runs
from tui.cli.backends import configured_backends, reachability, render_reachability
from tui.feed.producer import Producer
from tui.feed.snapshot import RunRow
from tui.widgets.tree_details import engine_text, where_text
from tui.widgets.tree_lines import DETAIL_FIELDS, detail_fields, matches


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _producer(root: Path, clock: Clock) -> Producer:
    return Producer(
        remote_runs.build(root),
        lambda _snap: None,
        gpu_source=lambda: GpuSnapshot(error="none"),
        host_source=lambda: None,
        min_emit_s=0,
        monotonic=clock,
    )


def test_rows_say_where_remote_runs_are_and_leave_local_rows_alone(tmp_path: Path) -> None:
    clock = Clock()
    rows = {r.id: r for r in _producer(tmp_path, clock).scan().runs}
    local, big, wait, ray = (rows[i] for i in ("000001", "000002", "000003", "000004"))
    assert (local.backend, local.host, local.job_id, local.engine) == ("local", "", "", "")
    assert not local.engine_disagrees
    assert (big.backend, big.host, big.job_id) == ("slurm", "node07", "4242")
    assert (big.status, big.engine, big.engine_disagrees) == (
        Status.RUNNING,
        "ended (COMPLETED)",
        True,
    )
    assert (wait.status, wait.reason, wait.engine_disagrees) == (
        Status.QUEUED,
        "slurm: Resources",
        False,
    )
    assert (ray.backend, ray.job_id, ray.engine, ray.engine_disagrees) == (
        "ray",
        "backprop-000004-1",
        "running",
        False,
    )


def test_a_new_word_from_the_engine_reaches_the_row_at_once(tmp_path: Path) -> None:
    clock = Clock()
    producer = _producer(tmp_path, clock)
    producer.scan()
    registry = producer.registry

    def tell(run_id: str, status: BackendStatus) -> dict[str, RunRow]:
        record_engine_view(registry, run_id, status)
        clock.t += 0.1  # well within the 2 s a summary.json change waits for a re-read
        producer.handle_changes([str(registry.run_dir(run_id) / ENGINE)])
        snap = producer.tick(force=True)
        assert snap is not None
        return {r.id: r for r in snap.runs}

    rows = tell("000002", BackendStatus("running", "", "4242", "node07"))
    assert (rows["000002"].engine, rows["000002"].engine_disagrees) == ("running", False)
    rows = tell("000002", BackendStatus("unknown", "no accounting", "4242"))
    assert rows["000002"].engine == "unknown (no accounting)"
    assert rows["000002"].engine_disagrees  # ours says running: worth showing
    rows = tell("000004", BackendStatus("ended", "FAILED", "backprop-000004-1"))
    assert (rows["000004"].engine, rows["000004"].engine_disagrees) == ("ended (FAILED)", True)


def test_the_filter_takes_backend_and_host_words() -> None:
    slurm = RunRow(id="000002", name="big", status=Status.RUNNING, backend="slurm", host="node07")
    local = RunRow(id="000001", name="base", status=Status.COMPLETED)
    assert matches(slurm, "backend:slurm") and not matches(local, "backend:slurm")
    assert matches(local, "backend:local") and not matches(slurm, "backend:ray")
    assert matches(slurm, "slurm") and matches(slurm, "host:node0")
    assert not matches(local, "host:node0")
    assert matches(slurm, "backend:slurm status:running big")
    assert not matches(slurm, "backend:slurm status:failed")


def test_detail_lines_of_a_remote_run() -> None:
    local = RunRow(id="000001", name="base", status=Status.COMPLETED)
    assert detail_fields(local) == DETAIL_FIELDS  # a local run's details are as before
    big = RunRow(
        id="000002",
        name="big",
        status=Status.RUNNING,
        backend="slurm",
        host="node07",
        job_id="4242",
        engine="ended (COMPLETED)",
        engine_disagrees=True,
    )
    fields = detail_fields(big)
    assert fields[fields.index("status") + 1 : fields.index("status") + 3] == ("backend", "engine")
    assert where_text(big) == "slurm job 4242 on node07"
    assert engine_text(big) == "ended (COMPLETED), but ours is running"
    fresh = RunRow(id="000003", name="new", status=Status.QUEUED, backend="ray")
    assert where_text(fresh) == "ray, not submitted yet, host not known yet"
    assert engine_text(fresh) == "not asked yet"


def test_configured_backends_are_local_the_config_and_the_runs(tmp_path: Path) -> None:
    registry = remote_runs.build(tmp_path)
    assert configured_backends(Config(), []) == ["local"]
    slurm = Config(raw={"backend": {"name": "slurm", "partition": "gpu"}})
    assert configured_backends(slurm, []) == ["local", "slurm"]
    assert configured_backends(Config(raw={"backend": {"name": "ray"}}), []) == ["local", "ray"]
    assert configured_backends(Config(raw={"run": {"backend": "ray"}}), []) == ["local"]
    assert configured_backends(Config(), registry.list_runs()) == ["local", "slurm", "ray"]


def test_reachability_never_raises_for_a_missing_backend() -> None:
    (entry,) = reachability(["pbs"])
    assert (entry["available"], entry["reachable"]) == (False, False)
    assert "unknown backend 'pbs'" in entry["why"]
    (local,) = reachability(["local"])
    assert (local["available"], local["reachable"]) == (True, True)
    assert "not available" in render_reachability([entry])
    assert render_reachability([local]).startswith("backend local   reachable: this machine")


def test_a_finished_remote_run_sees_the_engine_speak_up_later(tmp_path: Path) -> None:
    clock = Clock()
    producer = _producer(tmp_path, clock)
    registry = producer.registry
    remote_runs.add_run(
        registry, "000005", "done", backend="slurm", status="completed", handle="4250"
    )
    producer.scan()
    clock.t += 20  # past slow_poll_s: finished runs' files are looked at
    producer.tick()
    record_engine_view(registry, "000005", BackendStatus("running", "", "4250", "node09"))
    clock.t += 20
    snap = producer.tick()
    assert snap is not None
    row = next(r for r in snap.runs if r.id == "000005")
    assert (row.status, row.engine, row.engine_disagrees) == (Status.COMPLETED, "running", True)
    assert row.host == "node09"
