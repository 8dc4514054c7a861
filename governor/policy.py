# over 400 lines: one pure admission decision; its rules share the pool and placement helpers
"""The admission decision, a pure function.

Its inputs: a resource snapshot, the request, the leases, the runs queued ahead, the token
bucket and the settings.

Rules, in the order their reasons are reported:

1. ``max_parallel`` (all lanes) and ``max_parallel_per_group``;
2. host RAM: available minus outstanding reservations minus the request >= ``min_free_ram``;
3. CPU: 1-minute load per CPU <= ``max_load`` (when set);
4. GPUs, for runs that need them: not excluded, below ``max_temperature``, fewer than
   ``max_runs_per_gpu`` of our runs, free VRAM after reservations >= request + margin, and
   ``keep_free_gpus`` left without any Backprop run; placement takes the GPUs with the most
   free memory (our own GPUs first when some must be kept free), or the pinned ones;
5. a token from the shared bucket.

FIFO: the runs queued ahead are considered first, in order; each that fits now claims its
share of the pool (it will take it on its next poll), and the first that does not fit blocks
everyone behind it, unless backfill is on and it has waited less than ``backfill_max_wait``.
``force`` (``backprop start``) skips every rule and the queue but still places and reserves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from governor.bucket import BucketState, refill, try_take, wait_for
from governor.probes import GpuInfo
from governor.requests import Decision, Queued, Request, Snapshot
from governor.reservations import Lease, outstanding_ram, outstanding_vram, usage_by_run
from governor.settings import GovernorSettings
from governor.visible import VisibleDevicesError
from governor.visible import resolve as resolve_visible
from runner.config import format_size

__all__ = ["Decision", "Queued", "Request", "Snapshot", "admit"]

MAX_REASONS = 4


# --- the pool of what is left -----------------------------------------------------------------


@dataclass
class _Gpu:
    info: GpuInfo
    free: int
    runs: int
    ours: bool
    excluded: bool


@dataclass
class _Pool:
    gpus: dict[int, _Gpu]
    gpu_error: str | None
    running: int
    groups: dict[str, int]
    ram_left: int
    load_per_cpu: float
    tokens: float
    ahead_claims: int = 0
    group_claims: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls, snap: Snapshot, leases: Sequence[Lease], settings: GovernorSettings, tokens: float
    ) -> _Pool:
        used = usage_by_run(snap.gpus.gpus)
        gpus: dict[int, _Gpu] = {}
        for info in snap.gpus.gpus:
            gpus[info.index] = _Gpu(
                info=info,
                free=info.memory_free,
                runs=0,
                ours=any(p.run_id is not None for p in info.processes),
                excluded=settings.is_excluded(info.index, info.uuid),
            )
        groups: dict[str, int] = {}
        ram_left = snap.host.ram_available
        for lease in leases:
            for idx in lease.gpus:
                g = gpus.get(idx)
                if g is not None:
                    g.free -= outstanding_vram(lease, idx, used, snap.now, settings.settle_s)
                    g.runs += 1
                    g.ours = True
            if lease.group is not None:
                groups[lease.group] = groups.get(lease.group, 0) + 1
            ram_left -= outstanding_ram(lease, snap.now, settings.settle_s)
        host = snap.host
        return cls(
            gpus=gpus,
            gpu_error=snap.gpus.error,
            running=len(leases),
            groups=groups,
            ram_left=ram_left,
            load_per_cpu=host.load1 / max(1, host.cpu_count),
            tokens=tokens,
        )

    def claim(self, request: Request, fit: _Fit, *, ahead: bool) -> None:
        self.running += 1
        self.tokens -= 1
        self.ahead_claims += int(ahead)
        if request.group is not None:
            self.groups[request.group] = self.groups.get(request.group, 0) + 1
            if ahead:
                self.group_claims[request.group] = self.group_claims.get(request.group, 0) + 1
        self.ram_left -= request.ram
        for idx in fit.gpus:
            g = self.gpus[idx]
            g.free -= fit.vram_per_gpu[idx]
            g.runs += 1
            g.ours = True


@dataclass(frozen=True)
class _Fit:
    ok: bool
    reason: str
    rule: str
    gpus: tuple[int, ...] = ()
    vram_per_gpu: dict[int, int] = field(default_factory=dict)
    lane: str = "any"
    free_seen: tuple[int, ...] = ()


def _wanted_gpus(request: Request, pool: _Pool, settings: GovernorSettings) -> tuple[int, str]:
    """How many GPUs and which lane."""
    if request.gpus is not None:
        return request.gpus, "gpu" if request.gpus > 0 else "cpu"
    if request.gpu_ids:
        return len(request.gpu_ids), "gpu"
    if pool.gpus:
        n = settings.default_gpus
        return n, "gpu" if n > 0 else "cpu"
    return 0, "any"


def _vram_need(request: Request, info: GpuInfo, settings: GovernorSettings) -> int:
    if request.vram is not None:
        return request.vram
    if settings.default_vram_fraction is not None:
        return int(info.memory_total * settings.default_vram_fraction)
    return settings.default_vram


def _vram_words(request: Request, need: int, info: GpuInfo, settings: GovernorSettings) -> str:
    if request.vram is not None and request.vram_source == "learned":
        words = f"{format_size(need)} needed (learned peak)"
    elif request.vram is not None:
        words = f"{format_size(need)} requested"
    elif settings.default_vram_fraction is not None:
        pct = settings.default_vram_fraction * 100
        total = format_size(info.memory_total)
        words = f"{format_size(need)} assumed ({pct:g}% of {total}; no --vram)"
    else:
        words = f"{format_size(need)} assumed (no --vram)"
    if settings.vram_margin:
        words += f" + {format_size(settings.vram_margin)} margin"
    return words


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _fit(request: Request, pool: _Pool, settings: GovernorSettings) -> _Fit:
    """Whether ``request`` fits in what is left of ``pool`` (pure; does not claim)."""
    queued_note = f", {pool.ahead_claims} ahead in the queue" if pool.ahead_claims else ""
    if settings.max_parallel and pool.running >= settings.max_parallel:
        running = pool.running - pool.ahead_claims
        return _Fit(
            False,
            f"max_parallel {settings.max_parallel} reached ({running} running{queued_note})",
            "max_parallel",
        )
    if settings.max_parallel_per_group and request.group is not None:
        count = pool.groups.get(request.group, 0)
        if count >= settings.max_parallel_per_group:
            return _Fit(
                False,
                f"group {request.group!r}: max_parallel_per_group "
                f"{settings.max_parallel_per_group} reached "
                f"({count - pool.group_claims.get(request.group, 0)} running)",
                "group",
            )
    if pool.ram_left - request.ram < settings.min_free_ram:
        asked = f"{format_size(request.ram)} requested + " if request.ram else ""
        return _Fit(
            False,
            f"RAM: {format_size(max(0, pool.ram_left))} available after reservations, "
            f"{asked}{format_size(settings.min_free_ram)} must stay free",
            "ram",
        )
    if settings.max_load and pool.load_per_cpu > settings.max_load:
        return _Fit(
            False,
            f"CPU load {pool.load_per_cpu:.2f} per CPU above the limit {settings.max_load:g}",
            "load",
        )
    n, lane = _wanted_gpus(request, pool, settings)
    chosen: tuple[int, ...] = ()
    vram_per_gpu: dict[int, int] = {}
    if n > 0:
        placed = _place(request, n, pool, settings)
        if not placed.ok:
            return placed
        chosen, vram_per_gpu = placed.gpus, placed.vram_per_gpu
    if pool.tokens < 1 - 1e-9:
        return _Fit(
            False,
            f"admission rate limit: no token left (bucket of {settings.bucket_capacity}, "
            f"{settings.bucket_rate:g} per second{queued_note})",
            "bucket",
        )
    return _Fit(
        True,
        "",
        "ok",
        gpus=chosen,
        vram_per_gpu=vram_per_gpu,
        lane=lane,
        free_seen=tuple(pool.gpus[i].free for i in chosen),
    )


def _place(request: Request, n: int, pool: _Pool, settings: GovernorSettings) -> _Fit:
    if not pool.gpus:
        why = f" (NVML: {pool.gpu_error})" if pool.gpu_error else ""
        return _Fit(False, f"needs {_plural(n, 'GPU')}; this machine has none{why}", "no-gpu")
    try:
        allowed = _allowed(request, pool)
    except VisibleDevicesError as exc:
        return _Fit(False, str(exc), "gpu-missing")
    if request.gpu_ids:
        missing = [i for i in request.gpu_ids if i not in pool.gpus]
        if missing:
            have = ", ".join(str(i) for i in sorted(pool.gpus))
            return _Fit(
                False,
                f"GPU {', '.join(map(str, missing))} does not exist (GPUs here: {have})",
                "gpu-missing",
            )
        hidden = [i for i in request.gpu_ids if allowed is not None and i not in allowed]
        if hidden:
            return _Fit(
                False,
                f"GPU {', '.join(map(str, hidden))} is pinned but not in the run's "
                f"CUDA_VISIBLE_DEVICES ({request.visible})",
                "gpu-missing",
            )
        candidates = [pool.gpus[i] for i in dict.fromkeys(request.gpu_ids)]
    elif allowed is not None:
        candidates = [pool.gpus[i] for i in allowed]
    else:
        candidates = sorted(pool.gpus.values(), key=lambda g: g.info.index)
    if n > len(candidates):
        where = "pinned" if request.gpu_ids else "on this machine"
        return _Fit(False, f"needs {_plural(n, 'GPU')}; {len(candidates)} {where}", "gpu-missing")
    fitting: list[_Gpu] = []
    misses: list[str] = []
    need_of: dict[int, int] = {}
    for g in candidates:
        info = g.info
        need = _vram_need(request, info, settings)
        need_of[info.index] = need
        if g.excluded:
            misses.append(f"GPU {info.index}: excluded by exclude_gpus")
        elif info.temperature is not None and info.temperature >= settings.max_temperature:
            misses.append(
                f"GPU {info.index}: {info.temperature:.0f} C, at or above the "
                f"{settings.max_temperature:g} C limit"
            )
        elif settings.max_runs_per_gpu and g.runs >= settings.max_runs_per_gpu:
            misses.append(
                f"GPU {info.index}: {g.runs} runs, max_runs_per_gpu {settings.max_runs_per_gpu}"
            )
        elif g.free < need + settings.vram_margin:
            misses.append(
                f"GPU {info.index}: {format_size(max(0, g.free))} free after reservations, "
                f"{_vram_words(request, need, info, settings)}"
            )
        else:
            fitting.append(g)
    if len(fitting) < n:
        if len(candidates) == 1 and n == 1:
            return _Fit(False, misses[0], "gpu")
        shown = "; ".join(misses[:MAX_REASONS])
        if len(misses) > MAX_REASONS:
            shown += f"; and {len(misses) - MAX_REASONS} more"
        return _Fit(False, f"needs {_plural(n, 'GPU')}, {len(fitting)} fit: {shown}", "gpu")
    keep = settings.keep_free_gpus
    fitting.sort(key=lambda g: (not g.ours if keep else False, -g.free, g.info.index))
    chosen = fitting[:n]
    if keep:
        chosen_ids = {g.info.index for g in chosen}
        idle = [
            g
            for g in pool.gpus.values()
            if not g.excluded and not g.ours and g.info.index not in chosen_ids
        ]
        if len(idle) < keep:
            return _Fit(
                False,
                f"keep_free_gpus {keep}: placing here would leave "
                f"{_plural(len(idle), 'GPU')} free of Backprop runs",
                "keep-free",
            )
    gpus = tuple(g.info.index for g in chosen)
    return _Fit(True, "", "ok", gpus=gpus, vram_per_gpu={i: need_of[i] for i in gpus}, lane="gpu")


def _allowed(request: Request, pool: _Pool) -> tuple[int, ...] | None:
    """The GPUs the run's own ``CUDA_VISIBLE_DEVICES`` lets it use (``None``: any)."""
    if request.visible is None:
        return None
    return resolve_visible(request.visible, [g.info for g in pool.gpus.values()])


