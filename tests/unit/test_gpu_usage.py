"""The supervisor's sample of its own run's GPU memory (issue 15; NVML faked)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runner.gpu_usage import GPU_FILE, FakeProcesses, GpuSampler, NvmlProcesses, Unavailable

GIB = 1 << 30


def _fake(path: Path, gpus: Any) -> FakeProcesses:
    path.write_text(json.dumps(gpus))
    return FakeProcesses(str(path))


def _read(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / GPU_FILE).read_text())
    assert isinstance(data, dict)
    return data


def test_only_the_runs_own_processes_count_and_only_changes_are_written(tmp_path: Path) -> None:
    gpus = tmp_path / "gpus.json"
    source = _fake(gpus, [{"processes": [{"pid": 999, "memory": 5 * GIB}]}, {"name": "B"}])
    tree = {100, 101}
    s = GpuSampler(tmp_path, host="node7", pids=lambda: tree, source=source, every_s=5)
    s.maybe_sample(0.0)
    assert not (tmp_path / GPU_FILE).exists()  # a GPU run's memory appears later: nothing yet
    _fake(
        gpus,
        [
            {"processes": [{"pid": 999, "memory": 5 * GIB}, {"pid": 101, "memory": 2 * GIB}]},
            {"name": "B", "uuid": "GPU-b", "processes": [{"pid": 100, "memory": GIB}]},
        ],
    )
    s.maybe_sample(1.0)  # not due
    assert not (tmp_path / GPU_FILE).exists()
    s.maybe_sample(5.0)
    data = _read(tmp_path)
    assert data["host"] == "node7" and data["at"] == 5.0
    assert data["used_bytes"] == 3 * GIB
    assert [(d["index"], d["used_bytes"]) for d in data["devices"]] == [(0, 2 * GIB), (1, GIB)]
    assert data["devices"][1]["uuid"] == "GPU-b" and data["devices"][0]["total_bytes"] == 24 * GIB
    (tmp_path / GPU_FILE).unlink()
    s.maybe_sample(10.0)  # unchanged: not written again
    assert not (tmp_path / GPU_FILE).exists()
    _fake(gpus, [{"processes": [{"pid": 101, "memory": GIB}]}, {}])
    s.maybe_sample(15.0)
    data = _read(tmp_path)
    assert [(d["used_bytes"], d["peak_bytes"]) for d in data["devices"]] == [
        (GIB, 2 * GIB),
        (0, GIB),
    ]
    assert data["peak_bytes"] == 3 * GIB


@pytest.mark.parametrize("content", ['{"error": "no driver"}', "not json", "[]"])
def test_no_nvml_or_no_gpu_writes_nothing_and_stops_asking(tmp_path: Path, content: str) -> None:
    (tmp_path / "gpus.json").write_text(content)
    source = FakeProcesses(str(tmp_path / "gpus.json"))
    s = GpuSampler(tmp_path, host="h", pids=lambda: {1}, source=source, every_s=1)
    s.maybe_sample(0.0)
    assert s.disabled
    (tmp_path / "gpus.json").write_text(json.dumps([{"processes": [{"pid": 1, "memory": 9}]}]))
    s.maybe_sample(5.0)
    assert not (tmp_path / GPU_FILE).exists()


def test_a_passing_failure_is_tried_again(tmp_path: Path) -> None:
    class Flaky:
        n = 0

        def read(self) -> list[Any]:
            self.n += 1
            if self.n == 1:
                raise RuntimeError("GPU is lost")
            return FakeProcesses.read(
                _fake(tmp_path / "g.json", [{"processes": [{"pid": 1, "memory": 7}]}])
            )

    s = GpuSampler(tmp_path, host="h", pids=lambda: {1}, source=Flaky(), every_s=1)
    s.maybe_sample(0.0)
    assert s.disabled is None and s.last_error and "GPU is lost" in s.last_error
    s.maybe_sample(1.0)
    assert _read(tmp_path)["used_bytes"] == 7


def test_the_real_reader_over_a_pynvml_lookalike() -> None:
    handles = ["h0", "h1"]
    nv = SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlDeviceGetCount=lambda: 2,
        nvmlDeviceGetHandleByIndex=lambda i: handles[i],
        nvmlDeviceGetMemoryInfo=lambda h: SimpleNamespace(total=80 * GIB),
        nvmlDeviceGetUUID=lambda h: f"GPU-{h}".encode(),
        nvmlDeviceGetName=lambda h: b"NVIDIA H100",
        nvmlDeviceGetComputeRunningProcesses=lambda h: (
            [SimpleNamespace(pid=5, usedGpuMemory=GIB), SimpleNamespace(pid=6, usedGpuMemory=None)]
            if h == "h0"
            else (_ for _ in ()).throw(RuntimeError("NotSupported"))
        ),
    )
    devices = NvmlProcesses(nv).read()
    assert [(d.uuid, d.name, d.processes) for d in devices] == [
        ("GPU-h0", "NVIDIA H100", ((5, GIB), (6, 0))),
        ("GPU-h1", "NVIDIA H100", ()),
    ]


def test_a_machine_without_a_driver_is_unavailable() -> None:
    def no_driver() -> None:
        raise OSError("NVML Shared Library Not Found")

    with pytest.raises(Unavailable, match="Shared Library"):
        NvmlProcesses(SimpleNamespace(nvmlInit=no_driver)).read()
