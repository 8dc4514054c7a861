"""The admission policy's inputs and output: a run's request, the machine, the answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from governor.bucket import BucketState
from governor.probes import GpuSnapshot, HostInfo
from runner.model import ShapeError, validate_run_id_shape


@dataclass(frozen=True)
class Request:
    """What one run asks for, resolved from its spec (:func:`governor.admit_round.build_request`).

    Attributes:
        run_id: the run.
        name: its display name.
        group: its group (``max_parallel_per_group``).
        gpus: GPUs wanted; ``None``: the default (``default_gpus`` if the machine has GPUs,
            else none with the environment left alone); 0: the CPU lane.
        gpu_ids: pinned GPU indices.
        vram: bytes per GPU; ``None``: ``default_vram``.
        vram_source: ``"requested"`` (--vram), ``"learned"`` (earlier runs) or ``"default"``.
        ram: host RAM bytes.
        visible: ``CUDA_VISIBLE_DEVICES`` from the run's environment, restricting placement
            (see :mod:`governor.visible`).
    """

    run_id: str
    name: str = ""
    group: str | None = None
    gpus: int | None = None
    gpu_ids: tuple[int, ...] | None = None
    vram: int | None = None
    vram_source: str = "requested"
    ram: int = 0
    visible: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (for the queue in the state file)."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "group": self.group,
            "gpus": self.gpus,
            "gpu_ids": list(self.gpu_ids) if self.gpu_ids is not None else None,
            "vram": self.vram,
            "vram_source": self.vram_source,
            "ram": self.ram,
            "visible": self.visible,
        }

    @classmethod
    def from_json(cls, d: Any) -> Request:
        """Parse strictly (raises :class:`ShapeError`)."""
        if not isinstance(d, dict):
            raise ShapeError("request is not an object")
        ids = d.get("gpu_ids")
        if ids is not None and (not isinstance(ids, list) or not all(_nonneg_int(i) for i in ids)):
            raise ShapeError("gpu_ids must be integers")
        for key in ("gpus", "vram"):
            if d.get(key) is not None and not _nonneg_int(d[key]):
                raise ShapeError(f"{key} must be a whole number >= 0")
        ram = d.get("ram", 0)
        if not _nonneg_int(ram):
            raise ShapeError("ram must be a whole number >= 0")
        name, group, source = d.get("name", ""), d.get("group"), d.get("vram_source", "requested")
        if not isinstance(name, str) or not (group is None or isinstance(group, str)):
            raise ShapeError("name and group must be strings")
        if source not in ("requested", "learned", "default"):
            raise ShapeError("unknown vram_source")
        visible = d.get("visible")
        if visible is not None and not isinstance(visible, str):
            raise ShapeError("visible must be a string")
        return cls(
            run_id=validate_run_id_shape(d.get("run_id")),  # type: ignore[arg-type]
            name=name,
            group=group,
            gpus=d.get("gpus"),
            gpu_ids=tuple(ids) if ids is not None else None,
            vram=d.get("vram"),
            vram_source=source,
            ram=int(ram),
            visible=visible,
        )


@dataclass(frozen=True)
class Snapshot:
    """The machine at one moment, as the probes saw it."""

    host: HostInfo
    gpus: GpuSnapshot
    now: float


@dataclass(frozen=True)
class Queued:
    """A run queued ahead of the one deciding, with when it started waiting."""

    request: Request
    since: float


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`admit`.

    Attributes:
        admitted: whether the run may start now.
        reason: one human line (why it waits, or where it goes).
        rule: a stable key for the rule that decided (``"ok"``, ``"forced"``,
            ``"max_parallel"``, ``"group"``, ``"ram"``, ``"load"``, ``"no-gpu"``,
            ``"gpu-missing"``, ``"gpu"``, ``"keep-free"``, ``"bucket"``, or
            ``"fifo:<run id>:<rule>"`` when a run ahead blocks).
        gpus: the GPUs chosen (admitted runs).
        vram: bytes to reserve on each chosen GPU.
        lane: ``"gpu"``, ``"cpu"`` (hide every GPU) or ``"any"`` (leave the environment be).
        bucket: the bucket after the decision (a token taken when admitted).
        retry_after_s: when a queued run should ask again.
        gpu_totals: total memory of each chosen GPU (for framework settings).
    """

    admitted: bool
    reason: str
    rule: str
    gpus: tuple[int, ...] = ()
    vram: int = 0
    lane: str = "any"
    bucket: BucketState | None = None
    retry_after_s: float = 1.0
    gpu_totals: tuple[int, ...] = ()


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
