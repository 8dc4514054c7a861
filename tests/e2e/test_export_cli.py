"""`backprop export-metrics`, `plot` and `compare` through the real CLI, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.export import read_csv, rows_of, run_history
from tests.conftest import Cli

SCRIPT = """
import json, sys
seed = int(sys.argv[sys.argv.index("--seed") + 1])
for s in range(1, 11):
    print(json.dumps({"step": s, "loss": 1 / s + seed / 100, "acc": s / 10}))
"""


def test_export_plot_and_bad_input(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    script = cli.cwd / "seeded.py"
    script.write_text(SCRIPT)
    ids = cli.json("run", str(script), "--sweep", "seed=0,1,2")["ids"]
    for run_id in ids:
        cli.wait_status(run_id, "completed")
    out = tmp_path / "m.csv"
    done = cli.json("export-metrics", *ids, "-o", str(out))
    assert done == {"ids": ids, "file": str(out), "format": "csv", "rows": 30}
    rows = list(read_csv(out.read_text().splitlines()))
    expected = [r for i in ids for r in rows_of(i, run_history(cli.home / "runs" / i))]
    assert rows == expected
    jsonl = cli("export-metrics", ids[0], "--format", "jsonl").stdout.splitlines()
    assert [json.loads(x)["step"] for x in jsonl] == list(range(1, 11))

    # A sweep over three seeds: one mean curve with its band.
    svg = cli.json("plot", *ids, "-o", str(tmp_path / "c.svg"))
    assert svg["curves"] == 1 and svg["metric"] == "loss"
    drawn = (tmp_path / "c.svg").read_text()
    assert 'id="series-0"' in drawn and 'id="band-0"' in drawn and 'id="series-1"' not in drawn
    separate = cli.json("plot", "--no-group", *ids, "-o", str(tmp_path / "c.png"))
    assert separate["curves"] == 3 and (tmp_path / "c.png").stat().st_size > 1000

    for args in (
        ("plot", ids[0], "-o", str(tmp_path / "c.gif")),
        ("compare", ids[0]),
    ):
        bad = cli(*args, check=False)
        assert bad.returncode == 2 and bad.stderr.startswith("backprop: error:"), args
        assert len(bad.stderr.strip().splitlines()) == 1
    assert cli("export-metrics", ids[0], "--format", "xlsx", check=False).returncode == 2
    missing = cli("plot", ids[0], "--metric", "nope", "-o", str(tmp_path / "n.png"), check=False)
    assert missing.returncode == 1 and "no values of metric 'nope'" in missing.stderr
