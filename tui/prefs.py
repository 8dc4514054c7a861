"""The TUI's remembered dialog values (``tui.json`` in the registry), best effort."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def load_prefs(path: Path | None) -> dict[str, Any]:
    """The TUI's remembered values (last new-run dialog); empty when missing or damaged."""
    if path is None:
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def save_prefs(path: Path | None, prefs: Mapping[str, Any]) -> None:
    """Remember values for next time (best effort: a read-only home just forgets)."""
    if path is None:
        return
    from runner.durable import write_json

    try:
        write_json(path, dict(prefs), durable=False)
    except (OSError, ValueError, TypeError):
        pass
