"""Snapshot tests: one per screen state shown in the README (see screenshots/).

Deterministic by construction: the sample registry has fixed timestamps, the clock is frozen,
the GPUs and the host are fakes, NO_COLOR is removed and TZ is UTC (see conftest).
"""

from __future__ import annotations

import make_screenshots as shots
import sample_registry

SHOT = {s.name: s for s in shots.SHOTS}


def snap(snap_compare, make_app, name: str) -> bool:
    shot = SHOT[name]
    app = make_app(
        readonly=shot.readonly,
        gpu_source=sample_registry.gpu_snapshot if shot.gpus else shots.no_gpu,
    )

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await shots.drive(pilot, shot)

    return snap_compare(app, terminal_size=shot.size, run_before=run_before)


class TestOverview:
    def test_every_status_with_output_plot_and_two_gpus(self, snap_compare, make_app):
        """Tree: a queued, paused, two running (spinner), corrupt (id as name), lost, stopped
        run, the resnet-sweep group with failed/timeboxed/completed runs, and a completed run,
        each with sparkline, step and loss; cursor on gpt2-small. Right: its output (green
        INFO, cyan it/s, the OSC/markup line shown inert as text) and its loss plot. Footer:
        GPU0 87% 23.5/40G 71°C gpt2-small, GPU1 54% 9.8/40G 83°C (hot) with vit-tiny and
        diffusion-unet, CPU 37%, RAM 22.4/64G, queue 1 and the key hints."""
        assert snap(snap_compare, make_app, "overview")


class TestDetails:
    def test_running_run_expanded(self, snap_compare, make_app):
        """gpt2-small expanded under its row: id 000008 attempt 2, command, status running,
        ran 59m55s with limit 4h00m, 1300 steps at 2 steps/s 65% eta, loss and best, 13
        checkpoints (latest step_1300.pt), GPU 0 with 21.2 GiB VRAM in use (asked 16 GiB),
        health ok, created/started times, no exit, no lineage."""
        assert snap(snap_compare, make_app, "details")


class TestPlot:
    def test_picked_metrics(self, snap_compare, make_app):
        """The plot pane focused (bright border) showing loss and val_loss of gpt2-small,
        titled "loss, val_loss · gpt2-small"."""
        assert snap(snap_compare, make_app, "plot")


class TestCompare:
    def test_marked_runs_overlaid(self, snap_compare, make_app):
        """Four runs marked with • (gpt2-small, vit-tiny, resnet lr=1e-3, mnist-baseline);
        the right side is one "Compare" plot with their four loss curves and a legend."""
        assert snap(snap_compare, make_app, "compare")


class TestGrid:
    def test_running_outputs_side_by_side(self, snap_compare, make_app):
        """Three panes titled diffusion-unet, vit-tiny and gpt2-small, each with its output."""
        assert snap(snap_compare, make_app, "grid")


class TestFollowAll:
    def test_interleaved_output(self, snap_compare, make_app):
        """One pane of output lines, each prefixed with its run's name in colour and │."""
        assert snap(snap_compare, make_app, "follow")


class TestNewRun:
    def test_dialog(self, snap_compare, make_app):
        """The New run dialog over the dimmed app: train.py typed, --lr 3e-4 in Arguments
        (focused), placeholders in Name, Time limit, GPUs, VRAM; the key note at the bottom."""
        assert snap(snap_compare, make_app, "new-run")


class TestHelp:
    def test_keys(self, snap_compare, make_app):
        """Every key with its meaning, Ctrl+P for the palette, and the note that q quits the
        TUI only while runs keep running."""
        assert snap(snap_compare, make_app, "help")


class TestSmall:
    def test_80x24(self, snap_compare, make_app):
        """At 80x24 everything fits: tree with sparkline, step and loss columns, output,
        plot, both GPU lines and the host line with the first key hints."""
        assert snap(snap_compare, make_app, "small-80x24")


class TestReadonlyNoGpu:
    def test_readonly_without_driver(self, snap_compare, make_app):
        """Title ends in "read-only"; the footer says "GPU: n/a (NVML library not found: no
        NVIDIA driver)" and its hints start with read-only and show no changing keys."""
        assert snap(snap_compare, make_app, "readonly-no-gpu")
