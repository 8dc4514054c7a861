"""Curves as image files: valid PNG and SVG with one drawn line per run or seed group."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402 - matplotlib's own dependency, present with it

from runner.metrics.history import encode_point  # noqa: E402
from runner.model import RunSpec  # noqa: E402
from runner.registry import METRICS, Registry  # noqa: E402
from tui.plot_image import draw, image_format, lines_for_runs  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


def make_runs(root: Path, commands: list[list[str]], name: str = "train") -> Registry:
    reg = Registry(root)
    reg.ensure()
    for i, cmd in enumerate(commands):
        run_id = reg.allocate_id()
        reg.create(
            RunSpec(id=run_id, name=f"{name}{i}", command=tuple(cmd), cwd="/w", created_at=0)
        )
        with open(reg.run_dir(run_id) / METRICS, "wb") as f:
            for s in range(1, 30):
                f.write(encode_point(1, s, float(s), {"loss": 1 / s + i * 0.01, "acc": s / 30}))
    return reg


def series_ids(svg: Path) -> list[str]:
    root = ET.parse(svg).getroot()
    return [
        str(g.get("id")) for g in root.iter(f"{SVG}g") if str(g.get("id", "")).startswith("series-")
    ]


def test_svg_holds_one_line_per_run(tmp_path: Path) -> None:
    reg = make_runs(tmp_path / "h", [["python", "a.py", "--lr", str(x)] for x in (1, 2, 3)])
    lines, metric = lines_for_runs(reg, reg.ids(), None)
    out = draw(lines, tmp_path / "c.svg", metric=metric)
    ids = series_ids(out)
    assert ids == ["series-0", "series-1", "series-2"]
    root = ET.parse(out).getroot()
    for gid in ids:  # each group holds the drawn path of its line
        group = next(g for g in root.iter(f"{SVG}g") if g.get("id") == gid)
        assert list(group.iter(f"{SVG}path"))


def test_a_seed_group_is_one_line_with_its_band(tmp_path: Path) -> None:
    cmds = [["python", "a.py", "--seed", str(s)] for s in (0, 1, 2)] + [["python", "b.py"]]
    reg = make_runs(tmp_path / "h", cmds)
    lines, _ = lines_for_runs(reg, reg.ids(), "loss")
    assert len(lines) == 2 and lines[0].band is not None
    band = lines[0].band
    assert band.n[0] == 3 and math.isclose(band.mean[0], 1.01) and band.std[0] > 0
    out = draw(lines, tmp_path / "c.svg", metric="loss")
    assert series_ids(out) == ["series-0", "series-1"]
    root = ET.parse(out).getroot()
    assert [g.get("id") for g in root.iter(f"{SVG}g") if g.get("id") == "band-0"] == ["band-0"]
    separate, _ = lines_for_runs(reg, reg.ids(), "loss", group_seeds=False)
    assert len(separate) == 4


def test_png_is_a_valid_image_naming_its_series(tmp_path: Path) -> None:
    reg = make_runs(tmp_path / "h", [["python", "a.py", "--lr", str(x)] for x in (1, 2)])
    lines, metric = lines_for_runs(reg, reg.ids(), "acc")
    out = draw(lines, tmp_path / "c.png", metric=metric)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.size == (800, 450)
        assert img.text["Description"] == "backprop: 2 series of acc"  # type: ignore[attr-defined]


def test_only_png_and_svg_are_accepted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        image_format(tmp_path / "c.jpg")
