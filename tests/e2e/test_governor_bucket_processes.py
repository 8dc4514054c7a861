"""The tests of ``tests/unit/test_governor_bucket.py`` that start a real process.

That file: The token bucket: pure arithmetic, and many processes drawing from the one on disk
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.unit.test_governor_bucket import ROOT

RACER = textwrap.dedent(
    """
    import json, sys, time
    from governor.bucket import BucketState, try_take
    from governor.store import GovernorStore

    store, go, until = GovernorStore(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    time.sleep(max(0.0, go - time.time()))
    taken, first = 0, time.time()
    while time.time() < until:
        with store.transaction() as st:
            now = time.time()
            ok, st.bucket = try_take(st.bucket or BucketState.full(5, now), now, 5, 2.0)
            taken += ok
    print(json.dumps({"taken": taken, "first": first}))
    """
)


@pytest.mark.slow
def test_processes_racing_share_one_bucket(tmp_path: Path) -> None:
    """Six processes hammer the on-disk bucket: together they get capacity + rate * time."""
    start = time.time()
    go, until = start + 1.5, start + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), repr(go), repr(until)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(6)
    ]
    results = [json.loads(p.communicate(timeout=30)[0]) for p in procs]
    total = sum(r["taken"] for r in results)
    assert total <= 5 + 2.0 * (until - go) + 1
    # The bucket fills from the first take on (later than ``go`` when start-up was slow).
    started = min(r["first"] for r in results)
    assert total >= 5 + 2.0 * (until - started) - 2  # and nothing is lost to races either
