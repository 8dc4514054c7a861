"""A registry with runs placed on Slurm and Ray, their files written by hand.

The files are those the Slurm and Ray backends write (``spec.json`` with ``placement``,
``state.json`` with ``host``, ``submit-<attempt>.json``, ``engine.json``, and for live runs
their supervisor's ``heartbeat``), so the displays are tested without an engine. Runs that
must look alive name the calling process as their supervisor (as :mod:`sample_registry`
does), so reconcile sees them alive while it lives.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from runner import identity
from runner.model import SCHEMA, RunSpec
from runner.registry import Registry

T0 = 1_700_000_000.0


def _write(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj))
    path.chmod(0o600)


def add_run(
    registry: Registry,
    run_id: str,
    name: str,
    *,
    backend: str,
    status: str,
    host: str = "",
    handle: str | None = None,
    engine: dict[str, Any] | None = None,
    reason: str = "",
) -> None:
    folder = registry.runs_dir / run_id
    for sub in ("", "checkpoints", "requests"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    placement: dict[str, Any] = {
        "backend": backend,
        "partition": "gpu" if backend == "slurm" else None,
        "account": None,
        "extra_args": [],
        "address": "http://127.0.0.1:8265" if backend == "ray" else None,
    }
    spec = RunSpec(
        id=run_id,
        name=name,
        command=("/usr/bin/python3", "-u", "/home/ml/project/train.py"),
        cwd="/home/ml/project",
        created_at=T0 + int(run_id) * 60,
    ).to_json()
    spec["placement"] = placement  # by hand: what a spec placed on an engine holds
    _write(folder / "spec.json", spec)
    me = identity.identity_of(os.getpid())
    assert me is not None
    alive = status in ("running", "queued", "paused")
    supervisor = me.to_json() if alive else {"pid": 31337, "start_ticks": 1, "boot_id": "old"}
    state: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": run_id,
        "attempt": 1,
        "status": status,
        "reason": reason,
        "updated_at": T0 + 3600,
        "supervisor": supervisor,
        "trainer": None,
        "queued_at": T0 + int(run_id) * 60 + 1,
        "started_at": None if status == "queued" else T0 + int(run_id) * 60 + 5,
        "ended_at": None if alive else T0 + 3000,
        "exit_code": None if alive else 0,
        "signal": None,
        "timeout_s": None,
        "stop_requested": None,
        "resume_from": None,
        "gpus": [],
    }
    if host:
        state["host"] = host
    _write(folder / "state.json", state)
    if backend != "local" and alive:
        # A remote supervisor's sign of life (runner.heartbeat): fresh now, and slow (300 s)
        # so it stays fresh for the whole test; without it a listing elsewhere asks the engine.
        beat = {"host": host, "pid": me.pid, "boot_id": me.boot_id, "attempt": 1, "every_s": 300}
        _write(folder / "heartbeat", beat)
    if backend != "local":
        key = f"backprop-{run_id}-1"
        _write(
            folder / "submit-1.json",
            {
                "backend": backend,
                "attempt": 1,
                "key": key,
                "at": T0 + int(run_id) * 60 + 1,
                "handle": handle,
                "host": "login1",
            },
        )
    if engine is not None:
        _write(folder / "engine.json", {"handle": handle or "", "host": "", "at": T0, **engine})
    (folder / "output.log").write_text("step 0 loss 2.0\n")


def build(root: Path) -> Registry:
    """Four runs: a local one, two on Slurm (one disagreeing, one queued there), one on Ray."""
    registry = Registry(root)
    registry.runs_dir.mkdir(parents=True, exist_ok=True)
    add_run(registry, "000001", "baseline", backend="local", status="completed")
    add_run(
        registry,
        "000002",
        "big-model",
        backend="slurm",
        status="running",
        host="node07",
        handle="4242",
        engine={"state": "ended", "reason": "COMPLETED"},
    )
    add_run(
        registry,
        "000003",
        "wait-gpu",
        backend="slurm",
        status="queued",
        handle="4243",
        engine={"state": "pending", "reason": "Resources"},
        reason="queued",
    )
    add_run(
        registry,
        "000004",
        "sweep",
        backend="ray",
        status="running",
        host="raynode1",
        handle="backprop-000004-1",
        engine={"state": "running", "reason": ""},
    )
    return registry
