"""A run's own GPU memory, sampled by its supervisor on its node into ``gpu.json``.

The TUI's GPU footer probes the GPUs of the machine it runs on; a run on a Slurm or Ray node
is on other GPUs. So each supervisor asks NVML on its own node, every :data:`SAMPLE_S`
seconds while the trainer runs, which compute processes use which GPU, keeps those of its
own process tree, and writes what they use to the run folder (``gpu.json``)::

    {"schema": 1, "host": "node7", "at": 1765000000.0, "used_bytes": 123, "peak_bytes": 456,
     "devices": [{"index": 0, "uuid": "GPU-…", "name": "NVIDIA H100", "used_bytes": 123,
                  "peak_bytes": 456, "total_bytes": 85899345920}]}

so VRAM per run shows wherever the TUI runs. The file is written only when a value changed
and only once the run has used a GPU: no NVML, no GPU or a CPU-only run write nothing, and no
NVML error ever reaches the supervisor. NVML is initialised once per supervisor, lazily, at
the first sample after the trainer started.

This module is ``runner``'s own small NVML reader (``runner`` never imports ``governor``).
``BACKPROP_FAKE_NVML`` names the same JSON file of fake GPUs the governor's fake reads
(:mod:`governor.fake_nvml`): GPUs with ``processes`` of ``pid`` and ``memory``; the file is
read at every sample here, so a test can put a trainer's pid on a fake GPU while it runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner import envnames
from runner.durable import write_json

GPU_FILE = "gpu.json"
SAMPLE_S = 5.0
FAKE_NVML_ENV = envnames.FAKE_NVML


class Unavailable(Exception):
    """NVML cannot be used here (no library, no driver, a fake that says so)."""


@dataclass(frozen=True)
class DeviceProcesses:
    """One GPU and the memory each compute process uses on it."""

    index: int
    uuid: str
    name: str
    total: int
    processes: tuple[tuple[int, int], ...]  # (pid, bytes)


class ProcessSource(Protocol):
    """Reads every GPU's compute processes now.

    May raise anything (tried again later); :class:`Unavailable` means "never again".
    """

    def read(self) -> list[DeviceProcesses]:
        """Every GPU with its processes."""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvmlProcesses:
    """Compute processes through ``pynvml`` (``nvidia-ml-py``), initialised on first use."""

    def __init__(self, module: Any | None = None) -> None:
        self._nv: Any = module
        self._handles: list[tuple[Any, str, str, int]] | None = None

    def _init(self) -> list[tuple[Any, str, str, int]]:
        if self._handles is not None:
            return self._handles
        try:
            if self._nv is None:
                import pynvml

                self._nv = pynvml
            nv = self._nv
            nv.nvmlInit()
            handles = []
            for i in range(int(nv.nvmlDeviceGetCount())):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                total = int(nv.nvmlDeviceGetMemoryInfo(h).total)
                handles.append(
                    (h, _text(nv.nvmlDeviceGetUUID(h)), _text(nv.nvmlDeviceGetName(h)), total)
                )
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded…
            raise Unavailable(str(exc) or type(exc).__name__) from None
        self._handles = handles
        return handles

    def read(self) -> list[DeviceProcesses]:
        """Every GPU's compute processes (a device that cannot say reads as having none)."""
        out = []
        for index, (h, uuid, name, total) in enumerate(self._init()):
            try:
                procs = self._nv.nvmlDeviceGetComputeRunningProcesses(h)
            except Exception:
                procs = []
            pairs = tuple((int(p.pid), int(getattr(p, "usedGpuMemory", None) or 0)) for p in procs)
            out.append(DeviceProcesses(index, uuid, name, total, pairs))
        return out


class FakeProcesses:
    """The GPUs a ``BACKPROP_FAKE_NVML`` file describes, read again at every sample."""

    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> list[DeviceProcesses]:
        """The file's GPUs now; an ``error`` in it (or no file) means no NVML."""
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"fake NVML {self.path}: {exc}") from None
        if isinstance(data, list):
            data = {"gpus": data}
        if not isinstance(data, dict) or data.get("error") is not None:
            raise Unavailable(str(data.get("error") if isinstance(data, dict) else "malformed"))
        out = []
        for index, gpu in enumerate(data.get("gpus") or []):
            if not isinstance(gpu, dict):
                continue
            procs = tuple(
                (int(p["pid"]), int(p["memory"]))
                for p in gpu.get("processes") or ()
                if isinstance(p, dict) and "pid" in p and "memory" in p
            )
            out.append(
                DeviceProcesses(
                    index=index,
                    uuid=str(gpu.get("uuid", f"GPU-fake-{index:04d}")),
                    name=str(gpu.get("name", "Fake GPU")),
                    total=int(gpu.get("memory_total", 24 << 30)),
                    processes=procs,
                )
            )
        return out


