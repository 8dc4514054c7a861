"""Reading a run back: its lifecycle events, and JSON output for ``--json``."""

from __future__ import annotations

import json

from runner.registry import (
    Registry,
)


def events(registry: Registry, run_id: str) -> list[dict[str, object]]:
    """The run's lifecycle history."""
    from runner.durable import read_jsonl

    records, _ = read_jsonl(registry.run_dir(run_id) / "events.jsonl")
    return [r for r in records if isinstance(r, dict)]


def dump(obj: object) -> str:
    """JSON for ``--json`` output."""
    return json.dumps(obj, indent=2, sort_keys=False, default=str)
