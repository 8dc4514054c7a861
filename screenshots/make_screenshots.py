"""Write the README's screenshots from the real app on a deterministic registry.

Run as ``python screenshots/make_screenshots.py`` from the project root. It builds the sample
registry (one run in every status, fixed timestamps) in a temporary folder, opens the app on
it with a frozen clock and two fake GPUs, drives it with keys and saves one SVG per screen
state next to this file.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import sample_registry  # noqa: E402

from governor.probes import GpuSnapshot  # noqa: E402
from tui.app import build_app  # noqa: E402

RUNNING = "000008"


@dataclass(frozen=True)
class Shot:
    """One screenshot: file name, terminal size, where the cursor goes, keys pressed."""

    name: str
    what: str
    size: tuple[int, int] = (120, 36)
    cursor: str | None = RUNNING
    keys: tuple[str, ...] = ()
    readonly: bool = False
    gpus: bool = True
    mark: tuple[str, ...] = field(default_factory=tuple)
    registry: str = "build"  # the sample_registry function that writes its registry


SHOTS = (
    Shot("overview", "every status, output pane, metric plot, footer with two GPUs"),
    Shot("details", "a running run expanded: everything known about it", keys=("enter",)),
    Shot(
        "plot",
        "metrics picked with m: loss and val_loss of one run, plot focused",
        keys=("m", "down", "space", "enter", "tab", "tab"),
    ),
    Shot(
        "compare",
        "loss curves of four runs marked with Space, overlaid (c)",
        mark=("000008", "000009", "000001", "000002"),
        keys=("c",),
    ),
    Shot(
        "compare-seeds",
        "a seed group (mean ± std band) against another run, with what differs (c)",
        cursor="000004",
        mark=("000001", "000002", "000003", "000004"),
        keys=("c",),
        registry="build_seeds",
    ),
    Shot("grid", "running runs' output side by side (g)", keys=("g",)),
    Shot("follow", "every running run's new output, interleaved (a)", keys=("a",)),
    Shot("new-run", "the new-run dialog (r)", keys=("r", *"train.py", "tab", *"--lr 3e-4")),
    Shot("help", "the keys (?)", size=(100, 36), keys=("question_mark",)),
    Shot("small-80x24", "the whole layout at 80x24", size=(80, 24)),
    Shot(
        "readonly-no-gpu",
        "--readonly on a machine without a GPU driver, at 80x24",
        size=(80, 24),
        readonly=True,
        gpus=False,
    ),
)


async def drive(pilot, shot: Shot) -> None:  # type: ignore[no-untyped-def]
    """Put the app in the shot's state."""
    tree = pilot.app.tree
    for run_id in shot.mark:
        tree.move_to(tree.lines.index(next(ln for ln in tree.lines if ln.key == run_id)))
        await pilot.press("space")
    if shot.cursor is not None:
        tree.move_to(tree.lines.index(next(ln for ln in tree.lines if ln.key == shot.cursor)))
    await pilot.pause()
    if shot.keys:
        await pilot.press(*shot.keys)
    await pilot.pause()


def no_gpu() -> GpuSnapshot:
    """What the probe says without a driver."""
    return GpuSnapshot(error="NVML library not found: no NVIDIA driver")


async def take(shot: Shot, home: Path, out: Path) -> Path:
    """Open the app on the sample registry in ``home`` and save ``shot`` under ``out``."""
    registry = getattr(sample_registry, shot.registry)(home)
    app = build_app(
        registry,
        actions=None,
        gpu_source=sample_registry.gpu_snapshot if shot.gpus else no_gpu,
        host_source=sample_registry.host_info,
        clock=sample_registry.frozen_clock,
        readonly=shot.readonly,
        watch=False,
        prefs_path=home / "prefs.json",
    )
    async with app.run_test(size=shot.size) as pilot:
        await drive(pilot, shot)
        await pilot.pause()
        path = out / f"{shot.name}.svg"
        app.save_screenshot(filename=path.name, path=str(out))
    return path


def main() -> int:
    """Write every screenshot; print the files."""
    os.environ.pop("NO_COLOR", None)
    os.environ["TZ"] = "UTC"
    os.environ["TEXTUAL_ANIMATIONS"] = "none"
    time.tzset()
    for shot in SHOTS:
        with tempfile.TemporaryDirectory(prefix="backprop-shot-") as tmp:
            path = asyncio.run(take(shot, Path(tmp) / "home", HERE))
        print(f"{path.relative_to(HERE.parent)}  {shot.what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
