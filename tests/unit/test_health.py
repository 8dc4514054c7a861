"""Health flags (nan, diverging, stalled, oom) and the failure reasons they give."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import pytest

from runner.metrics.health import (
    find_oom,
    higher_is_better,
    is_diverging,
    is_stalled,
    last_exception,
    memory_events_paths,
    oom_kill_count,
)
from runner.metrics.ingest import Ingestor
from runner.model import RunSpec, Status
from runner.registry import OUTPUT, SUMMARY
from runner.supervisor.exits import classify

CUDA_OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB. GPU 0 has a total "
    "capacity of 79.15 GiB of which 4.25 MiB is free."
)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (CUDA_OOM, "CUDA out of memory"),
        ("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB", "CUDA out of memory"),
        ("torch.cuda.OutOfMemoryError: boom", "torch.cuda.OutOfMemoryError"),
        ("Traceback (most recent call last):\nMemoryError", "MemoryError"),
        (
            "RuntimeError: [enforce fail at alloc_cpu.cpp:83] DefaultCPUAllocator: "
            "not enough memory: you tried to allocate 1099511627776 bytes.",
            "DefaultCPUAllocator: not enough memory",
        ),
        ("terminate called after throwing an instance of 'std::bad_alloc'", "std::bad_alloc"),
        (
            "jaxlib.xla_extension.XlaRuntimeError: RESOURCE_EXHAUSTED: Out of memory",
            "RESOURCE_EXHAUSTED",
        ),
        ("step 3\nKilled\n", "Killed"),
        ("run.sh: line 3: 41234 Killed                  python train.py", "Killed"),
    ],
)
def test_find_oom(text: str, label: str) -> None:
    assert find_oom(text) == label


@pytest.mark.parametrize(
    "text",
    ["loss: 0.5", "memory usage 3.2 GB", "Killed 3 zombie workers", "skill: killed it", ""],
)
def test_no_oom(text: str) -> None:
    assert find_oom(text) is None


def test_last_exception() -> None:
    text = (
        "Traceback (most recent call last):\n  File 'x.py', line 3\n"
        "ValueError: first\nmore output\nTraceback (most recent call last):\n"
        "  raise FloatingPointError(msg)\nFloatingPointError: loss is nan at step 57\n"
    )
    assert last_exception(text) == "FloatingPointError: loss is nan at step 57"
    assert (
        last_exception("torch.distributed.DistBackendError\n")
        == "torch.distributed.DistBackendError"
    )
    assert last_exception("  indented ValueError: no\nall good") is None


@pytest.mark.parametrize(
    ("last", "best", "points", "expected"),
    [
        (4.0, 1.0, 50, True),
        (2.0, 1.0, 50, False),  # only twice the best
        (4.0, 1.0, 5, False),  # still warming up
        (0.004, 0.001, 50, False),  # 4x, but within the absolute margin
        (math.nan, 1.0, 50, False),  # that is the nan flag's job
        (5.0, None, 50, False),
        (-1.0, -3.0, 50, False),  # a negative best has no meaningful ratio
    ],
)
def test_is_diverging(last: float, best: float | None, points: int, expected: bool) -> None:
    assert is_diverging(last, best, points) is expected


def test_is_stalled_uses_the_usual_interval_with_a_floor() -> None:
    assert not is_stalled(100.0, None, [])
    assert not is_stalled(100.0, 50.0, [1.0])  # 50 s: under the 60 s floor
    assert is_stalled(100.0, 30.0, [1.0])  # 70 s silence, usual gap 1 s
    assert not is_stalled(1000.0, 30.0, [200.0])  # slow steps: 970 s < 10 x 200 s
    assert is_stalled(3000.0, 30.0, [200.0])
    assert is_stalled(100.0, 80.0, [1.0], floor_s=10.0)


@pytest.mark.parametrize(
    ("name", "higher"),
    [
        ("loss", False),
        ("val_loss", False),
        ("accuracy", True),
        ("val_acc", True),
        ("error_rate", False),
        ("perplexity", False),
        ("reward", True),
        ("f1", True),
    ],
)
def test_higher_is_better(name: str, higher: bool) -> None:
    assert higher_is_better(name) is higher


def test_oom_kill_count_reads_cgroup_v2_and_v1(tmp_path: Path) -> None:
    v2 = tmp_path / "memory.events"
    v2.write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 3\noom_group_kill 0\n")
    v1 = tmp_path / "memory.oom_control"
    v1.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n")
    assert oom_kill_count([tmp_path / "missing", v2]) == 3
    assert oom_kill_count([v1]) == 7
    assert oom_kill_count([tmp_path / "missing"]) is None


def test_memory_events_paths_from_proc_self_cgroup(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/user/job\n0::/user.slice/run-1.scope\n")
    paths = memory_events_paths(proc)
    assert Path("/sys/fs/cgroup/user.slice/run-1.scope/memory.events") in paths
    assert Path("/sys/fs/cgroup/memory/user/job/memory.oom_control") in paths
    assert memory_events_paths(tmp_path / "none") == []
    oom_kill_count()  # the real machine: a number or None, never an error


# --- through the ingestor ----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _run(tmp_path: Path) -> tuple[Path, RunSpec]:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    spec = RunSpec(id="000001", name="t", command=("x",), cwd=str(tmp_path), created_at=0.0)
    return run_dir, spec


def _out(run_dir: Path, text: str) -> None:
    with open(run_dir / OUTPUT, "a") as f:
        f.write(text)


def _health(run_dir: Path) -> list[str]:
    return json.loads((run_dir / SUMMARY).read_text())["health"]  # type: ignore[no-any-return]


def test_cuda_oom_text_flags_oom_and_names_the_failure(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)
    _out(run_dir, "step 1 loss: 0.5\nTraceback (most recent call last):\n" + CUDA_OOM + "\n")
    ing.poll(final=True)
    ing.close()
    hint = ing.failure_hint()
    assert hint == "out of memory (CUDA out of memory)"
    assert _health(run_dir) == ["oom"]
    status, reason = classify(1, None, 0, hint)
    assert status is Status.FAILED and reason.startswith("out of memory") and "exit 1" in reason


def test_a_kernel_oom_kill_during_the_attempt_is_named(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)
    counts = iter([2, 3])
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: next(counts))
    _out(run_dir, "step 1 loss: 0.5\n")
    ing.poll(final=True)
    ing.close()
    hint = ing.failure_hint()
    assert hint is not None and "kernel" in hint and hint.startswith("out of memory")
    assert _health(run_dir) == ["oom"]
    _, reason = classify(-signal.SIGKILL, None, 0, hint)
    assert "kernel" in reason


def test_unreadable_cgroup_is_skipped_silently(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)

    def broken() -> int | None:
        raise PermissionError("no")

    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=broken)
    ing.poll(final=True)
    ing.close()
    assert ing.failure_hint() is None


def test_nan_loss_flags_nan_and_the_exception_is_the_reason(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)
    _out(run_dir, "step 1 | loss: 0.5\nstep 2 | loss: nan\n")
    ing.poll(final=True)
    assert _health(run_dir) == ["nan"]
    assert ing.failure_hint() == "loss became non-finite at step 2"
    _out(run_dir, "Traceback (most recent call last):\nFloatingPointError: loss is nan at step 2\n")
    ing.poll(final=True)
    ing.close()
    assert ing.failure_hint() == "FloatingPointError: loss is nan at step 2"
    assert json.loads((run_dir / SUMMARY).read_text())["loss"] is None


def test_diverging_loss_is_flagged(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)
    ing = Ingestor(run_dir, spec, 1, clock=Clock(), oom_kills=lambda: None)
    _out(run_dir, "".join(f"step {i} loss: {1.0 / i:.4f}\n" for i in range(1, 21)))
    ing.poll(final=True)
    assert _health(run_dir) == []
    _out(run_dir, "step 21 loss: 9.0\n")
    ing.poll(final=True)
    ing.close()
    assert _health(run_dir) == ["diverging"]


def test_stalled_while_running_only(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)
    clock = Clock()
    ing = Ingestor(run_dir, spec, 1, clock=clock, oom_kills=lambda: None, stall_floor_s=60.0)
    for step in range(1, 11):
        _out(run_dir, f"step {step} loss: 0.5\n")
        ing.poll()
        clock.t += 1.0
    ing.poll()
    assert _health(run_dir) == []
    clock.t += 30
    ing.poll()
    assert _health(run_dir) == []  # 30 s of silence: under the floor
    clock.t += 40
    ing.poll()
    assert _health(run_dir) == ["stalled"]
    _out(run_dir, "step 11 loss: 0.4\n")
    clock.t += 1
    ing.poll()
    assert _health(run_dir) == []  # it moved again
    clock.t += 120
    ing.poll(final=True)
    ing.close()
    assert _health(run_dir) == []  # an ended run is never stalled


def test_a_paused_run_is_not_stalled(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)
    clock = Clock()
    ing = Ingestor(run_dir, spec, 1, clock=clock, oom_kills=lambda: None)
    for step in range(1, 6):
        _out(run_dir, f"step {step} loss: 0.5\n")
        ing.poll()
        clock.t += 1.0
    ing.set_paused(True)
    clock.t += 600
    ing.poll()
    assert _health(run_dir) == []
    ing.set_paused(False)
    clock.t += 30
    ing.poll()
    assert _health(run_dir) == []  # the pause does not count as silence
    clock.t += 60
    ing.poll()
    ing.close()
    assert _health(run_dir) == ["stalled"]
