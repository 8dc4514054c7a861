"""The rows of a run comparison: what ``backprop compare`` prints and the TUI's view draws.

Textual-free and file-free: it turns :func:`runner.compare.compare_runs`'s result into
``(section, field, cells)`` rows, so the CLI and the widget show the same table.
"""

from __future__ import annotations

from typing import Any

SECTIONS = (
    ("arguments", "arguments"),
    ("config", "config"),
    ("provenance", "code"),
    ("metrics", "results"),
)


def cell(value: Any) -> str:
    """A value as a table cell (short commits, 4 significant digits)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | dict):
        import json

        return json.dumps(value, default=str)
    return str(value)


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """``(section, field, cells)`` for every shown field (what the TUI's view draws too)."""
    rows: list[tuple[str, str, list[str]]] = []
    for key, title in SECTIONS:
        for field, values in result.get(key, {}).items():
            cells = [cell(v) for v in values]
            if field == "commit":
                cells = [c[:12] for c in cells]
            rows.append((title, field, cells))
    if result.get("env"):
        n = len(result["runs"])
        rows.append(("config", "env (values hidden)", [", ".join(result["env"])] + [""] * (n - 1)))
    return rows
