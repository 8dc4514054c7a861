"""What a checkpoint looks like: names, paths named in output, and whether a file is whole.

Pure helpers for :mod:`runner.checkpoints.found` (and for resume, which must never hand a
half-written file to a script). Cheap: no torch, no listing; a completeness check reads at
most a few kilobytes of the file.
"""

from __future__ import annotations

import json
import os
import re
import stat
import struct
from collections.abc import Sequence
from typing import BinaryIO

# Suffixes that are checkpoints wherever they appear; ".bin" only next to a model config.
SUFFIXES = (".pt", ".pth", ".ckpt", ".safetensors")
MODEL_CONFIG = "config.json"
HF_FOLDER_RE = re.compile(r"^checkpoint-(\d+)$")
HF_LAST_FILE = "trainer_state.json"  # the Trainer writes it after the weights and optimizer
# ckpt* files that are text, not weights (logs and notes next to checkpoints).
_TEXT_SUFFIXES = frozenset({".log", ".txt", ".json", ".yaml", ".yml", ".csv", ".md", ".py"})

_STEP_RES = (
    re.compile(r"(?:^|[^a-z])step[=_-]?(\d+)", re.I),  # Lightning "epoch=0-step=50.ckpt"
    re.compile(r"^checkpoint[-_](\d+)", re.I),  # HF Trainer, accelerate
    re.compile(r"(?:^|[^a-z])(?:iter|iteration|it)[=_-]?(\d+)", re.I),  # mmengine "iter_1000"
    re.compile(r"^ckpt[-_.]?(\d+)", re.I),  # "ckpt-100.pt", "ckpt_100.pt"
)

_PATH = r"""['"`]?(?P<p>[^\s'"`]+)"""
_HINT_RES = (
    # nanoGPT "saving checkpoint to out", HF "Saving model checkpoint to out/checkpoint-10",
    # "saved checkpoint to x.pt", "Saving checkpoint at ..."
    re.compile(
        rf"\bsav(?:e|ed|ing)\s+(?:the\s+)?(?:model\s+)?checkpoints?\s+(?:to|in|at|into|as)\s+{_PATH}",
        re.I,
    ),
    # "Checkpoint saved: x", "checkpoint saved to x", "Checkpoint saved at x"
    re.compile(
        rf"\bcheckpoints?\s+(?:was\s+)?(?:saved|written)\s*(?:to|in|at|as|into)?\s*[:=]?\s*{_PATH}",
        re.I,
    ),
    # Lightning's ModelCheckpoint(verbose=True): "... saving model to '/x/epoch=0-step=5.ckpt'"
    re.compile(rf"\bsaving\s+(?:the\s+)?model\s+(?:to|at|as)\s+{_PATH}", re.I),
    # "Saved model to best.pt", "writing weights to model_5.pth": any file with a checkpoint suffix
    re.compile(
        r"\b(?:sav(?:e|ed|ing)|wr(?:ote|iting)|stor(?:ed|ing))\b[^\n]{0,80}?\b(?:to|as|in|at)\s+"
        r"""['"`]?(?P<p>[^\s'"`]+\.(?:pt|pth|ckpt|safetensors|bin|tar|pkl|npz|h5|keras|msgpack))\b""",
        re.I,
    ),
)
_TRAILING = ".,;:)]}>'\"`"
MAX_HINT_PATH = 1024
MAX_SAFETENSORS_HEADER = 16 * 1024 * 1024  # real ones are kilobytes; bounded reads


def is_checkpoint_name(name: str, *, beside_config: bool = False) -> bool:
    """Whether a file's name alone says "checkpoint" (``.bin`` only next to ``config.json``)."""
    lower = name.lower()
    if lower.startswith("."):
        return False  # hidden and temp files (".ckpt.pt.tmp-123") are saves in progress
    if lower.endswith(SUFFIXES):
        return True
    if lower.endswith(".bin"):
        return beside_config
    if lower.startswith("ckpt"):
        return os.path.splitext(lower)[1] not in _TEXT_SUFFIXES and not _is_temp(lower)
    return False


def _is_temp(lower: str) -> bool:
    return lower.endswith((".tmp", ".part", ".partial", ".incomplete", "~"))


def step_from_name(path: str) -> int | None:
    """The step a checkpoint's name states (``epoch=0-step=50.ckpt``, ``checkpoint-500``)."""
    name = os.path.basename(path.rstrip("/"))
    for rx in _STEP_RES:
        m = rx.search(name)
        if m:
            value = int(m.group(1))
            return value if value < 2**53 else None
    return None


