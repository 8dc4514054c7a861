"""One line of ``report.jsonl`` (written by :func:`runner.report`) into values and a step."""

from __future__ import annotations

import json
import re
from typing import Any

from runner.metrics.steps import ParsedLine

_NONFINITE_RE = re.compile(rb"(?<=[:\[,])(-?)(nan|inf)(?=[,}\]])")


def parse_report(line: bytes) -> tuple[ParsedLine, float | None] | None:
    """The values, step and total of one report record, and its time (``None``: unknown).

    Returns:
        ``None`` when the line is not a report record; keys that are not short printable
        names and values that are not numbers are left out.
    """
    obj = _loads_report(line)
    if not isinstance(obj, dict):
        return None
    raw = obj.get("v")
    if not isinstance(raw, dict):
        return None
    parsed = ParsedLine()
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not key or len(key) > 64 or not key.isprintable():
            continue
        if key == "total_steps":
            if value > 0:
                parsed.step_total = int(value)
            continue
        parsed.values[key] = float(value)
    step = obj.get("s")
    if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
        parsed.step = step
    ns = obj.get("ns")
    t = ns / 1e9 if isinstance(ns, int) and not isinstance(ns, bool) else None
    return parsed, t


def _loads_report(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        pass
    # The report helper writes non-finite values as Python spells them (nan, inf).
    fixed = _NONFINITE_RE.sub(_json_constant, line)
    try:
        return json.loads(fixed)
    except (ValueError, RecursionError):
        return None


def _json_constant(m: re.Match[bytes]) -> bytes:
    return b"NaN" if m.group(2) == b"nan" else m.group(1) + b"Infinity"
