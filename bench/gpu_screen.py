"""Open the real TUI on a registry for a few seconds, headless, and keep what it showed.

Used by ``bench/gpu_check.sh`` where tmux may be missing: the app runs under Textual's pilot
(``run_test``) with its real producer, so the footer polls NVML (or the fake that
``BACKPROP_FAKE_NVML`` names) as it does in a terminal. Writes an SVG of the screen and a text
file with the footer's lines and the GPU figures behind them (JSON), then exits 0 if the
footer showed GPUs and every run of the registry, else 1 with the reason.

    python bench/gpu_screen.py --home ~/.backprop --seconds 5 --svg screen.svg --text screen.txt
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.registry import Registry  # noqa: E402
from tui.app import build_app  # noqa: E402
from tui.widgets.gpu_footer import GpuFooter  # noqa: E402


async def capture(
    home: Path, seconds: float, size: tuple[int, int]
) -> tuple[str, dict[str, object], list[str]]:
    """Run the app, wait for data, hold; return the SVG, what it showed, the footer's lines."""
    registry = Registry(home)
    expected = {v.id for v in registry.list_runs()}
    app = build_app(registry)  # preferences go to the registry, not the output folder
    problem = ""
    async with app.run_test(size=size) as pilot:
        footer = app.query_one(GpuFooter)
        deadline = time.monotonic() + max(15.0, seconds)
        while time.monotonic() < deadline:
            shown = {r.id for r in app.snapshot.runs}
            probed = footer.gpu.error != "probing" or footer.gpu.gpus
            if probed and expected <= shown and not app.snapshot.loading:
                break
            await pilot.pause(0.1)
        else:
            problem = "the TUI showed no data within 15 s"
        await pilot.pause(seconds)  # the footer keeps polling meanwhile, as it would for a user
        await pilot.pause()
        svg = app.export_screenshot(title="backprop (gpu_check)")
        gpu = footer.gpu
        lines = footer.render().plain.splitlines()  # type: ignore[union-attr]
        shown = {r.id for r in app.snapshot.runs}
    if not gpu.gpus:
        problem = problem or f"the footer shows no GPU: {gpu.error}"
    elif not expected <= shown:
        problem = problem or f"runs missing from the TUI: {sorted(expected - shown)}"
    report = {
        "footer": lines,
        "gpus": [dataclasses.asdict(g) for g in gpu.gpus],
        "gpu_error": gpu.error,
        "runs": sorted(shown),
        "problem": problem,
    }
    return svg, report, lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--home", required=True, type=Path, help="the registry (BACKPROP_HOME)")
    p.add_argument("--seconds", type=float, default=5.0, help="how long the TUI stays open")
    p.add_argument("--svg", required=True, type=Path)
    p.add_argument("--text", required=True, type=Path)
    p.add_argument("--size", default="120x36", help="columns x lines")
    a = p.parse_args(argv)
    cols, _, rows = a.size.partition("x")
    svg, report, lines = asyncio.run(capture(a.home, a.seconds, (int(cols), int(rows))))
    a.svg.write_text(svg)
    a.text.write_text("\n".join(lines) + "\n\n" + json.dumps(report, indent=1, default=str) + "\n")
    problem = report["problem"]
    if problem:
        print(f"gpu_screen: {problem}", file=sys.stderr)
        return 1
    print(f"gpu_screen: wrote {a.svg} and {a.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
