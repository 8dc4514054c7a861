"""Leases: what an admitted run holds, and how much of its VRAM is still reserved.

A lease is written when a run is admitted and removed when its supervisor releases it (or
found dead). It counts towards ``max_parallel`` for its whole life. Its VRAM reservation
covers the gap between admission and the moment the run's own allocation shows in NVML: on
each GPU, the reservation still outstanding is what the run asked for minus what NVML already
shows it using there, and nothing once the settle window has passed. So a burst of launches
cannot all see the same free memory, and nothing is counted twice for long.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from governor.probes import GpuInfo
from runner.model import ProcessIdentity, ShapeError, validate_run_id_shape


@dataclass(frozen=True)
class Lease:
    """An admitted run's hold on the machine.

    Attributes:
        run_id: the run.
        name: its display name (for ``backprop status``).
        group: its group, for ``max_parallel_per_group``.
        gpus: the GPU indices it was placed on.
        vram: bytes reserved on each of those GPUs.
        ram: host RAM bytes reserved (until the settle window passes).
        admitted_at: wall-clock time of admission.
        started_at: when the trainer started (``None`` until then).
        forced: admitted by ``backprop start`` (limits bypassed).
        supervisor: the attempt's supervisor, once seen (the owner's own round follows the run
            folder's truth; other users of a shared governor check this and ``trainer``).
        trainer: the trainer, once started.
        peak_vram: the largest per-GPU usage seen for the run so far.
        command_key: the learned-VRAM key of its command.
        script_key: the learned-VRAM key of its script, if any.
        attempt: the attempt admitted (the lease ends with it).
        backend: where it runs: ``local`` holds this machine's resources; an engine's
            (``slurm``, ``ray``) holds none here and is kept only to see the attempt end.
    """

    run_id: str
    name: str = ""
    group: str | None = None
    gpus: tuple[int, ...] = ()
    vram: int = 0
    ram: int = 0
    admitted_at: float = 0.0
    started_at: float | None = None
    forced: bool = False
    supervisor: ProcessIdentity | None = None
    trainer: ProcessIdentity | None = None
    peak_vram: int = 0
    command_key: str = ""
    script_key: str | None = None
    attempt: int = 1
    backend: str = "local"

    def to_json(self) -> dict[str, Any]:
        """JSON form for the state file."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "group": self.group,
            "gpus": list(self.gpus),
            "vram": self.vram,
            "ram": self.ram,
            "admitted_at": self.admitted_at,
            "started_at": self.started_at,
            "forced": self.forced,
            "supervisor": self.supervisor.to_json() if self.supervisor else None,
            "trainer": self.trainer.to_json() if self.trainer else None,
            "peak_vram": self.peak_vram,
            "command_key": self.command_key,
            "script_key": self.script_key,
            "attempt": self.attempt,
            "backend": self.backend,
        }

    @classmethod
    def from_json(cls, d: Any) -> Lease:
        """Parse strictly (raises :class:`ShapeError`)."""
        if not isinstance(d, dict):
            raise ShapeError("lease is not an object")
        gpus = d.get("gpus") or []
        if not isinstance(gpus, list) or not all(_is_int(g) for g in gpus):
            raise ShapeError("lease gpus must be integers")
        sup, trainer = d.get("supervisor"), d.get("trainer")
        return cls(
            run_id=validate_run_id_shape(_typed(d, "run_id", str)),
            name=_typed(d, "name", str, ""),
            group=_typed(d, "group", str, None),
            gpus=tuple(gpus),
            vram=_nonneg_int(d, "vram"),
            ram=_nonneg_int(d, "ram"),
            admitted_at=_finite(d, "admitted_at"),
            started_at=_finite(d, "started_at") if d.get("started_at") is not None else None,
            forced=bool(d.get("forced", False)),
            supervisor=ProcessIdentity.from_json(sup) if sup is not None else None,
            trainer=ProcessIdentity.from_json(trainer) if trainer is not None else None,
            peak_vram=_nonneg_int(d, "peak_vram"),
            command_key=_typed(d, "command_key", str, ""),
            script_key=_typed(d, "script_key", str, None),
            attempt=max(1, _nonneg_int(d, "attempt") or 1),
            backend=_typed(d, "backend", str, "local")[:20],
        )


def usage_by_run(gpus: Iterable[GpuInfo]) -> dict[tuple[str, int], int]:
    """``{(run_id, gpu index): bytes}`` of our runs' processes in a list of ``GpuInfo``."""
    used: dict[tuple[str, int], int] = {}
    for g in gpus:
        for p in g.processes:
            if p.run_id is not None:
                key = (p.run_id, g.index)
                used[key] = used.get(key, 0) + p.memory
    return used


def outstanding_vram(
    lease: Lease, gpu: int, used: Mapping[tuple[str, int], int], now: float, settle_s: float
) -> int:
    """VRAM of ``lease`` still reserved on ``gpu``: asked minus visible, zero once settled."""
    if gpu not in lease.gpus or now - lease.admitted_at >= settle_s:
        return 0
    return max(0, lease.vram - used.get((lease.run_id, gpu), 0))


def outstanding_ram(lease: Lease, now: float, settle_s: float) -> int:
    """Host RAM of ``lease`` still reserved (all of it until the settle window passes)."""
    return 0 if now - lease.admitted_at >= settle_s else lease.ram


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _typed(d: dict[str, Any], key: str, kind: type, default: Any = ...) -> Any:
    value = d.get(key)
    if value is None:
        if default is ...:
            raise ShapeError(f"missing {key!r}")
        return default
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ShapeError(f"{key!r} has the wrong type")
    return value


def _nonneg_int(d: dict[str, Any], key: str) -> int:
    value = d.get(key, 0)
    if not _is_int(value) or value < 0:
        raise ShapeError(f"{key!r} must be a whole number >= 0")
    return int(value)


def _finite(d: dict[str, Any], key: str) -> float:
    value = d.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ShapeError(f"{key!r} must be a finite number")
    return float(value)
