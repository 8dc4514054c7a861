"""Learned VRAM: the peak memory earlier runs of the same command used on one GPU.

When a run finishes, its supervisor records the largest per-GPU usage NVML showed for the
run's process group (sampled while it ran, see :mod:`governor.watch`) under two keys: the
exact command, and the script. A later run that states no ``--vram`` asks for the most any of
the last few runs of the same command needed, or, failing that, of the same script (the
larger of its recent peaks, so a sweep over batch sizes errs on the safe side).

The record lives in ``$BACKPROP_HOME/governor/learned.json``, changed only under the
governor's lock; it is a cache, so a damaged file reads as empty.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.durable import read_json, write_json
from runner.model import RunSpec, ShapeError

try:  # blake2 without hashlib: hashlib maps OpenSSL, ~4 MB in every supervisor
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import blake2b

SCHEMA = 1
KEEP_PEAKS = 5
MAX_ENTRIES = 1000


def command_key(spec: RunSpec) -> str:
    """Key of the exact command (interpreter, script and arguments)."""
    raw = json.dumps(list(spec.command), separators=(",", ":"))
    return "cmd:" + blake2b(raw.encode(), digest_size=16).hexdigest()


def script_key(spec: RunSpec) -> str | None:
    """Key of the script, when the run has one."""
    if not spec.script:
        return None
    return "script:" + blake2b(spec.script.encode(), digest_size=16).hexdigest()


def empty() -> dict[str, Any]:
    """An empty record."""
    return {"schema": SCHEMA, "entries": {}}


def load(path: Path) -> dict[str, Any]:
    """Read the record (empty when missing or damaged)."""
    try:
        data = read_json(path)
    except (FileNotFoundError, ShapeError):
        return empty()
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return empty()
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return empty()
    return {"schema": SCHEMA, "entries": entries}


def _peaks(entry: Any) -> list[int]:
    if not isinstance(entry, dict):
        return []
    peaks = entry.get("peaks")
    if not isinstance(peaks, list):
        return []
    return [p for p in peaks if isinstance(p, int) and not isinstance(p, bool) and p > 0]


def lookup(data: dict[str, Any], cmd_key: str, scr_key: str | None) -> int | None:
    """The VRAM to ask for: the command's recent peak, else the script's, else ``None``."""
    entries = data.get("entries", {})
    for key in (cmd_key, scr_key):
        if key is None:
            continue
        peaks = _peaks(entries.get(key))
        if peaks:
            return max(peaks)
    return None


def record(
    data: dict[str, Any], cmd_key: str, scr_key: str | None, peak: int, now: float
) -> dict[str, Any]:
    """A new record with ``peak`` added under both keys (pure; keeps the newest entries)."""
    entries = dict(data.get("entries", {}))
    for key in (cmd_key, scr_key):
        if key is None:
            continue
        peaks = (_peaks(entries.get(key)) + [int(peak)])[-KEEP_PEAKS:]
        entries[key] = {"peaks": peaks, "t": now}
    if len(entries) > MAX_ENTRIES:
        newest = sorted(
            entries.items(),
            key=lambda kv: kv[1].get("t", 0.0) if isinstance(kv[1], dict) else 0.0,
            reverse=True,
        )
        entries = dict(newest[:MAX_ENTRIES])
    return {"schema": SCHEMA, "entries": entries}


def save(path: Path, data: dict[str, Any]) -> None:
    """Replace the record atomically (callers hold the governor's lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data, durable=False)
