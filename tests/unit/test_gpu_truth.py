"""What a real driver differs in, held with fakes: memory as nvidia-smi counts it (NVML's
version 2), CUDA_VISIBLE_DEVICES given as UUIDs, and the fake NVML every process can share
through ``BACKPROP_FAKE_NVML`` (how the CPU suite drives bench/gpu_check.sh)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from governor import probes, visible
from governor.bucket import BucketState
from governor.fake_nvml import FakeNvml
from governor.policy import admit
from governor.probes import GpuInfo, GpuSnapshot, HostInfo, RealNvml, probe_gpus
from governor.requests import Request, Snapshot
from governor.round_inputs import build_request
from governor.settings import GovernorSettings
from runner.control.submission import SubmitOptions
from runner.model import Resources, RunSpec

GIB = 1 << 30
MIB = 1 << 20
NOW = 10_000.0

# --- memory: version 2, as nvidia-smi reports it ----------------------------------------------


class Pynvml:
    """The few functions RealNvml calls; version 1 counts the driver's reserve as used."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, *, v2: bool | None) -> None:
        # v2 True: works; False: the binding has it but the driver refuses; None: no binding.
        if v2 is not None:
            self.nvmlMemory_v2 = 0x02000028
        self.v2_works = bool(v2)
        self.v2_calls = 0

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> Any:
        return i

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return "GPU-5b3f0a4e-0000-1111-2222-333344445555"

    def nvmlDeviceGetName(self, h: Any) -> str:
        return "NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        return SimpleNamespace(busId="00000000:01:00.0")

    def nvmlDeviceGetMemoryInfo(self, h: Any, version: int | None = None) -> Any:
        total = 81559 * MIB
        if version is None:
            return SimpleNamespace(total=total, used=531 * MIB, free=total - 531 * MIB)
        self.v2_calls += 1
        if not self.v2_works:
            raise RuntimeError("Function Not Found")
        return SimpleNamespace(total=total, reserved=531 * MIB, used=0, free=total - 531 * MIB)

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        return SimpleNamespace(gpu=0)

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        return 31

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        return 70_000

    def nvmlDeviceGetComputeRunningProcesses(self, h: Any) -> list[Any]:
        return []


def test_memory_is_read_as_nvidia_smi_reads_it_version_2() -> None:
    (g,) = probe_gpus(nvml=RealNvml(module=Pynvml(v2=True)), resolve_run=None).gpus
    # nvidia-smi on an idle H100: 0MiB / 81559MiB; version 1 would say 531 MiB used.
    assert (g.memory_used, g.memory_total) == (0, 81559 * MIB)
    assert g.memory_free == 81559 * MIB - 531 * MIB


@pytest.mark.parametrize("v2", [False, None])
def test_memory_falls_back_to_version_1_once(v2: bool | None) -> None:
    stub = Pynvml(v2=v2)
    nv = RealNvml(module=stub)
    for _ in range(3):
        (g,) = probe_gpus(nvml=nv, resolve_run=None).gpus
        assert g.memory_used == 531 * MIB
    assert stub.v2_calls == (1 if v2 is False else 0)  # a refusing driver is asked once


# --- the fake NVML shared through BACKPROP_FAKE_NVML -------------------------------------------


def test_fake_from_file_list_object_and_broken(tmp_path: Path) -> None:
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"name": "Fake H100", "memory_total": 80 * GIB}, {}]))
    snap = probe_gpus(nvml=FakeNvml.from_file(str(listed)), resolve_run=None)
    assert [g.name for g in snap.gpus] == ["Fake H100", "Fake GPU"] and snap.error is None
    obj = tmp_path / "obj.json"
    obj.write_text(json.dumps({"gpus": [], "error": "Driver Not Loaded"}))
    assert probe_gpus(nvml=FakeNvml.from_file(str(obj))).error == "Driver Not Loaded"
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    for path in (bad, tmp_path / "missing.json"):
        snap = probe_gpus(nvml=FakeNvml.from_file(str(path)))
        assert snap.gpus == () and snap.error and f"fake NVML {path}" in snap.error


def test_default_nvml_is_the_fake_when_the_variable_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tmp_path / "gpus.json"
    spec.write_text(json.dumps([{"name": "Fake H100", "uuid": "GPU-abc"}]))
    monkeypatch.setattr(probes, "_default_nvml", None)
    monkeypatch.setenv(probes.FAKE_NVML_ENV, str(spec))
    snap = probe_gpus(resolve_run=None)
    assert [(g.name, g.uuid) for g in snap.gpus] == [("Fake H100", "GPU-abc")]
    assert isinstance(probes.default_nvml(), FakeNvml)
    monkeypatch.setattr(probes, "_default_nvml", None)
    monkeypatch.delenv(probes.FAKE_NVML_ENV)
    assert isinstance(probes.default_nvml(), RealNvml)


# --- CUDA_VISIBLE_DEVICES as indices or UUIDs --------------------------------------------------


