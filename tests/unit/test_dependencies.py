"""Dependencies between runs: the pure decision, placeholders, submit checks, the gate in the
dispatcher's admission round and the listing's dependents (no subprocess; real files)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from governor.admit_round import Round
from governor.dependencies import DependencyState, Never, Ready, Wait, decide, satisfied
from governor.dependency_gate import dependency_gate
from governor.fake_nvml import FakeNvml
from governor.probes import HostInfo, probe_gpus
from governor.requests import Snapshot
from governor.settings import GovernorSettings
from runner import identity
from runner.config import ConfigError, _run_defaults
from runner.control import reruns, submission
from runner.control.submission import SubmitOptions
from runner.durable import write_json
from runner.model import Dependency, RunSpec, RunState, ShapeError, Status
from runner.pipeline import (
    DependencyError,
    check_placeholders,
    dependents_of,
    placeholder_env,
    resolve_dependencies,
    substitute,
    with_dependents,
)
from runner.registry import CHECKPOINTS, STATE, Registry
from runner.tickets import Queue, Ticket

ENDED_BADLY = [Status.FAILED, Status.STOPPED, Status.TIMEBOXED, Status.LOST, Status.SKIPPED]
ACTIVE = [Status.STARTING, Status.QUEUED, Status.RUNNING, Status.PAUSED]


# --- the pure decision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "expected"),
    [("ok", Status.COMPLETED, True), ("any", Status.COMPLETED, True)]
    + [("ok", s, False) for s in ENDED_BADLY]
    + [("any", s, True) for s in ENDED_BADLY]
    + [(k, s, None) for k in ("ok", "any") for s in ACTIVE]
    + [("ok", Status.CORRUPT, False), ("any", Status.CORRUPT, False)],
)
def test_satisfied_table(kind: str, status: Status, expected: bool | None) -> None:
    assert satisfied(kind, status) is expected


def test_every_status_is_decided() -> None:
    for status in Status:  # a new status must take a side here
        for kind in ("ok", "any"):
            satisfied(kind, status)


def test_decide_waits_names_the_first_open_dependency() -> None:
    after = [Dependency("000001"), Dependency("000002", "any"), Dependency("000003")]
    states = {
        "000001": DependencyState(Status.COMPLETED),
        "000002": DependencyState(Status.RUNNING),
        "000003": DependencyState(Status.QUEUED, "waiting for 000009 (running)"),
    }
    d = decide(after, states)
    assert d == Wait("waiting for 000002 (running) and 1 more", ("000002", "000003"))


def test_decide_never_names_the_failed_dependency_with_its_reason() -> None:
    after = [Dependency("000001"), Dependency("000002")]
    states = {
        "000001": DependencyState(Status.RUNNING),
        "000002": DependencyState(Status.FAILED, "exit 3"),
    }
    assert decide(after, states) == Never("dependency 000002 failed: exit 3", "000002")
    assert decide(after, {"000001": states["000001"]}) == Never(
        "dependency 000002 no longer exists", "000002"
    )


def test_decide_after_any_runs_after_a_failure_and_reasons_are_cut() -> None:
    after = [Dependency("000001", "any")]
    assert decide(after, {"000001": DependencyState(Status.FAILED, "x" * 500)}) == Ready()
    never = decide([Dependency("000001")], {"000001": DependencyState(Status.FAILED, "x" * 500)})
    assert isinstance(never, Never) and len(never.reason) < 160


statuses = st.sampled_from(list(Status))


@given(st.lists(st.tuples(st.sampled_from(["ok", "any"]), statuses), min_size=1, max_size=6))
def test_decide_properties(deps: list[tuple[str, Status]]) -> None:
    after = [Dependency(f"{i + 1:06d}", kind) for i, (kind, _) in enumerate(deps)]
    states = {d.run_id: DependencyState(s) for d, (_, s) in zip(after, deps, strict=True)}
    d = decide(after, states)
    broken = [a.run_id for a, (k, s) in zip(after, deps, strict=True) if satisfied(k, s) is False]
    open_ = [a.run_id for a, (k, s) in zip(after, deps, strict=True) if satisfied(k, s) is None]
    if broken:
        assert isinstance(d, Never) and d.dependency == broken[0]
    elif open_:
        assert isinstance(d, Wait) and d.waiting_for == tuple(open_)
    else:
        assert d == Ready()


# --- spec and config ----------------------------------------------------------------------------


def spec(run_id: str, *command: str, after: tuple[Dependency, ...] = ()) -> RunSpec:
    return RunSpec(
        id=run_id,
        name=f"r{run_id}",
        command=command or ("true",),
        cwd="/",
        created_at=time.time(),
        after=after,
    )


def test_spec_round_trips_dependencies_and_refuses_bad_ones() -> None:
    s = spec("000002", after=(Dependency("000001", "any"),))
    assert RunSpec.from_json(json.loads(json.dumps(s.to_json()))) == s
    old = s.to_json()
    del old["after"]  # specs written before dependencies existed
    assert RunSpec.from_json(old).after == ()
    for bad in (
        [{"id": "000002", "kind": "ok"}],  # itself
        [{"id": "../x", "kind": "ok"}],
        [{"id": "000001", "kind": "sometimes"}],
        "000001",
    ):
        with pytest.raises(ShapeError):
            RunSpec.from_json({**s.to_json(), "after": bad})


def test_config_run_after_defaults() -> None:
    assert _run_defaults({"after": "prepare"}).after == ("prepare",)
    assert _run_defaults({"after_any": ["1", "2"]}).after_any == ("1", "2")
    with pytest.raises(ConfigError):
        _run_defaults({"after": [1]})


# --- placeholders ---------------------------------------------------------------------------


def test_placeholders_checked_at_submit() -> None:
    check_placeholders(["--init", "{after.checkpoint}", "--x={after[1].run_dir}"], 2)
    check_placeholders(["{afterwards}", "{checkpoint}"], 0)  # not ours
    for command, n in (
        (["{after.checkpoint}"], 0),
        (["{after[2].id}"], 2),
        (["{after.weights}"], 1),
        (["{after.run dir}"], 1),
    ):
        with pytest.raises(DependencyError):
            check_placeholders(command, n)


def test_placeholders_filled_from_the_gate_environment() -> None:
    env = placeholder_env(
        [
            {"id": "000001", "run_dir": "/r/000001", "checkpoint": "/r/000001/c.pt"},
            {"id": "000002", "run_dir": "/r/000002", "checkpoint": None},
        ]
    )
    assert env["BACKPROP_AFTER_CHECKPOINT"] == "/r/000001/c.pt"
    assert env["BACKPROP_AFTER_1_RUN_DIR"] == "/r/000002"
    assert "BACKPROP_AFTER_1_CHECKPOINT" not in env
    cmd = ["eval.py", "--ckpt={after.checkpoint}", "{after[1].run_dir}/x", "{after[1].checkpoint}"]
    assert substitute(cmd, env) == ["eval.py", "--ckpt=/r/000001/c.pt", "/r/000002/x", ""]


# --- submit checks and dependents -----------------------------------------------------------------


def registry_with(tmp_path: Path, *specs: RunSpec) -> Registry:
    reg = Registry(tmp_path / "home")
    for s in specs:
        reg.allocate_id()
        reg.create(s)
    return reg


def test_resolve_refuses_unknown_runs_and_cycles(tmp_path: Path) -> None:
    reg = registry_with(
        tmp_path,
        spec("000001"),
        spec("000002", after=(Dependency("000001"),)),
        spec("000003"),
    )
    deps = resolve_dependencies(reg, ["2,r000001"], ["3", "1"])
    assert deps == (Dependency("000002"), Dependency("000001"), Dependency("000003", "any"))
    with pytest.raises(DependencyError, match="no run with id 9"):
        resolve_dependencies(reg, ["9"])
    with pytest.raises(DependencyError, match="needs run ids"):
        resolve_dependencies(reg, ["1,"])
    # A cycle can only come from edited or foreign files: refuse to wait on it.
    write_json(
        reg.run_dir("000001") / "spec.json",
        spec("000001", after=(Dependency("000002"),)).to_json(),
    )
    with pytest.raises(DependencyError, match="cycle: 000002 -> 000001 -> 000002"):
        resolve_dependencies(reg, ["2"])
    assert resolve_dependencies(reg, ["3"]) == (Dependency("000003"),)


def test_dependents_in_show_and_ls_json(tmp_path: Path) -> None:
    reg = registry_with(
        tmp_path,
        spec("000001"),
        spec("000002", after=(Dependency("000001"),)),
        spec("000003", after=(Dependency("000001", "any"), Dependency("000002"))),
    )
    assert dependents_of(reg, "000001") == ["000002", "000003"]
    assert dependents_of(reg, "000003") == []
    views = reg.list_runs()
    docs = {d["id"]: d for d in (json.loads(t) for t in with_dependents(views))}
    assert docs["000001"]["dependents"] == ["000002", "000003"]
    assert docs["000003"]["after"] == [
        {"id": "000001", "kind": "any"},
        {"id": "000002", "kind": "ok"},
    ]
    # Cached entries (raw text) are spliced, not decoded: the same answer.
    cached = [replace(v, raw=v.to_json_text()) for v in views]
    assert [json.loads(t) for t in with_dependents(cached)] == [
        json.loads(t) for t in with_dependents(views)
    ]


# --- the gate (the dispatcher's admission round) ---------------------------------------------


def set_state(reg: Registry, run_id: str, status: Status, reason: str = "") -> None:
    me = identity.identity_of(os.getpid())  # alive: an active status stays active
    assert me is not None
    state = RunState(run_id, 1, status, time.time(), me, reason=reason)
    write_json(reg.run_dir(run_id) / STATE, state.to_json())


def queued_ticket(run_id: str, *, forced: bool = False) -> Ticket:
    return Ticket(run_id=run_id, attempt=1, queued_at=time.time(), forced=forced)


def test_gate_waits_skips_and_fills_placeholders(tmp_path: Path) -> None:
    dependent = spec("000002", "eval", "{after.checkpoint}", after=(Dependency("000001"),))
    reg = registry_with(tmp_path, spec("000001"), dependent)
    ask = lambda: dependency_gate(reg, dependent, queued_ticket("000002"))  # noqa: E731

    set_state(reg, "000001", Status.RUNNING)
    waiting = ask()
    assert waiting.action == "wait" and waiting.reason == "waiting for 000001 (running)"

    set_state(reg, "000001", Status.COMPLETED, "exit 0")
    no_ckpt = ask()
    assert no_ckpt.action == "cancel" and no_ckpt.end_status is Status.FAILED
    assert no_ckpt.reason == "dependency 000001 left no checkpoint for {after.checkpoint}"
    ckpt = reg.run_dir("000001") / CHECKPOINTS / "ckpt-00000010.pt"
    ckpt.write_bytes(b"x")
    admitted = ask()
    assert admitted.action == "start"
    assert admitted.env["BACKPROP_AFTER_CHECKPOINT"] == str(ckpt)

    set_state(reg, "000001", Status.STOPPED, "stopped by user; exit 0")
    skipped = ask()
    assert skipped.action == "cancel" and skipped.end_status is Status.SKIPPED
    assert skipped.reason == "dependency 000001 stopped: stopped by user; exit 0"


def test_gate_force_starts_a_waiting_dependent(tmp_path: Path) -> None:
    dependent = spec("000002", after=(Dependency("000001"),))
    reg = registry_with(tmp_path, spec("000001"), dependent)
    set_state(reg, "000001", Status.QUEUED)
    gate = dependency_gate(reg, dependent, queued_ticket("000002", forced=True))
    assert gate.action == "start" and gate.env["BACKPROP_AFTER_ID"] == "000001"


def _round(reg: Registry, **settings: Any) -> Round:
    host = HostInfo(
        cpu_percent=1.0, load1=0.1, cpu_count=8, ram_total=64 << 30, ram_available=48 << 30
    )
    return Round(
        reg,
        GovernorSettings(**settings),
        lambda: Snapshot(host, probe_gpus(FakeNvml(error="none"), resolve_run=None), time.time()),
    )


def test_the_round_passes_waiting_dependents_and_skips_transitively(tmp_path: Path) -> None:
    """A waiting dependent blocks nobody (no lease); a failed dependency ends B and C unrun;
    a started dependent's ticket carries its placeholders' values to the supervisor."""
    reg = Registry(tmp_path / "home")
    reg.ensure()
    a = submission.submit(reg, ["true"], name="a", options=SubmitOptions(start=False))
    b = submission.submit(
        reg, ["eval", "{after.id}"], name="b", options=SubmitOptions(after=(Dependency(a.id),))
    )
    c = submission.submit(
        reg, ["report"], name="c", options=SubmitOptions(after=(Dependency(b.id),))
    )
    free = submission.submit(
        reg, ["true"], name="free", options=SubmitOptions(env={"CUDA_VISIBLE_DEVICES": ""})
    )
    set_state(reg, a.id, Status.RUNNING)
    rnd = _round(reg, max_parallel=1)
    res = rnd.run()
    assert res.started == [(free.id, 1)] and res.wait_s is not None  # b and c did not block it
    queue = Queue(reg.root)
    assert reg.load(b.id).reason == f"waiting for {a.id} (running)"
    assert reg.load(c.id).reason == f"waiting for {b.id} (queued)"
    assert b.id not in rnd.store.read().leases and reg.load(b.id).status is Status.QUEUED

    set_state(reg, a.id, Status.FAILED, "exit 3")
    rnd.run()
    rnd.run()  # c may sit before b's end in one round; the next one sees b skipped
    vb, vc = reg.load(b.id), reg.load(c.id)
    assert (vb.status, vb.reason) == (Status.SKIPPED, f"dependency {a.id} failed: exit 3")
    assert vc.status is Status.SKIPPED and vc.reason.startswith(f"dependency {b.id} skipped")
    assert queue.entries() == []

    # Resume re-queues the skipped dependents; once a completes, b starts with its values.
    assert reruns.requeue_skipped_dependents(reg, a.id) == [b.id, c.id]
    set_state(reg, a.id, Status.COMPLETED, "exit 0")
    set_state(reg, free.id, Status.COMPLETED, "exit 0")
    res = _round(reg, max_parallel=1).run()
    assert res.started == [(b.id, 1)]  # the attempt it never ran is given again
    t = queue.read_ticket(b.id)
    assert t is not None and t.env["BACKPROP_AFTER_ID"] == a.id
