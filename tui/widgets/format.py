"""Short text forms shared by the widgets: status icons, numbers, times, sparklines.

Pure functions, no Textual. Every glyph is one cell wide in common terminals and inside tmux
(no emoji, nothing East-Asian wide), and each status has its own shape, so the tree reads
without colour too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from rich.cells import cell_len, set_cell_size

from runner.config import format_duration, format_size
from runner.model import Status

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
ICONS: dict[Status, str] = {
    Status.STARTING: "◌",
    Status.QUEUED: "○",
    Status.RUNNING: SPINNER[0],
    Status.PAUSED: "‖",
    Status.COMPLETED: "✓",
    Status.FAILED: "✗",
    Status.STOPPED: "■",
    Status.TIMEBOXED: "◷",
    Status.LOST: "?",
    Status.SKIPPED: "⊘",
    Status.CORRUPT: "!",
}
SPARK_CHARS = "▁▂▃▄▅▆▇█"

__all__ = [
    "ICONS",
    "SPARK_CHARS",
    "SPINNER",
    "fit",
    "fit_items",
    "fmt_clock",
    "fmt_loss",
    "fmt_step",
    "format_duration",
    "format_size",
    "icon",
    "sparkline",
    "truncate",
]


def icon(status: Status, frame: int = 0) -> str:
    """The one-cell icon of a status; running spins through ``frame``."""
    if status is Status.RUNNING:
        return SPINNER[frame % len(SPINNER)]
    return ICONS.get(status, "?")


def fmt_step(step: int | None) -> str:
    """A step count in at most six cells: ``950``, ``12.3k``, ``4.56M``."""
    if step is None:
        return "-"
    if step < 100_000:
        return str(step)
    if step < 10_000_000:
        return f"{step / 1000:.1f}k" if step < 1_000_000 else f"{step / 1e6:.2f}M"
    return f"{step / 1e6:.0f}M" if step < 1e9 else f"{step / 1e9:.1f}G"


def fmt_loss(value: float | None, width: int = 7) -> str:
    """A metric value in at most ``width`` cells (``nan`` and ``inf`` spelled out)."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    for digits in (4, 3, 2, 1):
        text = f"{value:.{digits}g}"
        if len(text) <= width:
            return text
    return f"{value:.0e}"[:width]


def fmt_clock(t: float | None, now: float) -> str:
    """A moment as ``HH:MM:SS`` (today) or ``MM-DD HH:MM`` (another day)."""
    if t is None:
        return "-"
    moment, today = time.localtime(t), time.localtime(now)
    if moment[:3] == today[:3]:
        return time.strftime("%H:%M:%S", moment)
    return time.strftime("%m-%d %H:%M", moment)


def sparkline(values: Sequence[float], width: int) -> str:
    """``values`` drawn in ``width`` cells with block characters, scaled to their own range."""
    if width <= 0:
        return ""
    values = list(values)
    if len(values) > width:  # resample: the whole curve, in ``width`` bucket means
        n = len(values)
        buckets = [values[b * n // width : (b + 1) * n // width] for b in range(width)]
        values = [
            sum(f) / len(f) if (f := [v for v in chunk if math.isfinite(v)]) else math.nan
            for chunk in buckets
        ]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * width
    lo, hi = min(finite), max(finite)
    span = hi - lo
    top = len(SPARK_CHARS) - 1
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif span <= 0:
            out.append(SPARK_CHARS[top // 2])
        else:
            out.append(SPARK_CHARS[round((v - lo) / span * top)])
    return "".join(out).ljust(width)


def truncate(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells, with an ellipsis when cut (wide glyphs counted)."""
    if width <= 0:
        return ""
    if cell_len(text) <= width:
        return text
    return set_cell_size(text, width - 1).rstrip() + "…"


def fit(text: str, width: int) -> str:
    """``text`` cut or padded to exactly ``width`` cells."""
    return set_cell_size(truncate(text, width), width)


def fit_items(text: str, width: int, sep: str = "  ") -> str:
    """The leading ``sep``-separated items of ``text`` that fit ``width`` cells, whole.

    Key hints (``"? help  q quit  u resume"``) are cut between hints, never inside one: a
    hint cut to ``u resu…`` says nothing.
    """
    if cell_len(text) <= width:
        return text
    kept = ""
    for item in text.split(sep):
        candidate = f"{kept}{sep}{item}" if kept else item
        if cell_len(candidate) > width:
            break
        kept = candidate
    return kept
