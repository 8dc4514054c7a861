"""A fake NVML for tests, screenshots and benchmarks: GPUs you describe and change at will.

>>> from governor.fake_nvml import FakeNvml
>>> from governor.probes import probe_gpus
>>> fake = FakeNvml([{"name": "Fake A100", "memory_total": 40 << 30}, {"memory_used": 1 << 30}])
>>> fake.add_process(0, pid=4242, memory=3 << 30, run_id="000007")
>>> [g.memory_used >> 30 for g in probe_gpus(nvml=fake).gpus]
[3, 1]
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from governor.probes import GpuInfo, GpuProcess, NvmlUnavailable

GIB = 1 << 30

_DEFAULTS: dict[str, Any] = {
    "name": "Fake GPU",
    "memory_total": 24 * GIB,
    "memory_used": 0,
    "utilization": 0.0,
    "temperature": 40.0,
    "power_w": 60.0,
}


def _gpu_from(index: int, value: GpuInfo | Mapping[str, Any]) -> GpuInfo:
    if isinstance(value, GpuInfo):
        return replace(value, index=index)
    d = {**_DEFAULTS, **value}
    total = int(d["memory_total"])
    used = int(d["memory_used"])
    procs = tuple(
        p
        if isinstance(p, GpuProcess)
        else GpuProcess(pid=int(p["pid"]), memory=int(p["memory"]), run_id=p.get("run_id"))
        for p in d.get("processes", ())
    )
    return GpuInfo(
        index=index,
        uuid=str(d.get("uuid", f"GPU-fake-{index:04d}")),
        name=str(d["name"]),
        pci_bus_id=str(d.get("pci_bus_id", f"00000000:{index + 1:02X}:00.0")),
        memory_total=total,
        memory_used=used,
        memory_free=max(0, total - used),
        utilization=d["utilization"],
        temperature=d["temperature"],
        power_w=d["power_w"],
        processes=procs,
    )


class FakeNvml:
    """An :class:`governor.probes.NvmlLike` over GPUs held in memory (thread-safe).

    Args:
        gpus: one entry per GPU, either a :class:`GpuInfo` or a dict with any of ``name``,
            ``uuid``, ``pci_bus_id``, ``memory_total``, ``memory_used``, ``utilization``,
            ``temperature``, ``power_w`` and ``processes`` (dicts with ``pid``, ``memory``
            and optionally ``run_id``). Indices follow the list order.
        error: when set, the fake behaves like a machine without a driver.
    """

    def __init__(
        self, gpus: Iterable[GpuInfo | Mapping[str, Any]] = (), *, error: str | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._gpus = [_gpu_from(i, g) for i, g in enumerate(gpus)]
        self.error = error
        self.reads = 0

    @classmethod
    def from_file(cls, path: str) -> FakeNvml:
        """The fake a JSON file describes (``BACKPROP_FAKE_NVML``).

        The file holds a list of GPUs as the constructor takes them, or an object with
        ``gpus`` and optionally ``error``. A file that cannot be read or parsed gives a fake
        without a driver whose error says why, so a typo shows in the footer, never a crash.
        """
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            if isinstance(data, list):
                data = {"gpus": data}
            if not isinstance(data, dict) or not isinstance(data.get("gpus", []), list):
                raise ValueError("expected a list of GPUs or an object with 'gpus'")
            error = data.get("error")
            return cls(data.get("gpus", []), error=None if error is None else str(error))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            return cls(error=f"fake NVML {path}: {exc}")

    # --- NvmlLike ----------------------------------------------------------------------------

    def init(self) -> None:
        """Succeed, or raise :class:`NvmlUnavailable` when an error is set."""
        if self.error is not None:
            raise NvmlUnavailable(self.error)

    def device_count(self) -> int:
        """How many GPUs the fake has."""
        with self._lock:
            return len(self._gpus)

    def read_device(self, index: int) -> GpuInfo:
        """The GPU as it is now."""
        with self._lock:
            self.reads += 1
            return self._gpus[index]

    # --- changing the fake -------------------------------------------------------------------

    def gpu(self, index: int) -> GpuInfo:
        """The GPU as it is now (same as :meth:`read_device`, without counting a read)."""
        with self._lock:
            return self._gpus[index]

    def update(self, index: int, **changes: Any) -> None:
        """Replace fields of one GPU (``memory_free`` follows ``memory_used``/``memory_total``)."""
        with self._lock:
            g = replace(self._gpus[index], **changes)
            if "memory_free" not in changes:
                g = replace(g, memory_free=max(0, g.memory_total - g.memory_used))
            self._gpus[index] = g

    def set_memory_used(self, index: int, used: int) -> None:
        """Set the memory in use on one GPU."""
        self.update(index, memory_used=used)

    def set_temperature(self, index: int, celsius: float | None) -> None:
        """Set one GPU's temperature."""
        self.update(index, temperature=celsius)

    def add_process(
        self, index: int, pid: int, memory: int, *, run_id: str | None = None, account: bool = True
    ) -> None:
        """Put a compute process on a GPU (its memory counts as used unless ``account=False``)."""
        with self._lock:
            g = self._gpus[index]
            used = g.memory_used + (memory if account else 0)
            self._gpus[index] = replace(
                g,
                processes=(*g.processes, GpuProcess(pid=pid, memory=memory, run_id=run_id)),
                memory_used=used,
                memory_free=max(0, g.memory_total - used),
            )

    def remove_process(self, index: int, pid: int, *, account: bool = True) -> None:
        """Take a process off a GPU (its memory is freed unless ``account=False``)."""
        with self._lock:
            g = self._gpus[index]
            gone = sum(p.memory for p in g.processes if p.pid == pid)
            used = max(0, g.memory_used - (gone if account else 0))
            self._gpus[index] = replace(
                g,
                processes=tuple(p for p in g.processes if p.pid != pid),
                memory_used=used,
                memory_free=max(0, g.memory_total - used),
            )
