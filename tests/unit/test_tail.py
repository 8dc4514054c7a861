"""The one offset reader (runner.tail): complete lines only, bounded, rewrites followed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner import tail as tail_mod
from runner.tail import LineTail, read_lines


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def test_missing_file_reads_empty_then_follows(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    t = LineTail(path)
    assert t.read() == [] and t.offset == 0
    append(path, b"a\nb\n")
    assert t.read() == [b"a", b"b"] and t.offset == 4
    assert t.read() == []


def test_torn_tail_is_held_back_until_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "f"
    append(path, b"one\ntw")
    t = LineTail(path)
    assert t.read() == [b"one"]
    assert t.offset == 4  # before the torn line
    append(path, b"o\nthr")
    assert t.read() == [b"two"]
    assert t.offset == 8
    assert read_lines(path, 4) == ([b"two"], 8)


def test_crlf_endings_lose_their_carriage_return(tmp_path: Path) -> None:
    path = tmp_path / "f"
    append(path, b'{"a": 1}\r\nplain\nmid\rline\r\n')
    assert LineTail(path).read() == [b'{"a": 1}', b"plain", b"mid\rline"]


def test_line_over_the_bound_is_cut_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "f"
    append(path, b"x" * 100 + b"\nok\n")
    t = LineTail(path, max_line=10)
    assert t.read() == [b"x" * 10, b"ok"]
    assert t.over_long == 1 and t.offset == 104


def test_line_over_the_bound_can_be_dropped(tmp_path: Path) -> None:
    path = tmp_path / "f"
    append(path, b"short\n" + b"y" * 50 + b"\nafter\n")
    t = LineTail(path, max_line=10, over_long="drop")
    assert t.read() == [b"short", b"after"]
    assert t.over_long == 1


def test_endless_line_is_never_buffered_and_its_rest_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "f"
    t = LineTail(path, max_line=10)
    append(path, b"z" * 25)  # no newline yet, already over the bound
    assert t.read() == [b"z" * 10]
    assert t.offset == 25 and t.over_long == 1  # nothing held: the reader moved on
    append(path, b"z" * 30)
    assert t.read() == []  # still the same line: not counted twice
    append(path, b"zz\nnext\n")
    assert t.read() == [b"next"]
    assert t.over_long == 1


def test_chunked_reads_join_lines_across_chunk_edges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tail_mod, "READ_CHUNK", 7)
    path = tmp_path / "f"
    lines = [f"line number {i}".encode() for i in range(50)]
    append(path, b"\n".join(lines) + b"\n")
    t = LineTail(path)
    batches = list(t.batches())
    assert len(batches) > 1
    assert [ln for b in batches for ln in b] == lines
    assert t.offset == os.path.getsize(path)


def test_max_bytes_and_end_bound_the_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    append(path, b"aaaa\nbbbb\ncccc\n")
    t = LineTail(path)
    assert t.read(max_bytes=12) == [b"aaaa", b"bbbb"]  # "cc" is torn within the bound
    assert t.offset == 10
    assert t.read() == [b"cccc"]
    assert LineTail(path).read(end=7) == [b"aaaa"]


def test_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "f"
    append(path, b"old one\nold two\n")
    t = LineTail(path)
    assert len(t.read()) == 2
    path.write_bytes(b"new\n")  # truncated in place (same inode), shorter than the offset
    assert t.read() == [b"new"]
    assert t.restarts == 1 and t.offset == 4


def test_replaced_file_is_read_again_even_when_longer(tmp_path: Path) -> None:
    path = tmp_path / "f"
    append(path, b"a\n")
    t = LineTail(path)
    assert t.read() == [b"a"]
    other = tmp_path / "g"
    other.write_bytes(b"rotated 1\nrotated 2\n")
    os.replace(other, path)  # a new inode, past the old offset
    assert t.read() == [b"rotated 1", b"rotated 2"]
    assert t.restarts == 1


def test_stateless_read_does_not_restart_on_a_shrunk_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    append(path, b"a\n")
    assert read_lines(path, 100) == ([], 100)
    assert read_lines(tmp_path / "missing", 5) == ([], 5)


def test_partial_utf8_is_held_back_and_cuts_keep_whole_characters(tmp_path: Path) -> None:
    path = tmp_path / "f"
    euro = "€".encode()  # 3 bytes
    append(path, b"price " + euro[:2])
    t = LineTail(path)
    assert t.read() == []
    append(path, euro[2:] + b"\n")
    assert [ln.decode() for ln in t.read()] == ["price €"]
    cut = LineTail(path, max_line=7)  # "price " + 1 byte of the euro sign
    assert cut.read() == [b"price "]
    assert cut.over_long == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=40),
)
def test_any_write_pattern_gives_back_exactly_the_lines(
    tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], cuts: list[int]
) -> None:
    path = tmp_path_factory.mktemp("t") / "f"
    data = b"".join(ln + b"\n" for ln in lines)
    t = LineTail(path, max_line=1000)
    got: list[bytes] = []
    pos = 0
    for n in cuts:
        append(path, data[pos : pos + n])
        pos += n
        got += t.read()
    append(path, data[pos:])
    got += t.read()
    expected = [ln[:-1] if ln.endswith(b"\r") else ln for ln in lines]
    assert got == expected
    assert t.offset == len(data)
