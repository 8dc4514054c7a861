"""``backprop inspect`` on hostile files: nothing a terminal would interpret gets through.

Issue 12 item 6: key names from a checkpoint or a safetensors header reached the terminal raw
(OSC 0 retitled the window, OSC 52 wrote the clipboard), and random bytes were reported as
"pickled Python objects".
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path
from typing import Any

import pytest

from runner.checkpoints.inspection import CheckpointError, render_summary, summarize

TITLE = "step\x1b]0;T\x07"
CLIPBOARD = "\x1b]52;c;cHduZWQ=\x07w"
HOSTILE = ("\x1b", "\x07", "\x9b", "\x90", "\r")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _assert_clean(summary: dict[str, Any]) -> None:
    text = render_summary(summary) + json.dumps(summary, ensure_ascii=False)
    for s in [*_strings(summary), text]:
        assert not any(c in s for c in HOSTILE), repr(s)


def test_the_issue_checkpoint_prints_no_escape(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "x.pt"
    clear = "\x1b[2J\x1b[H"
    torch.save(
        {
            TITLE: 3,
            "note": f"hello{clear}",
            "model": {CLIPBOARD: torch.zeros(2), f"enc{clear}.w": torch.zeros(3)},
            "optimizer": {"param_groups": [{"lr\x1b]0;x\x07": 0.1, "params": [0]}], "state": {}},
        },
        path,
    )
    summary = summarize(path)
    _assert_clean(summary)
    assert summary["entries"]["step"] == 3 and summary["parameters"] == 5


def test_a_hostile_safetensors_header_prints_no_escape(tmp_path: Path) -> None:
    header = {
        "__metadata__": {f"k{TITLE}": f"v{CLIPBOARD}"},
        CLIPBOARD: {"dtype": "F32\x1b[2J", "shape": [2], "data_offsets": [0, 8]},
        f"enc\x9b31m.{TITLE}": {"dtype": "F16", "shape": [4], "data_offsets": [8, 16]},
    }
    raw = json.dumps(header).encode()
    path = tmp_path / "m\x1b]0;P\x07.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * 16)
    summary = summarize(path)
    _assert_clean(summary)
    assert summary["tensors"] == 2 and summary["parameters"] == 6


def test_an_error_about_a_hostile_file_name_is_one_clean_line(tmp_path: Path) -> None:
    path = tmp_path / "bad\x1b]52;c;eA==\x07.safetensors"
    path.write_bytes(b"\x01")
    with pytest.raises(CheckpointError) as err:
        summarize(path)
    message = str(err.value)
    assert "\n" not in message and not any(c in message for c in HOSTILE)


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_are_not_a_checkpoint(tmp_path: Path, seed: int) -> None:
    pytest.importorskip("torch")
    rng = random.Random(seed)
    path = tmp_path / "r.pt"
    # Half of the files start like a pickle (protocol 2), so torch's unpickler reads them.
    head = b"\x80\x02" if seed % 2 else b""
    path.write_bytes(head + bytes(rng.randrange(256) for _ in range(4096)))
    with pytest.raises(CheckpointError) as err:
        summarize(path)
    message = str(err.value)
    assert "not a PyTorch checkpoint" in message and "pickled Python objects" not in message
    assert "\n" not in message