# --- the decision -----------------------------------------------------------------------------


def admit(
    snapshot: Snapshot,
    request: Request,
    *,
    leases: Sequence[Lease],
    ahead: Sequence[Queued],
    bucket: BucketState,
    settings: GovernorSettings,
    force: bool = False,
) -> Decision:
    """Decide whether ``request`` may start now, and where (pure).

    Args:
        snapshot: host and GPUs now.
        request: the run deciding.
        leases: every live lease (admitted runs), not including this run's.
        ahead: live queued runs ahead of this one, oldest first.
        bucket: the shared token bucket as last stored.
        settings: the limits.
        force: the user asked to start it now (``backprop start``).

    Returns:
        The decision, with the bucket state to store.
    """
    now = snapshot.now
    cap, rate = settings.bucket_capacity, settings.bucket_rate
    current = refill(bucket, now, cap, rate)
    pool = _Pool.build(snapshot, leases, settings, current.tokens)
    if force:
        return _forced(request, pool, snapshot, current, settings)
    for queued in ahead:
        fit = _fit(queued.request, pool, settings)
        if fit.ok:
            pool.claim(queued.request, fit, ahead=True)
            continue
        if settings.backfill and now - queued.since < settings.backfill_max_wait_s:
            continue
        retry = settings.poll_interval_s
        if fit.rule == "bucket":
            retry = _bucket_retry(current, now, settings, pool.ahead_claims + 1)
        return Decision(
            admitted=False,
            reason=f"behind run {queued.request.run_id} in the queue: {fit.reason}",
            rule=f"fifo:{queued.request.run_id}:{fit.rule}",
            bucket=current,
            retry_after_s=retry,
        )
    fit = _fit(request, pool, settings)
    if not fit.ok:
        retry = settings.poll_interval_s
        if fit.rule == "bucket":
            retry = _bucket_retry(current, now, settings, pool.ahead_claims + 1)
        return Decision(
            admitted=False, reason=fit.reason, rule=fit.rule, bucket=current, retry_after_s=retry
        )
    taken, after = try_take(current, now, cap, rate)
    assert taken, "a fit always has a token"
    vram = max(fit.vram_per_gpu.values(), default=0)
    return Decision(
        admitted=True,
        reason=_admitted_words(fit, pool, vram),
        rule="ok",
        gpus=fit.gpus,
        vram=vram,
        lane=fit.lane,
        bucket=after,
        retry_after_s=0.0,
        gpu_totals=tuple(pool.gpus[i].info.memory_total for i in fit.gpus),
    )


