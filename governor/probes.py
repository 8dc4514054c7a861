"""Resource probes: the host through psutil, GPUs through NVML behind a small protocol.

The data types here are the contract shared by the governor, ``backprop status`` and the
TUI's GPU footer. A missing driver or no GPU reads as ``GpuSnapshot(gpus=(), error=reason)``,
never as an exception.

NVML is reached through :class:`NvmlLike`, a three-method protocol. :class:`RealNvml` wraps
``pynvml`` (from the ``nvidia-ml-py`` package): it initialises NVML once per process, caches
device handles and the static facts of each device, and remembers a failed initialisation
instead of retrying it on every probe. Tests pass :class:`governor.fake_nvml.FakeNvml`.

Compute processes are mapped back to runs through their process group: the supervisor starts
each trainer as the leader of its own group with ``BACKPROP_RUN_ID`` in its environment, so a
GPU process belongs to run X when the leader of its process group says ``BACKPROP_RUN_ID=X``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from runner import envnames
from runner.model import ID_RE


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
    """All GPUs at one moment, or why there are none.

    ``error`` is set when NVML is unusable (then ``gpus`` is empty) and also when single
    devices could not be read (then ``gpus`` holds the readable ones).
    """

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


class NvmlUnavailable(Exception):
    """NVML cannot be used on this machine (no library, no driver, no permission)."""


class NvmlLike(Protocol):
    """The little of NVML the probes need. Every method may raise any exception."""

    def init(self) -> None:
        """Make the library usable (idempotent); raise :class:`NvmlUnavailable` if it is not."""

    def device_count(self) -> int:
        """How many GPUs there are."""

    def read_device(self, index: int) -> GpuInfo:
        """Read one GPU now (``run_id`` of its processes may be left ``None``)."""


# --- the real NVML ----------------------------------------------------------------------------

# What pynvml says when the driver's library is missing (NVMLError_LibraryNotFound).
NO_LIBRARY = "NVML Shared Library Not Found"
NOT_INSTALLED = "nvidia-ml-py is not installed"
_NVML_SONAME = "libnvidia-ml.so.1"  # what pynvml itself loads on Linux


def _nvml_library_present() -> bool:
    """Whether the driver's NVML library loads (pynvml would load this very file).

    Asked before importing ``pynvml``: on a host without the driver, the module's import is
    ~45 ms and ~3 MB for an answer this gives in well under a millisecond. The submitting
    command, the dispatcher and every supervisor forked from them carry that memory.
    """
    if sys.platform != "linux":
        return True  # pynvml knows where the library lives elsewhere
    import ctypes

    try:
        ctypes.CDLL(_NVML_SONAME)
    except OSError:
        return False
    return True


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class _Static:
    handle: Any
    uuid: str
    name: str
    pci_bus_id: str


class RealNvml:
    """NVML through ``pynvml``: initialised once, handles and static facts cached.

    Args:
        module: the ``pynvml`` module, or a stand-in with the same functions (tests).
    """

    def __init__(self, module: Any | None = None) -> None:
        self._module: Any = module
        self._lock = threading.Lock()
        self._ready = False
        self._error: str | None = None
        self._count = 0
        self._static: dict[int, _Static] = {}
        self._memory_v2: bool | None = None  # None: not tried yet

    def init(self) -> None:
        """Initialise NVML the first time; afterwards repeat the first outcome."""
        with self._lock:
            if self._ready:
                return
            if self._error is not None:
                raise NvmlUnavailable(self._error)
            if self._module is None and not _nvml_library_present():
                from importlib.util import find_spec

                installed = find_spec("pynvml") is not None  # found, not imported
                self._error = NO_LIBRARY if installed else NOT_INSTALLED
                raise NvmlUnavailable(self._error)
            try:
                if self._module is None:
                    import pynvml

                    self._module = pynvml
                self._module.nvmlInit()
                self._count = int(self._module.nvmlDeviceGetCount())
            except ImportError:
                self._error = NOT_INSTALLED
            except Exception as exc:  # NVMLError and its many subclasses; never propagate
                self._error = str(exc) or type(exc).__name__
            else:
                self._ready = True
                return
        raise NvmlUnavailable(self._error)

    def device_count(self) -> int:
        """The number of GPUs NVML saw at initialisation."""
        return self._count

    def _static_of(self, index: int) -> _Static:
        cached = self._static.get(index)
        if cached is not None:
            return cached
        nv = self._module
        handle = nv.nvmlDeviceGetHandleByIndex(index)
        static = _Static(
            handle=handle,
            uuid=_text(nv.nvmlDeviceGetUUID(handle)),
            name=_text(nv.nvmlDeviceGetName(handle)),
            pci_bus_id=_text(nv.nvmlDeviceGetPciInfo(handle).busId),
        )
        with self._lock:
            self._static[index] = static
        return static

    def read_device(self, index: int) -> GpuInfo:
        """Read one GPU; values a device does not support read as ``None``."""
        nv = self._module
        static = self._static_of(index)
        h = static.handle
        mem = self._memory(h)
        util = _optional(lambda: float(nv.nvmlDeviceGetUtilizationRates(h).gpu))
        temp = _optional(lambda: float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
        power = _optional(lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0)
        procs = _optional(lambda: nv.nvmlDeviceGetComputeRunningProcesses(h)) or []
        return GpuInfo(
            index=index,
            uuid=static.uuid,
            name=static.name,
            pci_bus_id=static.pci_bus_id,
            memory_total=int(mem.total),
            memory_used=int(mem.used),
            memory_free=int(mem.free),
            utilization=util,
            temperature=temp,
            power_w=power,
            processes=tuple(
                GpuProcess(pid=int(p.pid), memory=int(getattr(p, "usedGpuMemory", None) or 0))
                for p in procs
            ),
        )

    def _memory(self, handle: Any) -> Any:
        """Memory as ``nvidia-smi`` reports it: version 2 where the driver has it.

        Version 1 counts the memory the driver reserves for itself (about 0.5 GiB on an
        H100) as used; version 2 and ``nvidia-smi`` do not, so an idle GPU reads 0 used.
        """
        nv = self._module
        if self._memory_v2 is not False:
            version = getattr(nv, "nvmlMemory_v2", None)
            if version is not None:
                try:
                    mem = nv.nvmlDeviceGetMemoryInfo(handle, version=version)
                except Exception:  # an older driver or binding: fall back for good
                    self._memory_v2 = False
                else:
                    self._memory_v2 = True
                    return mem
            else:
                self._memory_v2 = False
        return nv.nvmlDeviceGetMemoryInfo(handle)


def _optional(read: Callable[[], Any]) -> Any:
    """A reading some devices do not support (NotSupported, NoPermission): ``None`` then."""
    try:
        return read()
    except Exception:
        return None


_default_nvml: NvmlLike | None = None
_default_lock = threading.Lock()

# Names a JSON file of fake GPUs (see :meth:`governor.fake_nvml.FakeNvml.from_file`) that every
# Backprop process reads instead of NVML: how the CPU suite drives `bench/gpu_check.sh`, the
# supervisors and the TUI through GPU paths on a machine without one.
FAKE_NVML_ENV = envnames.FAKE_NVML
_RUN_ID_PREFIX = f"{envnames.RUN_ID}=".encode()


def default_nvml() -> NvmlLike:
    """The process-wide NVML (initialised once per process).

    With ``BACKPROP_FAKE_NVML`` set, the fake GPUs that file describes (read once).
    """
    global _default_nvml
    with _default_lock:
        if _default_nvml is None:
            fake = os.environ.get(FAKE_NVML_ENV)
            if fake:
                from governor.fake_nvml import FakeNvml

                _default_nvml = FakeNvml.from_file(fake)
            else:
                _default_nvml = RealNvml()
        return _default_nvml


# --- mapping processes to runs ----------------------------------------------------------------

_RUN_CACHE_MAX = 512
_run_cache: dict[tuple[int, int], str | None] = {}


def _start_ticks(pid: int) -> int | None:
    from runner.identity import start_ticks

    return start_ticks(pid)


def run_of_pid(pid: int) -> str | None:
    """The run a process belongs to, through the environment of its process-group leader.

    Processes of other users (unreadable environment), of other pid namespaces and of no
    run read as ``None``. Results are cached per (group leader, start time).
    """
    try:
        pgid = os.getpgid(pid)
    except (ProcessLookupError, PermissionError, OSError):
        return None
    ticks = _start_ticks(pgid)
    if ticks is None:
        return None
    key = (pgid, ticks)
    if key in _run_cache:
        return _run_cache[key]
    run_id: str | None = None
    try:
        with open(f"/proc/{pgid}/environ", "rb") as f:
            env = f.read(1 << 20)
    except OSError:
        env = b""
    for item in env.split(b"\0"):
        if item.startswith(_RUN_ID_PREFIX):
            value = item[len(_RUN_ID_PREFIX) :].decode("ascii", "replace")
            run_id = value if ID_RE.fullmatch(value) else None
            break
    if len(_run_cache) >= _RUN_CACHE_MAX:
        _run_cache.clear()
    _run_cache[key] = run_id
    return run_id


# --- probes -----------------------------------------------------------------------------------


def probe_gpus(
    nvml: NvmlLike | None = None,
    *,
    resolve_run: Callable[[int], str | None] | None = run_of_pid,
) -> GpuSnapshot:
    """All GPUs now; never raises.

    Args:
        nvml: where to read from (default: the process-wide real NVML).
        resolve_run: maps a pid to a run id for processes whose ``run_id`` is not known yet;
            ``None`` leaves them unmapped.

    Returns:
        The GPUs, or an empty snapshot with the reason (``"NVML Shared Library Not Found"``).
    """
    source: NvmlLike = nvml if nvml is not None else default_nvml()
    try:
        source.init()
        count = source.device_count()
    except NvmlUnavailable as exc:
        return GpuSnapshot(error=str(exc) or "NVML unavailable")
    except Exception as exc:
        return GpuSnapshot(error=f"{type(exc).__name__}: {exc}")
    if count == 0:
        return GpuSnapshot(error="NVML found no GPU")
    gpus: list[GpuInfo] = []
    problems: list[str] = []
    for index in range(count):
        try:
            info = source.read_device(index)
        except Exception as exc:  # a GPU fallen off the bus must not hide the others
            problems.append(f"GPU {index}: {exc or type(exc).__name__}")
            continue
        if resolve_run is not None and any(p.run_id is None for p in info.processes):
            info = replace(
                info,
                processes=tuple(
                    p if p.run_id is not None else replace(p, run_id=resolve_run(p.pid))
                    for p in info.processes
                ),
            )
        gpus.append(info)
    return GpuSnapshot(gpus=tuple(gpus), error="; ".join(problems) or None)


def probe_host(sample_s: float = 0.0) -> HostInfo:
    """The host now: CPU (percent busy, 1-minute load) and RAM.

    Args:
        sample_s: measure CPU busy over this many seconds (blocking); 0 reports the share
            since this process's previous call (the first call in a process reads 0).
    """
    import psutil

    vm = psutil.virtual_memory()
    return HostInfo(
        cpu_percent=float(psutil.cpu_percent(interval=sample_s if sample_s > 0 else None)),
        load1=os.getloadavg()[0],
        cpu_count=os.cpu_count() or 1,
        ram_total=int(vm.total),
        ram_available=int(vm.available),
    )
