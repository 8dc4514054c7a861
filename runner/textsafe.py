"""Making untrusted text (training output, names, reasons) harmless for a terminal.

Training output may carry escape sequences that move the cursor, retitle the window, write to
the clipboard (OSC 52) or hide text, and Rich markup (``[bold]``) that a UI would interpret.
:func:`sanitize_line` keeps printable text and, optionally, plain colour (SGR) sequences.
"""

from __future__ import annotations

import re

# CSI ... final byte, OSC ... BEL/ST, DCS/SOS/PM/APC ... ST, and lone two-byte escapes.
_ESCAPE_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[@-Z\\-_]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
)
_SGR_RE = re.compile(r"\x1b\[[0-9;]*m")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_LINE = 4096


def strip_escapes(text: str) -> str:
    """Remove every terminal escape sequence."""
    return _ESCAPE_RE.sub("", text)


def collapse_redraws(line: str) -> str:
    r"""Keep what a terminal would finally show of a line redrawn with ``\r``."""
    if "\r" not in line:
        return line
    parts = [p for p in line.split("\r") if p]
    return parts[-1] if parts else ""


def sanitize_line(line: str, *, keep_colour: bool = False, max_len: int = MAX_LINE) -> str:
    r"""One line of untrusted output, safe to write to a terminal.

    ``\r`` redraws are collapsed, escape sequences removed (plain SGR colour kept if asked),
    other control characters replaced by ``?`` (tabs become spaces), and the line truncated.
    """
    line = collapse_redraws(line.rstrip("\n"))
    if keep_colour:
        kept: list[str] = []
        pos = 0
        for m in _SGR_RE.finditer(line):
            kept.append(_plain(line[pos : m.start()]))
            kept.append(m.group(0))
            pos = m.end()
        kept.append(_plain(line[pos:]))
        out = "".join(kept)
    else:
        out = _plain(line)
    if len(out) > max_len:
        out = out[:max_len] + f"… [{len(out) - max_len} more characters]"
    return out


def _plain(text: str) -> str:
    text = _ESCAPE_RE.sub("", text).replace("\t", "    ")
    return _CONTROL_RE.sub("?", text)


def safe_label(text: str, max_len: int = 200) -> str:
    """A short single-line label (names, reasons) with nothing a terminal would interpret.

    A label longer than ``max_len`` characters is cut at a word, with an ellipsis.
    """
    return clip(sanitize_line(text.replace("\n", " "), max_len=max(max_len, MAX_LINE)), max_len)


def clip(text: str, max_len: int) -> str:
    """``text`` in at most ``max_len`` characters: cut at a word, with an ellipsis, if longer.

    A word is never split unless it alone is longer than most of the room.
    """
    if len(text) <= max_len:
        return text
    if max_len <= 1:
        return "…"[:max_len]
    room = max_len - 1
    cut = text.rfind(" ", 0, room + 1)
    if cut < room * 0.5:
        cut = room  # one long word: cut inside it
    return text[:cut].rstrip(" ,;:-") + "…"