def _bucket_retry(state: BucketState, now: float, settings: GovernorSettings, n: int) -> float:
    wait = wait_for(state, now, settings.bucket_capacity, settings.bucket_rate, float(n))
    if math.isinf(wait):
        return settings.poll_interval_s
    return max(0.05, min(settings.poll_interval_s, wait))


def _admitted_words(fit: _Fit, pool: _Pool, vram: int) -> str:
    if fit.lane == "cpu":
        return "admitted on the CPU lane (no GPU)"
    if fit.lane == "any":
        why = f" (no GPU: {pool.gpu_error})" if pool.gpu_error else ""
        return f"admitted{why}"
    label = "GPU" if len(fit.gpus) == 1 else "GPUs"
    free = ", ".join(format_size(f) for f in fit.free_seen)
    return (
        f"admitted on {label} {','.join(map(str, fit.gpus))} ({free} free after reservations; "
        f"reserving {format_size(vram)})"
    )


def _forced(
    request: Request,
    pool: _Pool,
    snapshot: Snapshot,
    current: BucketState,
    settings: GovernorSettings,
) -> Decision:
    """``backprop start``: no limits, no queue; still place on GPUs and reserve."""
    n, lane = _wanted_gpus(request, pool, settings)
    gpus: tuple[int, ...] = ()
    vram = 0
    totals: tuple[int, ...] = ()
    note = ""
    if n > 0:
        try:
            allowed = _allowed(request, pool)
        except VisibleDevicesError as exc:
            allowed, note = (), f"; {exc}"
        if request.gpu_ids:
            candidates = [pool.gpus[i] for i in dict.fromkeys(request.gpu_ids) if i in pool.gpus]
        else:
            candidates = [g for g in pool.gpus.values() if not g.excluded]
        if allowed is not None:
            candidates = [g for g in candidates if g.info.index in allowed]
        candidates.sort(key=lambda g: (-g.free, g.info.index))
        chosen = candidates[:n]
        gpus = tuple(g.info.index for g in chosen)
        totals = tuple(g.info.memory_total for g in chosen)
        vram = max((_vram_need(request, g.info, settings) for g in chosen), default=0)
        if not chosen:
            lane = "any"
            note += f"; needs {_plural(n, 'GPU')} but none is available" + (
                f" (NVML: {pool.gpu_error})" if pool.gpu_error else ""
            )
        elif len(chosen) < n:
            note += f"; needs {_plural(n, 'GPU')}, only {len(chosen)} available"
    # A forced start still uses up a token when one is there, so the bucket keeps spacing.
    _, after = try_take(current, snapshot.now, settings.bucket_capacity, settings.bucket_rate)
    where = f" on GPU {','.join(map(str, gpus))}" if gpus else ""
    if lane == "cpu":
        where = " on the CPU lane"
    return Decision(
        admitted=True,
        reason=f"started by request (limits bypassed){where}{note}",
        rule="forced",
        gpus=gpus,
        vram=vram,
        lane=lane,
        bucket=after,
        retry_after_s=0.0,
        gpu_totals=totals,
    )
