"""Health flags of a run, computed as its data arrives (pure functions plus small probes).

``nan``: the primary metric's latest value is not finite. ``diverging``: it is far above its
best after a warm-up (lower-is-better metrics only). ``stalled``: no new metric for many times
the usual interval, with a floor (only while running). ``oom``: out-of-memory text in the
output, or the kernel's OOM killer struck the supervisor's cgroup during the attempt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

NAN, DIVERGING, STALLED, OOM = "nan", "diverging", "stalled", "oom"
FLAG_ORDER = (NAN, DIVERGING, STALLED, OOM)

DIVERGE_WARMUP = 10
DIVERGE_FACTOR = 3.0
DIVERGE_MARGIN = 0.1
STALL_FACTOR = 10.0
STALL_FLOOR_S = 60.0

_HIGHER_BETTER_RE = re.compile(
    r"acc|accuracy|f1|auc|bleu|rouge|map|precision|recall|score|reward|return|iou|top\d|"
    r"r2|dice|psnr|ssim|mfu|throughput|per_s(?:ec(?:ond)?)?$"
)

# Out-of-memory messages, most telling first (the label names the first kind present).
_OOM_PATTERNS = (
    r"(?:CUDA|HIP|MPS|XPU) out of memory",
    r"(?:torch\.(?:cuda\.)?)?OutOfMemoryError",
    r"DefaultCPUAllocator: (?:not enough memory|can't allocate memory)",
    r"RESOURCE_EXHAUSTED|OOM when allocating",
    r"CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED",
    r"\bMemoryError\b",
    r"std::bad_alloc",
    r"\bout of memory\b",
    r"^Killed\s*$|\b\d+ Killed\s",
)
# Every pattern above contains one of these (lower case): a cheap test before the regex.
_OOM_ANCHORS = ("memory", "resource_exhausted", "oom when", "alloc_failed", "bad_alloc", "killed")
_OOM_ANY_RE = re.compile("|".join(_OOM_PATTERNS), re.IGNORECASE | re.MULTILINE)
_OOM_RES = tuple(re.compile(p, re.IGNORECASE | re.MULTILINE) for p in _OOM_PATTERNS)
_EXCEPTION_RE = re.compile(
    r"^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Failure))(?::[ \t]*([^\n]*))?$",
    re.MULTILINE,
)


def higher_is_better(name: str) -> bool:
    """Whether a larger value of this metric is an improvement (accuracy, reward, ...)."""
    base = name.lower()
    return "loss" not in base and "err" not in base and bool(_HIGHER_BETTER_RE.search(base))


def is_diverging(
    last: float | None,
    best: float | None,
    points: int,
    *,
    warmup: int = DIVERGE_WARMUP,
    factor: float = DIVERGE_FACTOR,
    margin: float = DIVERGE_MARGIN,
) -> bool:
    """Whether a lower-is-better metric is far above its best after a warm-up.

    Far above means ``last > factor × best`` and ``last > best + margin``; the warm-up is
    ``warmup`` points of the metric. Only positive bests count (a ratio means nothing else).
    """
    if last is None or best is None or points < warmup or not math.isfinite(last):
        return False
    return best > 0 and last > factor * best and last > best + margin


def data_flags(
    last: float | None, best: float | None, points: int, higher_better: bool
) -> list[str]:
    """The flags the primary metric's values show (``nan``, ``diverging``)."""
    flags = []
    if last is not None and not math.isfinite(last):
        flags.append(NAN)
    if not higher_better and is_diverging(last, best, points):
        flags.append(DIVERGING)
    return flags


def is_stalled(
    now: float,
    last_at: float | None,
    gaps: Sequence[float],
    *,
    factor: float = STALL_FACTOR,
    floor_s: float = STALL_FLOOR_S,
) -> bool:
    """Whether no metric arrived for ``factor`` × the usual gap (median), at least ``floor_s``.

    Args:
        now: the current time.
        last_at: when the latest metric arrived (``None``: none yet, never stalled).
        gaps: recent intervals between arrivals.
        factor: how many usual intervals count as a stall.
        floor_s: the least silence that counts.
    """
    if last_at is None:
        return False
    silence = now - last_at
    if silence <= floor_s:
        return False
    ordered = sorted(gaps)  # a median without importing statistics (decimal, fractions...)
    usual = ordered[len(ordered) // 2] if ordered else 0.0
    return silence > max(floor_s, factor * usual)


def find_oom(text: str) -> str | None:
    """The out-of-memory message in ``text`` (``"CUDA out of memory"``, ``"Killed"``...)."""
    low = text.lower()  # literal anchors first: a case-blind alternation scans slowly
    if not any(anchor in low for anchor in _OOM_ANCHORS) or _OOM_ANY_RE.search(text) is None:
        return None
    for pattern in _OOM_RES:
        m = pattern.search(text)
        if m is not None:
            label = m.group(0).strip()
            return label.split(" ", 1)[1] if label[:1].isdigit() else label
    return None  # pragma: no cover - the combined pattern matched, so one of these does


def last_exception(text: str) -> str | None:
    """The last ``SomeError: message`` line at the start of a line in ``text``, if any."""
    found = None
    for m in _EXCEPTION_RE.finditer(text):
        found = m
    if found is None:
        return None
    name, message = found.group(1), (found.group(2) or "").strip()
    return f"{name}: {message}" if message else name


def order_flags(flags: set[str]) -> list[str]:
    """Flags in their display order."""
    return [f for f in FLAG_ORDER if f in flags]


# --- the kernel's OOM killer -------------------------------------------------------------------


def memory_events_paths(proc_cgroup: Path = Path("/proc/self/cgroup")) -> list[Path]:
    """Where this process's cgroup counts OOM kills (cgroup v2 first, then v1)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    root = Path("/sys/fs/cgroup")
    out: list[Path] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        rel = parts[2].lstrip("/")
        if parts[0] == "0" and parts[1] == "":
            for base in (root, root / "unified"):
                out += [base / rel / "memory.events", base / "memory.events"]
        elif "memory" in parts[1].split(","):
            out += [
                root / "memory" / rel / "memory.oom_control",
                root / "memory/memory.oom_control",
            ]
    return list(dict.fromkeys(out))


def oom_kill_count(paths: Sequence[Path] | None = None) -> int | None:
    """The ``oom_kill`` counter of this process's cgroup; ``None`` when it cannot be read."""
    for path in memory_events_paths() if paths is None else paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None