def gpu(index: int, uuid: str, free: int = 40 * GIB) -> GpuInfo:
    return GpuInfo(
        index=index,
        uuid=uuid,
        name="Test",
        pci_bus_id=f"0:{index}",
        memory_total=80 * GIB,
        memory_used=80 * GIB - free,
        memory_free=free,
        temperature=40,
    )


A = "GPU-5b3f0a4e-aaaa-1111-2222-333344445555"
B = "GPU-5b3f0a4e-bbbb-1111-2222-333344445555"
TWO = (gpu(0, A, free=70 * GIB), gpu(1, B, free=30 * GIB))


@pytest.mark.parametrize(
    ("value", "indices"),
    [
        ("1", (1,)),
        ("1,0,1", (1, 0)),
        (B, (1,)),
        (B.lower(), (1,)),
        ("GPU-5b3f0a4e-bb", (1,)),
        (f" {A} , 1 ", (0, 1)),
    ],
)
def test_resolve_indices_uuids_and_prefixes(value: str, indices: tuple[int, ...]) -> None:
    assert visible.resolve(value, TWO) == indices


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("MIG-7f3c1e2a-0000-1111-2222-333344445555", "MIG device"),
        ("GPU-5b3f0a4e", "matches 2 GPUs"),
        ("GPU-ffff", "not a GPU of this machine (GPUs here: 0 GPU-5b3f0a4e-aaaa"),
        ("2", "GPU 2, which this machine does not have"),
        ("-1", "neither a GPU index nor a GPU UUID"),
        ("cuda:0", "neither a GPU index nor a GPU UUID"),
    ],
)
def test_resolve_refuses_with_a_clear_reason(value: str, words: str) -> None:
    with pytest.raises(visible.VisibleDevicesError, match="CUDA_VISIBLE_DEVICES") as exc:
        visible.resolve(value, TWO)
    assert words in str(exc.value)


def test_blank_or_unset_restricts_nothing() -> None:
    assert visible.restriction({}) is None
    assert visible.restriction({"CUDA_VISIBLE_DEVICES": " "}) is None
    assert visible.restriction({"CUDA_VISIBLE_DEVICES": f" {B} "}) == B


SETTINGS = GovernorSettings(
    vram_margin=0, min_free_ram=0, default_vram=GIB, default_vram_fraction=None
)


def decide(request: Request, *, force: bool = False) -> Any:
    host = HostInfo(cpu_percent=0, load1=0, cpu_count=8, ram_total=64 * GIB, ram_available=64 * GIB)
    snap = Snapshot(host=host, gpus=GpuSnapshot(gpus=TWO), now=NOW)
    return admit(
        snap,
        request,
        leases=[],
        ahead=[],
        bucket=BucketState.full(8, NOW),
        settings=SETTINGS,
        force=force,
    )


def test_a_uuid_in_the_runs_environment_places_it_there_not_on_the_freest() -> None:
    assert decide(Request(run_id="000001", gpus=1)).gpus == (0,)  # the freest, unrestricted
    d = decide(Request(run_id="000001", gpus=1, visible=B))
    assert d.admitted and d.gpus == (1,) and d.lane == "gpu"
    assert decide(Request(run_id="000001", gpus=1, visible=B), force=True).gpus == (1,)


def test_a_uuid_not_on_this_machine_queues_with_the_reason() -> None:
    d = decide(Request(run_id="000001", gpus=1, visible="GPU-ffff"))
    assert not d.admitted and d.rule == "gpu-missing"
    assert d.reason.startswith("CUDA_VISIBLE_DEVICES names GPU-ffff, which is not a GPU")
    d = decide(Request(run_id="000001", gpus=1, gpu_ids=(0,), visible=B))
    assert not d.admitted and "pinned but not in the run's CUDA_VISIBLE_DEVICES" in d.reason
    d = decide(Request(run_id="000001", gpus=2, visible=B))
    assert not d.admitted and d.reason == "needs 2 GPUs; 1 on this machine"


def test_the_request_takes_the_restriction_from_the_runs_environment() -> None:
    spec = RunSpec(
        id="000003",
        name="t",
        command=("python3",),
        cwd="/",
        created_at=time.time(),
        env={"CUDA_VISIBLE_DEVICES": B},
        resources=Resources(gpus=1),
    )
    req = build_request(spec, SETTINGS, None)
    assert req.visible == B
    assert Request.from_json(req.to_json()) == req


def test_benchmarks_md_carries_the_gpu_check_section_the_bench_writes() -> None:
    from bench.gpu_poll import gpu_check_section

    root = Path(__file__).resolve().parents[2]
    assert gpu_check_section().strip() in (root / "BENCHMARKS.md").read_text()


# --- publishing a GPU check's figures ----------------------------------------------------------