def paths_in_line(line: str) -> list[str]:
    """Paths a line of output says a checkpoint was (or is being) saved to."""
    if len(line) > 4096:
        return []
    out: list[str] = []
    for rx in _HINT_RES:
        for m in rx.finditer(line):
            path = m.group("p").rstrip(_TRAILING)
            if not path or len(path) > MAX_HINT_PATH or path in out or "://" in path:
                continue
            # A bare word ("to out") counts only at the end of the line, not "at epoch 3 to x".
            if "/" in path or "." in path or not line[m.end() :].strip(_TRAILING + " \t"):
                out.append(path)
    return out


def compile_globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regex for the user's checkpoint globs, matched against paths relative to the cwd.

    ``*`` and ``?`` stay within one folder, ``**/`` spans any number of folders, and a
    pattern without ``/`` matches a name at any depth (as in ``.gitignore``).
    """
    parts = []
    for pattern in patterns:
        pat = pattern.strip()
        pat = pat[2:] if pat.startswith("./") else pat
        if not pat:
            continue
        body = _glob_to_regex(pat)
        body = body if "/" in pat else f"(?:.*/)?{body}"
        try:
            re.compile(body)
        except re.error:
            continue  # refused where the user wrote it (config, CLI); never fatal here
        parts.append(body)
    return re.compile("(?:" + "|".join(parts) + r")\Z") if parts else None


def glob_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable checkpoint glob (``None``: it is)."""
    if not pattern.strip():
        return "an empty glob"
    if compile_globs([pattern]) is None:
        return f"not a glob: {pattern!r}"
    return None


def _glob_to_regex(pat: str) -> str:
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pat.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pat.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                inner = pat[i + 1 : j].replace("\\", "\\\\")
                out.append("[" + ("^" + inner[1:] if inner.startswith("!") else inner) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def file_is_whole(path: str, size: int | None = None) -> bool | None:
    """Whether a checkpoint file was written to its end, when its format tells.

    ``True``: a zip archive (``torch.save``, Lightning, Keras) ending in its end-of-directory
    record, or a safetensors file exactly as long as its header says. ``False``: the format
    is recognised and the file stops short. ``None``: the format says nothing (judge by a
    size and time that stay the same instead).
    """
    try:
        # Non-blocking, then regular files only: a FIFO or device put in its place must not
        # hang the supervisor or a resume.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return False
            if size is None:
                size = st.st_size
            head = f.read(8)
            if len(head) < 8:
                return False if size == 0 else None
            if head[:4] == b"PK\x03\x04":
                return _zip_whole(f, size)
            return _safetensors_whole(f, head, size) if path.endswith(".safetensors") else None
    except OSError:
        return False


def _zip_whole(f: BinaryIO, size: int) -> bool:
    """The end-of-central-directory record is the last thing a zip writer writes."""
    tail = min(size, 65_557)  # the record (22 bytes) plus the longest comment
    f.seek(size - tail)
    data = f.read(tail)
    at = data.rfind(b"PK\x05\x06")
    if at < 0 or len(data) - at < 22:
        return False
    comment = int(struct.unpack("<H", data[at + 20 : at + 22])[0])
    return at + 22 + comment == len(data)


def _safetensors_whole(f: BinaryIO, head: bytes, size: int) -> bool | None:
    n = int(struct.unpack("<Q", head)[0])
    if n <= 0 or n > MAX_SAFETENSORS_HEADER or 8 + n > size:
        return False if 8 + n > size and n <= MAX_SAFETENSORS_HEADER else None
    try:
        header = json.loads(f.read(n))
    except (ValueError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    end = 0
    for key, info in header.items():
        if key == "__metadata__" or not isinstance(info, dict):
            continue
        offsets = info.get("data_offsets")
        if isinstance(offsets, list) and len(offsets) == 2 and isinstance(offsets[1], int):
            end = max(end, offsets[1])
    return size == 8 + n + end


def folder_is_whole(path: str) -> bool | None:
    """A checkpoint folder: ``False`` while a file in it is short or HF's last file is missing.

    ``None`` when nothing in it says (judge by stability), ``True`` when HF Trainer's last
    file is there and every file whose format tells is whole.
    """
    try:
        entries = list(os.scandir(path))
    except OSError:
        return False
    names = {e.name for e in entries}
    if not names:
        return False
    for e in entries:
        if e.name.startswith(".") or not e.is_file(follow_symlinks=False):
            continue
        if file_is_whole(e.path) is False:
            return False
    hf_shaped = bool(
        names & {MODEL_CONFIG, "model.safetensors", "pytorch_model.bin", "optimizer.pt"}
    )
    if hf_shaped:
        return HF_LAST_FILE in names
    return None


def is_whole(path: str) -> bool | None:
    """:func:`file_is_whole` or :func:`folder_is_whole`, whichever ``path`` is."""
    return folder_is_whole(path) if os.path.isdir(path) else file_is_whole(path)
