"""Item 5 (`gpu`): one NVML poll of every GPU against one `nvidia-smi` query.

Ours is `governor.probes.probe_gpus()` on a warm NVML handle, as the governor and the TUI
poll it: memory, utilisation, temperature, power and the compute processes of every GPU.
The reference is one `nvidia-smi --query-gpu=... --format=csv` process reading the same
fields, which is what a monitor that shells out spawns on every poll. Each repeat times a
batch of polls of each, alternating; the ratio is nvidia-smi's time over ours, pair by pair.
Skipped, with the reason, where NVML cannot start or nvidia-smi is missing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from bench.common import ROOT, Section, Table, fig, med, pairwise, ratio

sys.path.insert(0, str(ROOT))

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


def run(quick: bool, repeats: int) -> Section:
    sec = Section("5. GPU polling: NVML against nvidia-smi")
    sec.text(__doc__.split("\n\n", 1)[1].strip())
    reason = unavailable()
    if reason is not None:
        sec.text(f"**Skipped**: {reason} (this machine has no usable NVIDIA GPU).")
        sec.headline.append(f"GPU polling: skipped ({reason})")
        return sec
    from governor.probes import RealNvml, probe_gpus

    nvml = RealNvml()
    smi = [shutil.which("nvidia-smi") or "nvidia-smi", *QUERY]
    first = probe_gpus(nvml)
    if first.error and not first.gpus:
        sec.text(f"**Skipped**: the NVML probe failed: {first.error}.")
        sec.headline.append(f"GPU polling: skipped ({first.error})")
        return sec
    out = subprocess.run(smi, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        sec.text(f"**Skipped**: nvidia-smi exited {out.returncode}: {out.stderr.strip()[:200]}")
        sec.headline.append("GPU polling: skipped (nvidia-smi failed)")
        return sec
    polls, calls = (20, 2) if quick else (200, 5)
    ours, theirs = [], []
    for k in range(repeats):
        for side in ("nvml", "smi") if k % 2 == 0 else ("smi", "nvml"):
            t = time.perf_counter()
            if side == "nvml":
                for _ in range(polls):
                    probe_gpus(nvml)
                ours.append((time.perf_counter() - t) / polls)
            else:
                for _ in range(calls):
                    subprocess.run(smi, capture_output=True, check=True, timeout=60)
                theirs.append((time.perf_counter() - t) / calls)
    gpus = len(first.gpus)
    names = ", ".join(sorted({g.name for g in first.gpus}))
    sec.text(f"{gpus} GPU(s): {names}. {polls} NVML polls and {calls} nvidia-smi calls a repeat.")
    t = sec.table(Table(["one poll of all GPUs", "ms", "nvidia-smi ÷ NVML"]))
    t.add("NVML (`probe_gpus`)", fig(ours, 1e3), "")
    t.add(
        "`nvidia-smi --query-gpu ... --format=csv`", fig(theirs, 1e3), ratio(pairwise(theirs, ours))
    )
    sec.headline.append(
        f"GPU polling: one NVML poll of {gpus} GPU(s) takes {med(ours) * 1e3:.2f} ms, "
        f"{med(pairwise(theirs, ours)):.0f}× less than one nvidia-smi call "
        f"({med(theirs) * 1e3:.0f} ms)"
    )
    return sec
