"""Where an attempt's ingestion starts: the previous summary and the offsets it recorded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runner.durable import read_json
from runner.model import ShapeError
from runner.registry import REPORT, SUMMARY


def previous_summary(run_dir: Path) -> dict[str, Any]:
    """The run's ``summary.json`` as the previous attempt left it (empty when unreadable)."""
    try:
        raw = read_json(run_dir / SUMMARY)
    except (FileNotFoundError, ShapeError):
        return {}
    return raw if isinstance(raw, dict) else {}


def start_offset(run_dir: Path, name: str, state: dict[str, Any], key: str) -> int:
    """Where this attempt's part of an append-only file begins.

    The previous attempt's final offset when it recorded one; else the current end (its
    output was consumed, or its supervisor died and the tail is lost either way).
    """
    try:
        size = os.stat(run_dir / name).st_size
    except OSError:
        size = 0
    recorded = state.get(key)
    if state.get("final") and isinstance(recorded, int) and 0 <= recorded <= size:
        return recorded
    if name == REPORT:  # a torn last record is cut by the next writer: start before it
        return after_last_newline(run_dir / name, size)
    return size


def after_last_newline(path: Path, size: int) -> int:
    """The offset just past the last newline within the first ``size`` bytes of ``path``."""
    try:
        with open(path, "rb") as f:
            pos = size
            while pos > 0:
                start = max(0, pos - 65536)
                f.seek(start)
                cut = f.read(pos - start).rfind(b"\n")
                if cut >= 0:
                    return start + cut + 1
                pos = start
    except OSError:
        return size
    return 0
