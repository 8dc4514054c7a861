"""What an admission round works from: requests, placement, and the leases' truth.

* :func:`build_request`: a run's request from its spec (or the learned peak VRAM);
* :func:`placement_env`: the environment an admission sets (visible GPUs, framework memory);
* :func:`lease_alive`: whether an admitted attempt still holds its place, from its run folder;
* :func:`note_peaks`: leases' peak VRAM raised to what a probe shows (learned at their end);
* :func:`with_processes`, :func:`foreign_alive`, :func:`prune_foreign`: a shared governor
  folder (:mod:`governor.shared`) holds other users' leases, whose run folders we cannot
  read: a lease records its supervisor and trainer, and other users' rounds count it while
  one of them lives (checked by identity, never signalled).
"""

from __future__ import annotations

import os
from dataclasses import replace

from governor import learn, visible
from governor.frameworks import framework_env, frameworks_for
from governor.probes import GpuSnapshot
from governor.requests import Decision, Request
from governor.reservations import Lease, usage_by_run
from governor.settings import GovernorSettings
from governor.store import GovernorState, process_alive
from runner import identity
from runner.model import RunSpec, RunState, Status
from runner.registry import METRICS, Registry, RunNotFound
from runner.tickets import ADMITTED


def build_request(
    spec: RunSpec, settings: GovernorSettings, learned: dict[str, object] | None
) -> Request:
    """The request of a run: its flags, else the learned peak VRAM of the same command."""
    res = spec.resources
    vram, source = res.vram_bytes, "requested"
    if vram is None:
        source = "default"
        if settings.learn_vram and learned is not None:
            peak = learn.lookup(learned, learn.command_key(spec), learn.script_key(spec))
            if peak is not None:
                vram, source = peak, "learned"
    return Request(
        run_id=spec.id,
        name=spec.name,
        group=spec.group,
        gpus=res.gpus,
        gpu_ids=res.gpu_ids,
        vram=vram,
        vram_source=source,
        ram=res.ram_bytes or 0,
        visible=visible.restriction(spec.env),
    )


def placement_env(
    spec: RunSpec, req: Request, decision: Decision, settings: GovernorSettings
) -> dict[str, str]:
    """The environment an admission sets: visible GPUs and framework memory settings."""
    env: dict[str, str] = {}
    if decision.lane == "gpu" and decision.gpus:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in decision.gpus)
        env.update(
            framework_env(
                frameworks_for(spec.resources.framework, spec.script),
                vram=decision.vram,
                vram_explicit=req.vram_source == "requested" and req.vram is not None,
                gpu_totals=decision.gpu_totals,
                user_env=spec.env,
            )
        )
    elif decision.lane == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def lease_alive(registry: Registry, lease: Lease) -> bool:
    """Whether a lease's attempt still holds its place (the run folder is the truth).

    Alive while the attempt is starting, running or paused, and while a trainer left behind by
    a vanished supervisor lives (it still occupies its GPU).
    """
    try:
        view = registry.load(lease.run_id)
    except (RunNotFound, ValueError, OSError):
        return False
    if view.attempt != lease.attempt:
        return False
    ticket = view.ticket
    if ticket is not None and ticket.attempt == lease.attempt and ticket.kind != ADMITTED:
        return False  # a crash between the lease and the ticket
    if view.status in (Status.STARTING, Status.RUNNING, Status.PAUSED):
        return True
    if view.status is Status.QUEUED and lease.backend != "local":
        return True  # the engine holds it pending (or requeued it): its end is still to come
    trainer = view.state.trainer if view.state else None
    return view.status is Status.LOST and identity.matches(trainer)


def metrics_tail(registry: Registry, run_id: str, size: int = 65536) -> bytes:
    """The last ``size`` bytes of a run's ``metrics.jsonl`` (empty when there is none)."""
    try:
        with open(registry.run_dir(run_id) / METRICS, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read()
    except OSError:
        return b""


def note_peaks(state: GovernorState, gpus: GpuSnapshot) -> None:
    """Raise leases' peak VRAM to what this probe shows (learning while others wait)."""
    if not state.leases or not gpus.gpus:
        return
    used = usage_by_run(gpus.gpus)
    for rid, lease in list(state.leases.items()):
        peak = max((used.get((rid, i), 0) for i in lease.gpus), default=0)
        if peak > lease.peak_vram:
            state.leases[rid] = replace(lease, peak_vram=peak)


# Another user's lease that names no process yet (admitted, its supervisor not seen by its
# owner's round) counts this long; after that only while its supervisor or trainer lives.
FOREIGN_START_GRACE_S = 60.0


def with_processes(lease: Lease, state: RunState | None, now: float) -> Lease:
    """The lease marked started, naming its attempt's supervisor and trainer once known."""
    started = lease.started_at if lease.started_at is not None else now
    if state is None or state.attempt != lease.attempt:
        return replace(lease, started_at=started)
    return replace(
        lease,
        started_at=started,
        supervisor=state.supervisor,
        trainer=state.trainer or lease.trainer,
    )


def foreign_alive(lease: Lease, now: float) -> bool:
    """Whether another user's lease still holds its place (read-only liveness checks)."""
    if lease.supervisor is None and lease.trainer is None:
        return now - lease.admitted_at < FOREIGN_START_GRACE_S
    return process_alive(lease.supervisor) or process_alive(lease.trainer)


def prune_foreign(state: GovernorState, now: float) -> None:
    """Drop other users' entries whose runs are gone (they would hold places for ever)."""
    for other in state.others.values():
        for rid in [r for r, lease in other.leases.items() if not foreign_alive(lease, now)]:
            del other.leases[rid]
        for rid in [r for r, w in other.waiters.items() if not process_alive(w.supervisor)]:
            del other.waiters[rid]
