"""The listing cache never hides damage (issue 12 item 7).

After a finished run's ``spec.json`` was emptied in place, ``ls`` and the TUI (both list
through :meth:`Registry.list_runs`) kept saying ``completed`` from the cache while ``show``
said ``corrupt``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import runner.registry as registry_mod
from runner.durable import write_json
from runner.model import ProcessIdentity, RunSpec, RunState, Status
from runner.registry import Registry

GONE = ProcessIdentity(pid=999_999, start_ticks=1, boot_id="another-boot")


def _finished(reg: Registry, run_id: str) -> Path:
    folder = reg.runs_dir / run_id
    folder.mkdir()
    spec = RunSpec(id=run_id, name=f"run{run_id}", command=("true",), cwd="/", created_at=1.0)
    write_json(folder / "spec.json", spec.to_json())
    state = RunState(
        run_id=run_id,
        attempt=1,
        status=Status.COMPLETED,
        updated_at=2.0,
        supervisor=GONE,
        exit_code=0,
        started_at=1.0,
        ended_at=2.0,
    )
    write_json(folder / "state.json", state.to_json())
    return folder


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.setattr(registry_mod, "CACHE_SETTLE_S", 0.0)
    r = Registry(tmp_path / "home")
    r.ensure()
    for i in (1, 2):
        _finished(r, f"{i:06d}")
    first = r.list_runs()
    assert [v.status for v in first] == [Status.COMPLETED] * 2
    assert all(v.cached is not None for v in r.list_runs())  # now served from the cache
    return r


def _listed(reg: Registry, run_id: str) -> Status:
    return next(v.status for v in reg.list_runs() if v.id == run_id)


def test_an_emptied_spec_lists_as_corrupt(reg: Registry) -> None:
    spec = reg.runs_dir / "000001" / "spec.json"
    with open(spec, "r+b") as f:  # in place: the folder's and state's times do not move
        f.truncate(0)
    assert reg.load("000001").status is Status.CORRUPT
    assert _listed(reg, "000001") is Status.CORRUPT
    assert _listed(reg, "000002") is Status.COMPLETED


def test_a_same_size_rewrite_with_old_times_lists_as_corrupt(reg: Registry) -> None:
    spec = reg.runs_dir / "000002" / "spec.json"
    st = os.stat(spec)
    raw = spec.read_bytes()
    damaged = raw.replace(b'"id":"000002"', b'"id":"000009"')
    assert len(damaged) == len(raw) and damaged != raw
    with open(spec, "r+b") as f:
        f.write(damaged)
    os.utime(spec, ns=(st.st_atime_ns, st.st_mtime_ns))  # `touch -d`: mtime set back
    assert _listed(reg, "000002") is Status.CORRUPT


def test_a_damaged_state_lists_as_corrupt(reg: Registry) -> None:
    state = reg.runs_dir / "000001" / "state.json"
    st = os.stat(state)
    state.write_bytes(b"{")
    os.utime(state, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _listed(reg, "000001") is Status.CORRUPT


def test_a_listing_without_change_still_comes_from_the_cache(reg: Registry) -> None:
    # Nothing changed: every entry is a cache hit.
    assert all(v.cached is not None for v in reg.list_runs())


def test_the_registry_and_the_cache_do_not_import_each_other() -> None:
    import runner.listing_cache as cache_mod

    source = Path(cache_mod.__file__).read_text()
    assert "runner.registry" not in source.replace("the registry", "")
