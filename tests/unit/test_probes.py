"""Probes: the fake NVML, the real NVML adapter over a stand-in module, the no-driver path,
mapping GPU processes to runs, the host; and, with a GPU, the real thing."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

import pytest

from governor.fake_nvml import FakeNvml
from governor.probes import (
    GpuInfo,
    GpuProcess,
    GpuSnapshot,
    NvmlUnavailable,
    RealNvml,
    default_nvml,
    probe_gpus,
    probe_host,
)

GIB = 1 << 30


# --- the fake ---------------------------------------------------------------------------------


def test_fake_from_dicts_and_gpuinfo_and_mutations() -> None:
    given = GpuInfo(
        index=9,
        uuid="GPU-x",
        name="X",
        pci_bus_id="b",
        memory_total=8 * GIB,
        memory_used=GIB,
        memory_free=7 * GIB,
    )
    fake = FakeNvml(
        [
            {
                "name": "A100",
                "memory_total": 40 * GIB,
                "memory_used": 4 * GIB,
                "processes": [{"pid": 5, "memory": GIB, "run_id": "000001"}],
            },
            given,
        ]
    )
    snap = probe_gpus(nvml=fake, resolve_run=None)
    assert snap.error is None
    a, x = snap.gpus
    assert (a.index, a.name, a.memory_free, a.uuid) == (0, "A100", 36 * GIB, "GPU-fake-0000")
    assert a.processes == (GpuProcess(pid=5, memory=GIB, run_id="000001"),)
    assert x.index == 1 and x.uuid == "GPU-x"  # the list order gives the index
    fake.add_process(1, pid=7, memory=2 * GIB)
    fake.set_temperature(0, 88.0)
    a, x = probe_gpus(nvml=fake, resolve_run=None).gpus
    assert a.temperature == 88.0
    assert (x.memory_used, x.memory_free) == (3 * GIB, 5 * GIB)
    fake.remove_process(1, 7)
    fake.set_memory_used(0, 0)
    a, x = probe_gpus(nvml=fake, resolve_run=None).gpus
    assert x.processes == () and x.memory_used == GIB and a.memory_free == 40 * GIB


def test_fake_without_driver_and_with_no_gpu() -> None:
    assert probe_gpus(nvml=FakeNvml(error="NVML Shared Library Not Found")) == GpuSnapshot(
        gpus=(), error="NVML Shared Library Not Found"
    )
    assert probe_gpus(nvml=FakeNvml([])) == GpuSnapshot(gpus=(), error="NVML found no GPU")


def test_unmapped_processes_are_resolved_and_known_ones_kept() -> None:
    fake = FakeNvml(
        [{"processes": [{"pid": 1, "memory": 1}, {"pid": 2, "memory": 2, "run_id": "000009"}]}]
    )
    seen: list[int] = []

    def resolve(pid: int) -> str | None:
        seen.append(pid)
        return "000004"

    (g,) = probe_gpus(nvml=fake, resolve_run=resolve).gpus
    assert [p.run_id for p in g.processes] == ["000004", "000009"]
    assert seen == [1]


def test_one_broken_gpu_does_not_hide_the_others() -> None:
    class Flaky(FakeNvml):
        def read_device(self, index: int) -> GpuInfo:
            if index == 1:
                raise RuntimeError("GPU is lost")
            return super().read_device(index)

    snap = probe_gpus(nvml=Flaky([{}, {}, {}]), resolve_run=None)
    assert [g.index for g in snap.gpus] == [0, 2]
    assert snap.error == "GPU 1: GPU is lost"


def test_a_probe_that_explodes_reads_as_no_gpu() -> None:
    class Broken(FakeNvml):
        def device_count(self) -> int:
            raise OSError("boom")

    assert probe_gpus(nvml=Broken([{}])) == GpuSnapshot(error="OSError: boom")


# --- the real adapter over a stand-in pynvml --------------------------------------------------


class NVMLError(Exception):
    pass


class NotSupported(NVMLError):
    pass


class StubPynvml:
    """The functions RealNvml calls, counting them; errors like the real module's."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, gpus: int = 2, fail_init: Exception | None = None) -> None:
        self.calls: dict[str, int] = {}
        self.gpus = gpus
        self.fail_init = fail_init
        self.used = [GIB, 2 * GIB]

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def nvmlInit(self) -> None:
        self._count("init")
        if self.fail_init:
            raise self.fail_init

    def nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Any:
        self._count("handle")
        return ("h", i)

    def nvmlDeviceGetUUID(self, h: Any) -> bytes:
        self._count("uuid")
        return f"GPU-{h[1]}".encode()  # older bindings return bytes

    def nvmlDeviceGetName(self, h: Any) -> str:
        return "NVIDIA Stub"

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        return SimpleNamespace(busId=f"00000000:0{h[1]}:00.0".encode())

    def nvmlDeviceGetMemoryInfo(self, h: Any) -> Any:
        used = self.used[h[1]]
        return SimpleNamespace(total=16 * GIB, used=used, free=16 * GIB - used)

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        return SimpleNamespace(gpu=37)

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        return 61

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        if h[1] == 1:
            raise NotSupported("Not Supported")
        return 123_456

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[Any]:
        if h[1] == 1:
            return [SimpleNamespace(pid=44, usedGpuMemory=None)]  # no permission to see it
        return [SimpleNamespace(pid=42, usedGpuMemory=GIB)]


