"""Framework-aware memory settings for the trainer's environment.

TensorFlow and JAX grab most of a GPU's memory at start by default, which defeats sharing a
GPU and makes the learned peak meaningless. For a run placed on GPUs:

* TensorFlow: ``TF_FORCE_GPU_ALLOW_GROWTH=true`` (allocate as needed).
* JAX: with an explicit ``--vram``, ``XLA_PYTHON_CLIENT_MEM_FRACTION`` set to that share of
  the GPU (JAX preallocates exactly its reservation, visible to NVML at once); otherwise
  ``XLA_PYTHON_CLIENT_PREALLOCATE=false``.
* PyTorch: nothing. Its caching allocator already grows on demand, and changing
  ``PYTORCH_CUDA_ALLOC_CONF`` would alter the run's allocator behaviour for no gain here.

A value the user set in the run's environment always wins. ``--framework auto`` reads the
script's import lines (first 256 KiB, a regular expression, no execution).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

SCAN_BYTES = 256 * 1024

_IMPORT_RE = re.compile(
    rb"^[ \t]*(?:from[ \t]+([A-Za-z_][\w.]*)[ \t]+import\b|import[ \t]+([A-Za-z_][\w., \t]*))",
    re.M,
)
_MODULES = {
    "torch": "pytorch",
    "lightning": "pytorch",
    "pytorch_lightning": "pytorch",
    "tensorflow": "tensorflow",
    "keras": "tensorflow",
    "tf_keras": "tensorflow",
    "jax": "jax",
    "jaxlib": "jax",
    "flax": "jax",
    "optax": "jax",
    "haiku": "jax",
    "equinox": "jax",
}


def detect(script: str | None) -> frozenset[str]:
    """The frameworks a script imports (``pytorch``, ``tensorflow``, ``jax``); never raises."""
    if not script:
        return frozenset()
    try:
        with open(script, "rb") as f:
            text = f.read(SCAN_BYTES)
    except OSError:
        return frozenset()
    found: set[str] = set()
    for m in _IMPORT_RE.finditer(text):
        names = m.group(1) or m.group(2) or b""
        for part in names.split(b","):
            words = part.strip().split()
            if not words:
                continue
            top = words[0].split(b".")[0].decode("ascii", "replace")
            if top in _MODULES:
                found.add(_MODULES[top])
    return frozenset(found)


def frameworks_for(framework: str, script: str | None) -> frozenset[str]:
    """The frameworks to configure for ``--framework`` (``auto`` reads the script)."""
    if framework == "auto":
        return detect(script)
    if framework in ("pytorch", "tensorflow", "jax"):
        return frozenset({framework})
    return frozenset()


def framework_env(
    frameworks: frozenset[str],
    *,
    vram: int,
    vram_explicit: bool,
    gpu_totals: Sequence[int],
    user_env: Mapping[str, str],
) -> dict[str, str]:
    """Environment settings for a run placed on GPUs (empty for other runs)."""
    if not gpu_totals:
        return {}
    env: dict[str, str] = {}
    if "tensorflow" in frameworks:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    if "jax" in frameworks:
        total = min(gpu_totals)
        if vram_explicit and vram > 0 and total > 0:
            fraction = min(0.95, max(0.01, math.floor(vram / total * 100) / 100))
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{fraction:.2f}"
        else:
            env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    jax_keys = ("XLA_PYTHON_CLIENT_MEM_FRACTION", "XLA_PYTHON_CLIENT_PREALLOCATE")
    if any(k in user_env for k in jax_keys):  # the user configured JAX memory: leave it all
        for k in jax_keys:
            env.pop(k, None)
    return {k: v for k, v in env.items() if k not in user_env}
