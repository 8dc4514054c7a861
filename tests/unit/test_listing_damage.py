"""The TUI's producer shows damage the listing cache would otherwise hide (issue 12 item 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

import runner.registry as registry_mod
from governor.probes import GpuSnapshot
from runner.model import Status
from runner.registry import Registry
from tests.unit.test_listing_cache_damage import _finished
from tui.feed.producer import Producer


def test_an_emptied_spec_shows_corrupt_in_the_tui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_mod, "CACHE_SETTLE_S", 0.0)
    reg = Registry(tmp_path / "home")
    reg.ensure()
    _finished(reg, "000001")
    reg.list_runs()  # `backprop ls` ran before: the cache is warm

    def scan() -> dict[str, Status]:
        producer = Producer(
            reg,
            lambda snap: None,
            gpu_source=lambda: GpuSnapshot(error="none"),
            host_source=lambda: None,
        )
        return {r.id: r.status for r in producer.scan().runs}

    assert scan() == {"000001": Status.COMPLETED}
    with open(reg.runs_dir / "000001" / "spec.json", "r+b") as f:
        f.truncate(0)
    assert scan() == {"000001": Status.CORRUPT}