def check_output(folder: Path, verdict: str, rate: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "summary.txt").write_text(
        f"{verdict}\n\npytest: 9 passed\n\nmode: real\n"
        "index, name, uuid, driver_version, memory.used [MiB], memory.total [MiB]\n"
        "0, NVIDIA H100 80GB HBM3, GPU-5b3f, 580.159.04, 0 MiB, 81559 MiB\n"
    )
    (folder / "figures.md").write_text(
        "# Benchmarks\n\nGenerated by `python -m bench --quick` on 2027-01-02 10:00 UTC.\n\n"
        "## Machine\n\n| CPU | x |\n\n## Headlines\n\n"
        f"- GPU polling: one NVML poll takes 0.31 ms\n- GPU training: {rate} steps/s\n\n"
        "## 5. GPU: NVML polling, training under Backprop, the live footer\n\n"
        f"| a | b |\n|---|---|\n| steps/s | {rate} |\n\n_This section took 99 s._\n"
    )
    return folder


def test_publish_replaces_pending_then_earlier_figures(tmp_path: Path) -> None:
    from bench.gpu_publish import PublishError, publish

    root = Path(__file__).resolve().parents[2]
    source, bench_md = tmp_path / "gpu_check.md", tmp_path / "BENCHMARKS.md"
    source.write_text((root / "bench" / "gpu_check.md").read_text())
    bench_md.write_text("# Benchmarks\n\n## 4. Other\n\nkept\n\n" + source.read_text())
    first = check_output(tmp_path / "one", "GPU CHECK: PASS (250s; files in /out)", "1,234")
    publish(first, source, bench_md, even_if_failed=False)
    text = bench_md.read_text()
    assert "**Pending**" not in text and "## 4. Other\n\nkept" in text
    assert "**Measured** by `bash bench/gpu_check.sh`; verdict: `GPU CHECK: PASS" in text
    assert "GPU (nvidia-smi): 0, NVIDIA H100 80GB HBM3" in text
    assert "- GPU training: 1,234 steps/s" in text and "| steps/s | 1,234 |" in text
    assert source.read_text() in text  # the generator's source and the file agree
    again = check_output(tmp_path / "two", "GPU CHECK: PASS (240s; files in /out)", "2,000")
    publish(again, source, bench_md, even_if_failed=False)
    text = bench_md.read_text()
    assert "2,000 steps/s" in text and "1,234" not in text and text.count("**Measured**") == 1
    fake = check_output(tmp_path / "fake", "GPU CHECK: PASS [fake NVML: no GPU was checked]", "1")
    with pytest.raises(PublishError, match="fake NVML"):
        publish(fake, source, bench_md, even_if_failed=True)
    failed = check_output(tmp_path / "bad", "GPU CHECK: FAIL: pytest: 1 failed", "3")
    with pytest.raises(PublishError, match="did not pass"):
        publish(failed, source, bench_md, even_if_failed=False)
    publish(failed, source, bench_md, even_if_failed=True)
    assert "verdict: `GPU CHECK: FAIL: pytest: 1 failed`" in bench_md.read_text()


def test_the_dispatchers_round_places_on_fake_gpus_within_the_runs_visible_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher's own snapshot reads ``BACKPROP_FAKE_NVML``, and its round keeps a run
    to the GPUs its ``CUDA_VISIBLE_DEVICES`` names, though another is freer."""
    from governor.admit_round import Round
    from governor.dispatcher import default_snapshot
    from runner.control import submission
    from runner.registry import Registry
    from runner.tickets import Queue

    gpus = tmp_path / "gpus.json"
    gpus.write_text(
        json.dumps(
            [
                {"uuid": "GPU-aaaa", "memory_total": 80 * GIB, "memory_used": 0},
                {"uuid": "GPU-bbbb", "memory_total": 80 * GIB, "memory_used": 30 * GIB},
            ]
        )
    )
    monkeypatch.setattr(probes, "_default_nvml", None)
    monkeypatch.setenv(probes.FAKE_NVML_ENV, str(gpus))
    reg = Registry(tmp_path / "home")
    reg.ensure()
    pinned = submission.submit(
        reg,
        ["python3", "t.py"],
        name="pinned",
        options=SubmitOptions(
            resources=Resources(gpus=1, vram_bytes=8 * GIB),
            env={"CUDA_VISIBLE_DEVICES": "GPU-bbbb"},
        ),
    )
    free = submission.submit(
        reg,
        ["python3", "t.py"],
        name="free",
        options=SubmitOptions(resources=Resources(gpus=1, vram_bytes=8 * GIB)),
    )
    res = Round(reg, GovernorSettings(), default_snapshot).run()
    assert sorted(res.started) == [(pinned.id, 1), (free.id, 1)]
    placed = {r: Queue(reg.root).read_ticket(r) for r in (pinned.id, free.id)}
    assert placed[pinned.id] is not None and placed[pinned.id].gpus == (1,)
    assert placed[free.id] is not None and placed[free.id].gpus == (0,)
    monkeypatch.setattr(probes, "_default_nvml", None)
