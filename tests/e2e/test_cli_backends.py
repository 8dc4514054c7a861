"""``ls``, ``show`` and ``status`` with runs placed on Slurm and Ray (files written by hand):
the real command line, in its own process."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from tests import remote_runs

LOCAL, BIG, WAIT, RAY = "000001", "000002", "000003", "000004"


def _table(text: str) -> tuple[list[str], dict[str, str]]:
    lines = text.splitlines()
    return lines[0].split(), {line.split()[0]: line for line in lines[1:]}


def test_ls_shows_and_filters_backends(cli: Any, home: Path) -> None:
    remote_runs.build(home)
    head, rows = _table(cli("ls").stdout)
    assert head[head.index("STATUS") + 1] == "BACKEND"
    assert "slurm 4242" in rows[BIG] and "[slurm says ended (COMPLETED)]" in rows[BIG]
    assert "[slurm: Resources]" in rows[WAIT]
    assert "ray backprop-000004-1" in rows[RAY] and "says" not in rows[RAY]
    assert " local " in rows[LOCAL]

    _, rows = _table(cli("ls", "--backend", "slurm").stdout)
    assert set(rows) == {BIG, WAIT}
    head, rows = _table(cli("ls", "--backend", "local").stdout)
    assert set(rows) == {LOCAL} and "BACKEND" not in head  # only local runs: no column

    listed = cli.json("ls")
    assert {d["id"]: d["backend"] for d in listed} == {
        LOCAL: "local",
        BIG: "slurm",
        WAIT: "slurm",
        RAY: "ray",
    }
    where = {d["id"]: d.get("where") for d in listed}
    assert where[LOCAL] is None
    assert where[BIG]["handle"] == "4242" and where[BIG]["host"] == "node07"
    assert where[BIG]["engine_state"] == "ended" and where[BIG]["engine_disagrees"] is True
    assert where[WAIT]["engine_reason"] == "Resources"
    assert where[WAIT]["engine_disagrees"] is False
    assert [d["id"] for d in cli.json("ls", "--backend", "ray")] == [RAY]

    bad = cli("ls", "--backend", "pbs", check=False)
    assert bad.returncode == 2 and "invalid choice: 'pbs'" in bad.stderr


def test_ls_of_local_runs_is_unchanged(cli: Any, home: Path) -> None:
    remote_runs.build(home)
    for run_id in (BIG, WAIT, RAY):
        shutil.rmtree(home / "runs" / run_id)
    head, rows = _table(cli("ls").stdout)
    assert head == ["ID", "NAME", "STATUS", "STEP", "LOSS", "ATT", "TIME", "REASON"]
    assert cli.json("ls")[0]["backend"] == "local" and "where" not in cli.json("ls")[0]


def test_show_says_where_a_remote_run_is(cli: Any, home: Path) -> None:
    remote_runs.build(home)
    text = cli("show", BIG).stdout
    fields = {line.strip().split("  ")[0]: line for line in text.splitlines()}
    assert fields["backend"].split()[-1] == "slurm"
    assert fields["host"].split()[-1] == "node07"
    assert fields["job id"].split()[-1] == "4242"
    assert fields["submitted"].split()[-2:] == ["from", "login1"]
    assert "ended (COMPLETED)  [disagrees with ours: running]" in fields["engine says"]
    doc = cli.json("show", WAIT)
    assert doc["backend"] == "slurm"
    assert doc["where"]["engine_state"] == "pending"
    assert doc["where"]["engine_reason"] == "Resources"
    assert doc["where"]["host"] is None  # not running anywhere yet
    local = cli("show", LOCAL).stdout
    assert "engine says" not in local and "job id" not in local
    assert "where" not in cli.json("show", LOCAL)


def test_status_reports_each_configured_backend(cli: Any, home: Path) -> None:
    (home / "backprop.toml").write_text(
        "[backend]\nname = 'ray'\nray_address = 'http://127.0.0.1:8265'\n"
    )
    report = cli.json("status")
    by_name = {b["backend"]: b for b in report["backends"]}
    assert list(by_name) == ["local", "ray"]  # configured: local plus [backend] name
    assert by_name["local"]["reachable"] is True and by_name["local"]["available"] is True
    ray = by_name["ray"]
    if importlib.util.find_spec("runner.backends.ray") is None:
        # Without the ray backend's module it is "not available", never a crash.
        assert (ray["available"], ray["reachable"]) == (False, False)
        assert "runner.backends.ray" in ray["why"]
    else:  # a head may or may not answer there (CI starts one): either way it says why
        assert ray["available"] is True and isinstance(ray["reachable"], bool) and ray["why"]
    remote_runs.build(home)  # a run placed on Slurm makes Slurm a configured backend too
    text = cli("status").stdout
    lines = {ln.split()[1]: ln for ln in text.splitlines() if ln.startswith("backend ")}
    assert set(lines) == {"local", "slurm", "ray"}
    assert "reachable: this machine" in lines["local"]
    assert json.dumps(cli.json("status")["backends"])  # JSON-able
