"""Item 5 (`gpu`): one NVML poll of every GPU against one `nvidia-smi` query.

Ours is `governor.probes.probe_gpus()` on a warm NVML handle, as the governor and the TUI
poll it: memory, utilisation, temperature, power and the compute processes of every GPU.
The reference is one `nvidia-smi --query-gpu=... --format=csv` process reading the same
fields, which is what a monitor that shells out spawns on every poll. Every poll and every
call is timed on its own (median and p99 over all of them); each repeat times a batch of each,
alternating, and the ratio is nvidia-smi's time over ours, repeat by repeat.
Skipped, with the reason, where NVML cannot start or nvidia-smi is missing.

With `BACKPROP_FAKE_NVML` set (how the CPU suite runs `bench/gpu_check.sh`), the fake GPUs
are polled instead and every figure below says so: they test this code, not a GPU.
`BENCH_GPU_SMOKE=1` shrinks every size to a smoke test.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

from bench.common import ROOT, Section, Table, fig, med, number, pairwise, ratio

sys.path.insert(0, str(ROOT))

from governor.probes import FAKE_NVML_ENV  # noqa: E402

QUERY = [
    "--query-gpu=index,name,memory.total,memory.used,memory.free,utilization.gpu,"
    "temperature.gpu,power.draw",
    "--format=csv,noheader,nounits",
]


def unavailable() -> str | None:
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception as exc:
        return f"NVML cannot start here: {exc or type(exc).__name__}"
    if count == 0:
        return "NVML found no GPU"
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi is not installed"
    return None


def p99(values: list[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def driver_line() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    out = subprocess.run(
        [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return out.stdout.strip().replace("\n", "; ") if out.returncode == 0 else None


def run(quick: bool, repeats: int) -> Section:
    from bench import gpu_live

    sec = Section("5. GPU: NVML polling, training under Backprop, the live footer")
    sec.text(__doc__.split("\n\n", 1)[1].strip())
    fake = os.environ.get(FAKE_NVML_ENV)
    smoke = os.environ.get("BENCH_GPU_SMOKE") == "1"
    if fake:
        sec.text(f"**Fake NVML** ({FAKE_NVML_ENV}={fake}): no figure here is a GPU figure.")
    reason = None if fake else unavailable()
    if reason is not None:
        sec.text(f"**Skipped**: {reason} (this machine has no usable NVIDIA GPU).")
        sec.headline.append(f"GPU polling: skipped ({reason})")
        return sec
    from governor.probes import RealNvml, default_nvml, probe_gpus

    nvml = default_nvml() if fake else RealNvml()
    first = probe_gpus(nvml)
    if first.error and not first.gpus:
        sec.text(f"**Skipped**: the NVML probe failed: {first.error}.")
        sec.headline.append(f"GPU polling: skipped ({first.error})")
        return sec
    gpus = len(first.gpus)
    names = ", ".join(sorted({g.name for g in first.gpus}))
    driver = None if fake else driver_line()
    if driver:
        sec.text(f"`nvidia-smi`: {driver}.")
    smi_path = shutil.which("nvidia-smi")
    smi = [smi_path, *QUERY] if smi_path and not fake else None
    if smi is not None:
        out = subprocess.run(smi, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            sec.text(f"nvidia-smi exited {out.returncode}: {out.stderr.strip()[:200]}")
            smi = None
    polls, calls = (5, 1) if smoke else (50, 2) if quick else (200, 5)
    ours, theirs, each_poll, each_call = [], [], [], []
    for k in range(repeats):
        for side in ("nvml", "smi") if k % 2 == 0 else ("smi", "nvml"):
            if side == "nvml":
                t = time.perf_counter()
                for _ in range(polls):
                    t1 = time.perf_counter()
                    probe_gpus(nvml)
                    each_poll.append(time.perf_counter() - t1)
                ours.append((time.perf_counter() - t) / polls)
            elif smi is not None:
                t = time.perf_counter()
                for _ in range(calls):
                    t1 = time.perf_counter()
                    subprocess.run(smi, capture_output=True, check=True, timeout=60)
                    each_call.append(time.perf_counter() - t1)
                theirs.append((time.perf_counter() - t) / calls)
    sec.text(f"{gpus} GPU(s): {names}. {polls} NVML polls and {calls} nvidia-smi calls a repeat.")
    t = sec.table(
        Table(["one poll of all GPUs", "ms, per repeat", "median, ms", "p99, ms", "÷ NVML"])
    )
    t.add(
        "NVML (`probe_gpus`)",
        fig(ours, 1e3),
        number(med(each_poll) * 1e3),
        number(p99(each_poll) * 1e3),
        "",
    )
    if smi is not None:
        t.add(
            "`nvidia-smi --query-gpu ... --format=csv`",
            fig(theirs, 1e3),
            number(med(each_call) * 1e3),
            number(p99(each_call) * 1e3),
            ratio(pairwise(theirs, ours)),
        )
        sec.headline.append(
            f"GPU polling: one NVML poll of {gpus} GPU(s) takes {med(each_poll) * 1e3:.2f} ms "
            f"(p99 {p99(each_poll) * 1e3:.2f} ms), {med(pairwise(theirs, ours)):.0f}× less "
            f"than one nvidia-smi call ({med(each_call) * 1e3:.0f} ms)"
        )
    else:
        t.add("`nvidia-smi`", "not run: " + ("fake NVML" if fake else "missing"), "", "", "")
        sec.headline.append(
            f"GPU polling{' (fake NVML)' if fake else ''}: one NVML poll of {gpus} GPU(s) "
            f"takes {med(each_poll) * 1e3:.3f} ms (p99 {p99(each_poll) * 1e3:.3f} ms)"
        )
    gpu_live.run_live(sec, quick=quick, repeats=repeats, smoke=smoke)
    return sec


def gpu_check_section() -> str:
    """What `python -m bench` writes at the end of BENCHMARKS.md about the GPU check."""
    return (ROOT / "bench" / "gpu_check.md").read_text()