def test_real_adapter_reads_every_field_and_caches_handles() -> None:
    stub = StubPynvml()
    nv = RealNvml(module=stub)
    first = probe_gpus(nvml=nv, resolve_run=lambda pid: "000042" if pid == 42 else None)
    stub.used[0] = 3 * GIB
    second = probe_gpus(nvml=nv, resolve_run=None)
    assert first.error is None
    g0, g1 = first.gpus
    assert g0 == GpuInfo(
        index=0,
        uuid="GPU-0",
        name="NVIDIA Stub",
        pci_bus_id="00000000:00:00.0",
        memory_total=16 * GIB,
        memory_used=GIB,
        memory_free=15 * GIB,
        utilization=37.0,
        temperature=61.0,
        power_w=123.456,
        processes=(GpuProcess(pid=42, memory=GIB, run_id="000042"),),
    )
    assert g1.power_w is None  # not supported on that device
    assert g1.processes == (GpuProcess(pid=44, memory=0, run_id=None),)
    assert second.gpus[0].memory_used == 3 * GIB  # dynamic values are read each time
    assert stub.calls == {"init": 1, "handle": 2, "uuid": 2}  # static ones once


def test_real_adapter_remembers_a_failed_init() -> None:
    stub = StubPynvml(fail_init=NVMLError("NVML Shared Library Not Found"))
    nv = RealNvml(module=stub)
    for _ in range(3):
        assert probe_gpus(nvml=nv) == GpuSnapshot(error="NVML Shared Library Not Found")
    assert stub.calls == {"init": 1}
    with pytest.raises(NvmlUnavailable):
        nv.init()


def test_real_adapter_without_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    assert probe_gpus(nvml=RealNvml()) == GpuSnapshot(error="nvidia-ml-py is not installed")


def test_default_probe_never_raises_and_is_cheap_after_the_first() -> None:
    first = probe_gpus()
    assert default_nvml() is default_nvml()
    t = time.perf_counter()
    for _ in range(100):
        again = probe_gpus()
    per_call = (time.perf_counter() - t) / 100
    if first.error is not None:  # this machine: no driver
        assert first.gpus == () and again == first
        assert per_call < 0.005
    else:
        assert first.gpus


# --- processes to runs ------------------------------------------------------------------------


def test_probe_host() -> None:
    h = probe_host()
    assert h.cpu_count >= 1 and 0 < h.ram_available <= h.ram_total
    assert h.load1 >= 0 and 0 <= h.cpu_percent <= 100
    assert 0 <= probe_host(sample_s=0.05).cpu_percent <= 100


# --- the real NVML (needs a GPU and a driver) ---------------------------------------------------


def _real_nvml_or_skip() -> RealNvml:
    nv = RealNvml()
    try:
        nv.init()
    except NvmlUnavailable as exc:
        pytest.skip(f"no NVML: {exc}")
    return nv


@pytest.mark.gpu
def test_real_nvml_reads_the_gpus() -> None:
    nv = _real_nvml_or_skip()
    snap = probe_gpus(nvml=nv)
    assert snap.gpus, snap.error
    assert [g.index for g in snap.gpus] == list(range(len(snap.gpus)))
    for g in snap.gpus:
        assert g.uuid.startswith("GPU-") and g.name and g.pci_bus_id
        assert g.memory_total > 0 and 0 <= g.memory_free <= g.memory_total
        assert 0 <= g.memory_used <= g.memory_total
        assert g.temperature is None or 0 < g.temperature < 130
        for p in g.processes:
            assert p.pid > 0 and p.memory >= 0
    again = probe_gpus(nvml=nv)
    assert [g.uuid for g in again.gpus] == [g.uuid for g in snap.gpus]


@pytest.mark.gpu
def test_real_nvml_status_and_placement(tmp_path: Any) -> None:
    from governor.admit_round import Round
    from governor.dispatcher import default_snapshot
    from governor.settings import GovernorSettings
    from governor.status import status_report
    from runner.config import Config
    from runner.model import Resources, RunSpec
    from runner.registry import Registry

    _real_nvml_or_skip()
    reg = Registry(tmp_path)
    rep = status_report(reg, Config())
    assert rep["gpus"] and rep["gpu_error"] is None
    run_id = reg.allocate_id()
    spec = RunSpec(
        id=run_id,
        name="gpu",
        command=("true",),
        cwd="/",
        created_at=time.time(),
        resources=Resources(gpus=1, vram_bytes=1 << 20),
    )
    reg.create(spec)
    from runner.tickets import Queue, Ticket, enqueue

    queue = Queue(reg.root)
    enqueue(queue, Ticket(run_id=run_id, attempt=1, queued_at=spec.created_at))
    res = Round(reg, GovernorSettings(), default_snapshot).run()
    assert res.started == [(run_id, 1)]
    a = queue.read_ticket(run_id)
    assert a is not None and a.kind == "admitted", a
    assert a.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert a.env["CUDA_VISIBLE_DEVICES"] == str(a.gpus[0])
