"""What a supervisor reports from its node: heartbeat and request polling for remote runs
only, host for every run (issue 15)."""

from __future__ import annotations

import time
from pathlib import Path

from runner.heartbeat import HEARTBEAT, this_host
from runner.model import RunSpec
from runner.node_report import REQUEST_POLL_S, NodeReport
from runner.placement import Placement
from runner.registry import Registry
from runner.tickets import Queue, Ticket


def _report(tmp_path: Path, placement: Placement) -> tuple[Registry, NodeReport]:
    reg = Registry(tmp_path / "home")
    reg.ensure()
    run_id = reg.allocate_id()
    spec = RunSpec(
        id=run_id,
        name="r",
        command=("true",),
        cwd="/tmp",
        created_at=time.time(),
        placement=placement,
    )
    reg.create(spec)
    return reg, NodeReport(reg, spec, 1, boot_id="b", pids=set)


def test_a_local_run_is_unchanged(tmp_path: Path) -> None:
    reg, node = _report(tmp_path, Placement())
    assert node.host == this_host() and not node.remote
    node.tick(100.0, running=True)
    assert not (reg.run_dir("000001") / HEARTBEAT).exists()
    assert all(node.requests_due(100.0 + i * 0.01) for i in range(5))  # every turn, as before


def test_a_remote_run_beats_and_polls_its_requests_each_second(tmp_path: Path) -> None:
    reg, node = _report(tmp_path, Placement(backend="ray"))
    node.tick(100.0, running=False)
    assert (reg.run_dir("000001") / HEARTBEAT).exists()
    assert node.requests_due(100.0)
    assert not node.requests_due(100.0 + REQUEST_POLL_S / 2)
    assert node.requests_due(100.0 + REQUEST_POLL_S)


def test_only_a_remote_attempt_looks_for_its_retry(tmp_path: Path) -> None:
    for placement, expected in ((Placement(), None), (Placement(backend="slurm"), 2)):
        reg, node = _report(tmp_path / placement.backend, placement)
        assert node.superseded(100.0) is None  # its own attempt is the latest
        Queue(reg.root).write_ticket(Ticket(run_id="000001", attempt=2))
        assert node.superseded(100.0 + 10) == expected
