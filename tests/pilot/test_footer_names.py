"""The footer names each GPU (name, UUID, bus) in its tooltip: its lines have no room for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sample_registry

from governor.probes import GpuSnapshot
from tests.pilot.conftest import settle
from tui.widgets.gpu_footer import GpuFooter


async def test_the_footer_tooltip_names_every_gpu(make_app: Callable[..., Any]) -> None:
    app = make_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        tip = str(app.query_one(GpuFooter).tooltip)
    gpus = sample_registry.gpu_snapshot().gpus
    assert gpus
    for g in gpus:
        assert f"GPU{g.index}: {g.name} ({g.uuid}, bus {g.pci_bus_id})" in tip


async def test_without_a_driver_the_tooltip_says_why(make_app: Callable[..., Any]) -> None:
    app = make_app(gpu_source=lambda: GpuSnapshot(error="NVML Shared Library Not Found"))
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        assert str(app.query_one(GpuFooter).tooltip) == "GPU: n/a (NVML Shared Library Not Found)"
