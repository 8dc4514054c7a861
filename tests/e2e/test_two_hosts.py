"""Two hosts writing one registry at once: run ids stay unique without cross-host locks.

Issue 15: "Two processes posing as two hosts (different host names) each submit 100 runs at
once into one registry folder: 200 distinct ids, 200 intact run folders." Each submitter runs
in its own UTS namespace (``unshare --uts``, then ``hostname``: the kernel's host name really
differs, as provenance records), and ``BACKPROP_POLL=1`` makes the registry count as a network
file system, so allocation takes no ``flock``: ``mkdir`` alone decides who owns an id.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runner.model import RunSpec
from runner.registry import Registry
from runner.tickets import Queue
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.slow

RUNS_EACH = 100

SUBMITTER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from runner.control.submission import SubmitOptions, submit
    from runner.registry import Registry

    reg, go, ready = Registry(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    ready.write_text(os.uname().nodename)
    while not go.exists():
        time.sleep(0.002)
    host = os.uname().nodename
    cmd, opts = [sys.executable, "-c", "pass"], SubmitOptions(cwd=sys.argv[4])
    ids = [submit(reg, cmd, name=f"{host}-{i}", options=opts).id for i in range(int(sys.argv[5]))]
    print(json.dumps({"host": host, "ids": ids}))
    """
)


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("hostname") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--uts", "sh", "-c", "hostname bp-probe && hostname"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return probe.returncode == 0 and probe.stdout.strip() == "bp-probe"


def test_two_hosts_submitting_at_once_get_distinct_ids(home: Path, tmp_path: Path) -> None:
    if not _can_unshare():
        pytest.skip("needs root for unshare --uts (a host name of its own per submitter)")
    script = tmp_path / "submit.py"
    script.write_text(SUBMITTER)
    work = tmp_path / "work"
    work.mkdir()
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BACKPROP_HOME": str(home), "BACKPROP_POLL": "1"}
    procs, ready = [], []
    for host in ("bp-node-a", "bp-node-b"):
        flag = tmp_path / f"ready-{host}"
        ready.append(flag)
        cmd = f'hostname {host} && exec "$@"'
        procs.append(
            subprocess.Popen(
                [
                    "unshare",
                    "--uts",
                    "sh",
                    "-c",
                    cmd,
                    "sh",
                    sys.executable,
                    str(script),
                    str(home),
                    str(go),
                    str(flag),
                    str(work),
                    str(RUNS_EACH),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    wait_until(lambda: all(f.exists() for f in ready), timeout=60, message="both submitters")
    go.write_text("go")  # both are past their imports: they submit at the same moment
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert {r["host"] for r in results} == {"bp-node-a", "bp-node-b"}
    ids = [i for r in results for i in r["ids"]]
    assert len(ids) == 2 * RUNS_EACH and len(set(ids)) == 2 * RUNS_EACH
    reg = Registry(home)
    assert sorted(reg.ids()) == sorted(ids)  # no folder left behind, none shared
    queue = Queue(home)
    for r in results:
        for n, run_id in enumerate(r["ids"]):
            spec: RunSpec = reg.read_spec(run_id)  # intact: strict parse, its own id
            assert spec.name == f"{r['host']}-{n}"
            prov = json.loads((reg.run_dir(run_id) / "provenance.json").read_text())
            assert prov["host"]["hostname"] == r["host"]
            ticket = queue.read_ticket(run_id)
            assert ticket is not None and ticket.attempt == 1
