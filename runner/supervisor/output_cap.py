"""Keeping ``output.log`` under its cap: the head and the latest tail survive."""

from __future__ import annotations

from pathlib import Path

OUTPUT_HEAD_BYTES = 1024 * 1024


def compact_output(path: Path, cap: int, head: int = OUTPUT_HEAD_BYTES) -> int | None:
    """Keep the first ``head`` bytes and the latest tail of an output file grown past ``cap``.

    The trainer's descriptor is in append mode, so after the rewrite its next write lands at
    the new end. Returns the new size, or ``None`` if nothing was done.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return None
    if size <= cap:
        return None
    head = min(head, cap // 4)
    keep = max(cap // 2 - head, 0)
    with open(path, "r+b") as f:
        tail_start = size - keep
        f.seek(tail_start)
        tail = f.read(keep)
        nl = tail.find(b"\n")
        if 0 <= nl < len(tail) - 1:
            tail = tail[nl + 1 :]  # start the kept tail on a line boundary
        f.seek(0)
        head_bytes = f.read(head)
        cut = head_bytes.rfind(b"\n")
        if cut >= 0:
            head_bytes = head_bytes[: cut + 1]
        marker = (
            f"\n[backprop: output over {cap} bytes; "
            f"{size - len(head_bytes) - len(tail)} bytes omitted here]\n"
        ).encode()
        f.seek(len(head_bytes))
        f.write(marker)
        f.write(tail)
        f.truncate()
        return f.tell()
