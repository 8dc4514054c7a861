"""Resource probes: the host through psutil, GPUs through NVML (placeholder implementation).

The data types here are the contract shared by the governor, ``backprop status`` and the
TUI's GPU footer. A missing driver or no GPU reads as ``GpuSnapshot(gpus=(), error=reason)``,
never as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuProcess:
    """A compute process on a GPU, with the run it belongs to when it is one of ours."""

    pid: int
    memory: int
    run_id: str | None = None


@dataclass(frozen=True)
class GpuInfo:
    """One GPU at one moment."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str
    memory_total: int
    memory_used: int
    memory_free: int
    utilization: float | None = None
    temperature: float | None = None
    power_w: float | None = None
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True)
class GpuSnapshot:
    """All GPUs at one moment, or why there are none."""

    gpus: tuple[GpuInfo, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class HostInfo:
    """The host at one moment."""

    cpu_percent: float
    load1: float
    cpu_count: int
    ram_total: int
    ram_available: int


def probe_gpus() -> GpuSnapshot:
    """All GPUs now (placeholder: none)."""
    return GpuSnapshot(error="NVML probe not implemented yet")


def probe_host() -> HostInfo:
    """The host now."""
    import os

    import psutil

    vm = psutil.virtual_memory()
    return HostInfo(
        cpu_percent=psutil.cpu_percent(interval=None),
        load1=os.getloadavg()[0],
        cpu_count=os.cpu_count() or 1,
        ram_total=vm.total,
        ram_available=vm.available,
    )
