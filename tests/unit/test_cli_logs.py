"""``backprop logs`` reads output.log through the one tail: all of it, in order, safely."""

from __future__ import annotations

import io
import os
from pathlib import Path

from tui.cli.logs import _finish, _pump, _tail


def test_logs_print_a_big_output_whole_and_the_unterminated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    lines = [f"step {i} loss {1 / (i + 1):.6f} " + "x" * 80 for i in range(120_000)]  # ~12 MB
    path.write_text("\n".join(lines) + "\nlast words")
    out = io.StringIO()
    tail = _tail(path, 0)
    _pump(tail, out, raw=True)
    _finish(tail, out, raw=True)
    printed = out.getvalue().split("\n")
    assert printed[:-1] == [*lines, "last words"]  # the old reader stopped after 8 MiB


def test_follow_goes_on_from_the_new_end_of_a_compacted_output(tmp_path: Path) -> None:
    path = tmp_path / "output.log"
    path.write_bytes(b"one\ntwo\n\x1b]52;c;ZXZpbA==\x07three\n")
    out = io.StringIO()
    tail = _tail(path, 0)
    _pump(tail, out, raw=False)
    assert out.getvalue() == "one\ntwo\nthree\n"  # the OSC 52 clipboard escape is gone
    os.truncate(path, 4)  # the output cap compacted it
    _pump(tail, out, raw=False)  # nothing new: what the cap kept was printed already
    with open(path, "ab") as f:
        f.write(b"four\n")
    _pump(tail, out, raw=False)
    assert out.getvalue().endswith("three\nfour\n")