NVIDIA_DRIVER = "/proc/driver/nvidia/version"


def default_source() -> ProcessSource:
    """The fake GPUs ``BACKPROP_FAKE_NVML`` names, else the real NVML.

    Without a loaded NVIDIA driver NVML cannot work: that is found with one ``stat``, so a
    supervisor on a machine without one never imports ``pynvml`` (about 5 MB and 0.1 s).
    """
    fake = os.environ.get(FAKE_NVML_ENV)
    if fake:
        return FakeProcesses(fake)
    if not os.path.exists(NVIDIA_DRIVER):
        raise Unavailable("no NVIDIA driver loaded")
    return NvmlProcesses()


def usage(devices: Sequence[DeviceProcesses], pids: set[int]) -> dict[int, int]:
    """Bytes used by ``pids`` on each device index (devices they do not use are left out)."""
    used: dict[int, int] = {}
    for dev in devices:
        mine = sum(mem for pid, mem in dev.processes if pid in pids)
        if mine > 0 or any(pid in pids for pid, _ in dev.processes):
            used[dev.index] = mine
    return used


class GpuSampler:
    """The supervisor's sampler: due every ``every_s``, writes ``gpu.json`` on change.

    Args:
        run_dir: the run folder.
        host: this host's name (recorded with the sample).
        pids: returns the pids of the run's process tree now.
        source: the NVML reader (default: :func:`default_source`, made at the first sample).
        every_s: the sampling interval.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        host: str,
        pids: Callable[[], set[int]],
        source: ProcessSource | None = None,
        every_s: float = SAMPLE_S,
    ) -> None:
        self.path = run_dir / GPU_FILE
        self.host = host
        self.pids = pids
        self.source = source
        self.every_s = every_s
        self.disabled: str | None = None  # why sampling stopped for good
        self.last_error: str | None = None  # the latest passing failure
        self._due = 0.0
        self._devices: dict[int, dict[str, Any]] = {}  # index -> the device's entry
        self._written: dict[int, int] | None = None

    def maybe_sample(self, now: float) -> None:
        """Sample when due. Never raises."""
        if self.disabled is not None or now < self._due:
            return
        self._due = now + self.every_s
        try:
            self.sample(now)
        except Unavailable as exc:
            self.disabled = str(exc) or "NVML unavailable"
        except Exception as exc:  # a driver hiccup: try again at the next interval
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]

    def sample(self, now: float) -> None:
        """Read NVML now and write ``gpu.json`` if the run's usage changed (may raise)."""
        if self.source is None:
            self.source = default_source()
        devices = self.source.read()
        if not devices:
            raise Unavailable("no GPU")
        used = usage(devices, self.pids())
        for dev in devices:
            entry = self._devices.get(dev.index)
            if dev.index not in used and entry is None:
                continue
            mine = used.get(dev.index, 0)
            if entry is None:
                entry = {"index": dev.index, "uuid": dev.uuid, "name": dev.name, "peak_bytes": 0}
                self._devices[dev.index] = entry
            entry.update(used_bytes=mine, total_bytes=dev.total)
            entry["peak_bytes"] = max(int(entry["peak_bytes"]), mine)
        now_used = {i: int(e["used_bytes"]) for i, e in self._devices.items()}
        if not self._devices or now_used == self._written:
            return
        record = {
            "schema": 1,
            "host": self.host,
            "at": now,
            "used_bytes": sum(now_used.values()),
            "peak_bytes": sum(int(e["peak_bytes"]) for e in self._devices.values()),
            "devices": [self._devices[i] for i in sorted(self._devices)],
        }
        try:
            write_json(self.path, record, durable=False, mode=0o644)  # a sample, not a record
        except OSError:
            return  # a full disk: the next change tries again
        self._written = now_used
