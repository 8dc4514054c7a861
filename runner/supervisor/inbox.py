"""Control requests: files in the run's ``requests/`` folder, consumed oldest first."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

VALID_ACTIONS = frozenset({"stop", "kill", "pause", "continue", "start"})


def read_requests(folder: Path) -> list[tuple[str, str | None]]:
    """Consume pending control requests (oldest first): their actions and optional reasons."""
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    actions = []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = folder / name
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read(4096))
            action = data.get("action") if isinstance(data, dict) else None
            reason = data.get("reason") if isinstance(data, dict) else None
        except (OSError, ValueError):
            action = reason = None
        with contextlib.suppress(OSError):
            os.unlink(path)
        if action in VALID_ACTIONS:
            actions.append((str(action), reason[:200] if isinstance(reason, str) else None))
    return actions
