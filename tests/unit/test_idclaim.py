"""Claiming run ids by ``mkdir`` alone, as allocators on several hosts do (issue 15)."""

from __future__ import annotations

import threading
from pathlib import Path

from runner import idclaim


def _highest(runs: Path) -> int:
    return max((int(p.name) for p in runs.iterdir() if p.name.isdigit()), default=0)


def _claim(runs: Path, count: int, hint: Path) -> list[str]:
    return idclaim.claim_ids(runs, count, hint=hint, width=6, highest=lambda: _highest(runs))


def test_a_stale_or_damaged_hint_only_costs_failed_mkdirs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    hint = tmp_path / "next_id"
    assert _claim(runs, 3, hint) == ["000001", "000002", "000003"]
    assert idclaim.read_hint(hint) == 4
    hint.write_text("1\n")  # another host's old hint
    assert _claim(runs, 1, hint) == ["000004"]
    hint.write_text("garb")  # never half-written by us, but anything can be on disk
    assert _claim(runs, 1, hint) == ["000005"]
    for n in range(6, 40):
        (runs / f"{n:06d}").mkdir()  # a sweep another host allocated meanwhile
    hint.write_text("5\n")
    assert _claim(runs, 2, hint) == ["000040", "000041"]


def test_the_hint_never_moves_back(tmp_path: Path) -> None:
    hint = tmp_path / "next_id"
    idclaim.write_hint(hint, 50)
    idclaim.write_hint(hint, 20)
    assert idclaim.read_hint(hint) == 50
    assert [p.name for p in tmp_path.iterdir()] == ["next_id"]  # no temporary left behind


def test_racing_allocators_never_share_an_id(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    hint = tmp_path / "next_id"
    got: list[list[str]] = [[], [], [], []]
    start = threading.Barrier(len(got))

    def allocate(slot: int) -> None:
        start.wait()
        for _ in range(50):
            got[slot].extend(_claim(runs, 1 + slot % 2, hint))

    threads = [threading.Thread(target=allocate, args=(i,)) for i in range(len(got))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for g in got for i in g]
    assert len(ids) == len(set(ids)) == 50 * (1 + 2 + 1 + 2)
    assert sorted(p.name for p in runs.iterdir()) == sorted(ids)
