"""``backprop status``: the host, each GPU with our runs on it, the bucket, leases and queue.

Read-only: it probes, reads the shared state file without taking the lock (the file is
replaced atomically), leaves out leases whose attempt is over, lists the queue folder in
order (the first :data:`QUEUE_SHOWN` with their reasons) and names the live dispatcher.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from governor.bucket import BucketState, refill
from governor.dispatcher import alive as dispatcher_alive
from governor.probes import HostInfo, NvmlLike, probe_gpus, probe_host, run_of_pid
from governor.reservations import Lease, outstanding_vram, usage_by_run
from governor.round_inputs import foreign_alive, lease_alive
from governor.settings import GovernorSettings
from governor.store import store_for
from runner.config import Config, format_size
from runner.model import ShapeError
from runner.registry import Registry
from runner.textsafe import safe_label
from runner.tickets import QUEUED, Queue

QUEUE_SHOWN = 50


def status_report(
    registry: Registry,
    config: Config,
    *,
    nvml: NvmlLike | None = None,
    host_probe: Callable[[], HostInfo] = lambda: probe_host(sample_s=0.1),
    now: float | None = None,
    alive: Callable[[Lease], bool] | None = None,
) -> dict[str, Any]:
    """The machine's state as the governor sees it, as a JSON-able dict.

    Keys: ``host`` (HostInfo fields), ``gpus`` (GpuInfo fields, ``processes`` with their
    ``run_id``, ``reserved`` bytes still held by leases, ``runs`` placed there),
    ``gpu_error``, ``bucket`` (``tokens``, ``capacity``, ``rate_per_s``), ``reservations``
    (one per lease), ``queue`` (``id``, ``name``, ``reason``, ``queued_at``, ``position``),
    ``running`` (leases, other users' included), ``max_parallel`` (``None``: no limit),
    ``shared_dir`` (the shared governor folder, or ``None``), ``other_users`` (``running``:
    other owners' admitted runs in it), ``queued`` (the queue's length), ``dispatcher``
    (``pid``, ``since``, ``queued``, or ``None``) and ``settings``.

    Raises:
        ConfigError: when ``[governor]`` does not validate.
    """
    settings = GovernorSettings.from_config(config)
    host = host_probe()
    snap = probe_gpus(nvml, resolve_run=run_of_pid)
    t = time.time() if now is None else now
    store = store_for(registry.root, settings.shared_dir)
    state = store.read()
    live = alive or (lambda lease: lease_alive(registry, lease))
    leases = {rid: lease for rid, lease in state.leases.items() if live(lease)}
    foreign = [lease for lease in state.foreign_leases() if foreign_alive(lease, t)]
    used = usage_by_run(snap.gpus)
    gpus: list[dict[str, Any]] = []
    for g in snap.gpus:
        d = asdict(g)
        d["processes"] = [asdict(p) for p in g.processes]
        d["reserved"] = sum(
            outstanding_vram(lease, g.index, used, t, settings.settle_s)
            for lease in [*leases.values(), *foreign]
        )
        d["runs"] = sorted(rid for rid, lease in leases.items() if g.index in lease.gpus)
        d["excluded"] = settings.is_excluded(g.index, g.uuid)
        gpus.append(d)
    bucket = refill(
        state.bucket or BucketState.full(settings.bucket_capacity, t),
        t,
        settings.bucket_capacity,
        settings.bucket_rate,
    )
    reservations = [
        {
            "run_id": rid,
            "name": lease.name,
            "group": lease.group,
            "gpus": list(lease.gpus),
            "vram": lease.vram,
            "outstanding": {
                str(i): outstanding_vram(lease, i, used, t, settings.settle_s) for i in lease.gpus
            },
            "ram": lease.ram,
            "peak_vram": lease.peak_vram,
            "admitted_at": lease.admitted_at,
            "started_at": lease.started_at,
            "forced": lease.forced,
        }
        for rid, lease in sorted(leases.items())
    ]
    queue: list[dict[str, Any]] = []
    q = Queue(registry.root)
    entries = q.entries()
    for pos, entry in enumerate(entries[:QUEUE_SHOWN], start=1):
        try:
            ticket = q.read_ticket(entry.run_id)
            spec = registry.read_spec(entry.run_id)
        except (FileNotFoundError, ShapeError, OSError, ValueError):
            continue
        if ticket is None or ticket.kind != QUEUED:
            continue
        res = spec.resources
        queue.append(
            {
                "id": entry.run_id,
                "name": spec.name,
                "reason": ticket.reason,
                "queued_at": ticket.queued_at,
                "position": pos,
                "attempt": ticket.attempt,
                "priority": ticket.priority,
                "gpus": res.gpus,
                "vram": res.vram_bytes,
            }
        )
    info = dispatcher_alive(registry)
    return {
        "host": asdict(host),
        "gpus": gpus,
        "gpu_error": snap.error,
        "bucket": {
            "tokens": round(bucket.tokens, 3),
            "capacity": settings.bucket_capacity,
            "rate_per_s": settings.bucket_rate,
        },
        "reservations": reservations,
        "queue": queue,
        "queued": len(entries),
        "dispatcher": (
            {"pid": info.pid, "since": info.since, "queued": info.queued} if info else None
        ),
        "running": len(leases) + len(foreign),
        "max_parallel": settings.max_parallel or None,
        "shared_dir": str(store.shared_dir) if store.shared_dir is not None else None,
        "other_users": {"running": len(foreign)},
        "settings": settings.to_json(),
    }


def _opt(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def render_status(report: dict[str, Any]) -> str:
    """Human form of :func:`status_report`."""
    h = report["host"]
    lines = [
        f"host    CPU {h['cpu_percent']:.0f}%  load {h['load1']:.2f} on {h['cpu_count']} CPUs  "
        f"RAM {format_size(h['ram_available'])} available of {format_size(h['ram_total'])}"
    ]
    if not report["gpus"]:
        lines.append(f"gpus    none ({safe_label(report.get('gpu_error') or 'no GPU', 100)})")
    elif report.get("gpu_error"):
        lines.append(f"gpus    {safe_label(report['gpu_error'], 100)}")
    for g in report["gpus"]:
        excluded = "  [excluded]" if g.get("excluded") else ""
        lines.append(
            f"GPU {g['index']}   {safe_label(g['name'], 40)}  {_opt(g['temperature'], '{:.0f} C')}"
            f"  {_opt(g['utilization'], '{:.0f}%')}  {_opt(g['power_w'], '{:.0f} W')}  "
            f"{format_size(g['memory_used'])} / {format_size(g['memory_total'])} used, "
            f"{format_size(g['reserved'])} reserved{excluded}"
        )
        for p in g["processes"]:
            owner = f"run {p['run_id']}" if p["run_id"] else "other"
            lines.append(f"          pid {p['pid']:<8} {owner:<12} {format_size(p['memory'])}")
    b = report["bucket"]
    lines.append(f"bucket  {b['tokens']:.1f} of {b['capacity']} tokens (+{b['rate_per_s']:g}/s)")
    limit = report["max_parallel"]
    lines.append(
        f"runs    {report['running']} admitted"
        + (f" (max_parallel {limit})" if limit else " (no max_parallel)")
    )
    for r in report["reservations"]:
        where = "GPU " + ",".join(map(str, r["gpus"])) if r["gpus"] else "no GPU"
        held = sum(r["outstanding"].values())
        lines.append(
            f"          {r['run_id']}  {safe_label(r['name'], 28):<28} {where:<9} "
            f"reserved {format_size(held)}" + ("  (started by user)" if r["forced"] else "")
        )
    shared, others = report.get("shared_dir"), report.get("other_users") or {}
    if shared:
        lines.append(
            f"shared  {safe_label(shared, 60)}: other users' runs {others.get('running', 0)} "
            "admitted (counted above)"
        )
    lines.append(f"queue   {report.get('queued', len(report['queue']))} waiting")
    d = report.get("dispatcher")
    if d:
        since = time.strftime("%H:%M:%S", time.localtime(d["since"]))
        lines.append(f"dispatcher  pid {d['pid']} since {since}, {d['queued']} queued")
    else:
        lines.append("dispatcher  none (started on demand when runs wait)")
    for q in report["queue"]:
        lines.append(
            f"  {q['position']:>3}. {q['id']}  {safe_label(q['name'], 28):<28} "
            f"{safe_label(q['reason'] or 'waiting', 100)}"
        )
    return "\n".join(lines)
