"""``runner.report``: records land in report.jsonl in time, from any thread, or not at all."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.metrics import reporting
from runner.metrics.report_lines import _loads_report
from tests.conftest import ROOT, wait_until


def records(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "report.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        obj = _loads_report(line)  # what the ingestor accepts
        assert isinstance(obj, dict), line
        out.append(obj)
    return out


def script_env(run_dir: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKPROP_")}
    env.pop("PYTHONUNBUFFERED", None)  # a user's shell does not set it
    env["PYTHONPATH"] = str(ROOT)
    if run_dir is not None:
        env["BACKPROP_RUN_DIR"] = str(run_dir)
    return env


def run_script(code: str, run_dir: Path | None, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=script_env(run_dir),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=kw.pop("cwd", ROOT),
        **kw,
    )


@pytest.fixture
def in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Reports enabled in this process, into a fresh folder; reset afterwards."""
    reporting.shutdown()
    monkeypatch.setenv("BACKPROP_RUN_DIR", str(tmp_path))
    yield tmp_path
    reporting.shutdown()


def test_records_land_with_their_steps_when_the_script_exits(tmp_path: Path) -> None:
    code = (
        "from runner import report\n"
        "for i in range(1000):\n"
        "    report(step=i, loss=1.0 / (i + 1), lr=0.1)\n"
        "report(loss=float('nan'))\n"
    )
    proc = run_script(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    recs = records(tmp_path)
    assert [r["s"] for r in recs] == [*range(1000), None]
    assert recs[999]["v"] == {"loss": pytest.approx(1 / 1000), "lr": 0.1}
    assert math.isnan(recs[-1]["v"]["loss"])
    times = [r["ns"] for r in recs]
    assert times == sorted(times) and abs(times[0] / 1e9 - os.path.getmtime(tmp_path)) < 60


def test_the_first_record_is_written_at_once_and_the_rest_within_a_second(tmp_path: Path) -> None:
    code = (
        "import sys, time\n"
        "from runner import report\n"
        "report(step=1, loss=0.5)\n"
        "report(step=2, loss=0.4)\n"
        "sys.stdin.read()\n"  # block until the test closes stdin
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=script_env(tmp_path),
        stdin=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        wait_until(lambda: len(records(tmp_path)) >= 1, timeout=20, message="the first record")
        wait_until(lambda: len(records(tmp_path)) == 2, timeout=2.0, message="the periodic flush")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=20)
    assert [r["s"] for r in records(tmp_path)] == [1, 2]


def test_sigterm_flushes_before_the_process_dies(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from runner import report\n"
        "report(step=0, loss=1.0)\n"
        "for i in range(1, 500):\n"
        "    report(step=i, loss=0.5)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=script_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == -signal.SIGTERM  # still dies of SIGTERM, as it would have
    assert [r["s"] for r in records(tmp_path)] == list(range(500))


def test_no_op_outside_backprop(tmp_path: Path) -> None:
    code = (
        "import sys, threading, runner\n"
        "before = threading.active_count()\n"
        "for i in range(10):\n"
        "    runner.report(step=i, loss=0.5)\n"
        "from runner.metrics import reporting\n"
        "reporting.flush()\n"
        "print(threading.active_count() - before, reporting.is_active(),\n"
        "      'runner.durable' in sys.modules)\n"
    )
    proc = run_script(code, None, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "False", "False"]
    assert list(tmp_path.iterdir()) == []


def test_import_runner_stays_cheap() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import runner\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    proc = run_script(code, None)
    assert proc.returncode == 0, proc.stderr
    # runner.envnames holds only string constants (the variable names, spelled once)
    allowed = {
        "runner",
        "runner.metrics",
        "runner.metrics.reporting",
        "runner.envnames",
        "__future__",
        "_thread",
    }
    assert set(proc.stdout.split()) <= allowed


def test_records_from_many_threads_are_all_kept_whole(in_process: Path) -> None:
    threads, per_thread = 8, 4000

    def work(k: int) -> None:
        for i in range(per_thread):
            reporting.report(step=k * per_thread + i, thread=float(k), i=float(i))

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    reporting.flush()
    recs = records(in_process)
    assert len(recs) == threads * per_thread
    seen = set()
    for r in recs:
        k, i = int(r["v"]["thread"]), int(r["v"]["i"])
        assert r["s"] == k * per_thread + i  # step and values of one call stay together
        seen.add((k, i))
    assert len(seen) == threads * per_thread


def test_reporting_while_a_flush_runs_loses_nothing(in_process: Path) -> None:
    stop = threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            reporting.flush()

    t = threading.Thread(target=flusher)
    reporting.report(step=0, loss=1.0)
    t.start()
    for i in range(1, 20000):
        reporting.report(step=i, loss=0.5)
    stop.set()
    t.join()
    reporting.flush()
    assert [r["s"] for r in records(in_process)] == list(range(20000))


def test_a_forked_child_does_not_repeat_the_parents_pending_records(tmp_path: Path) -> None:
    code = (
        "import os\n"
        "from runner import report\n"
        "report(step=0, loss=1.0)\n"
        "report(step=1, loss=1.0)\n"  # pending in the buffer when forking
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    report(step=100, loss=2.0)\n"
        "    raise SystemExit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    proc = run_script(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["s"] for r in records(tmp_path)) == [0, 1, 100]


# --- encoding ----------------------------------------------------------------------------------


def test_odd_values_and_names_still_give_valid_lines(in_process: Path) -> None:
    reporting.report(step=1, loss=0.5)
    reporting.report(step=2, loss=float("inf"), acc=float("-inf"))
    reporting.report(step=None, **{'quo"te': 1.0, "per%cent": 2.0, "back\\slash": 3.0})
    reporting.report(step=4, loss=0.5, phase="train")  # a string: dropped, the rest kept
    reporting.report(step=5.0, flag=True, big=12345678901234567)  # type: ignore[arg-type]
    reporting.flush()
    recs = records(in_process)
    assert recs[1]["v"] == {"loss": math.inf, "acc": -math.inf}
    assert recs[2] == {
        "s": None,
        "ns": recs[2]["ns"],
        "v": {'quo"te': 1.0, "per%cent": 2.0, "back\\slash": 3.0},
    }
    assert recs[3]["v"] == {"loss": 0.5}
    assert recs[4]["s"] == 5 and recs[4]["v"]["flag"] == 1.0
    assert recs[4]["v"]["big"] == pytest.approx(12345678901234567, rel=1e-11)


value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**12), 10**12),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    batch=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(0, 10**9)),
            st.dictionaries(st.sampled_from(["loss", "lr", "acc", 'x"y', "%d"]), value, max_size=3),
        ),
        max_size=40,
    )
)
def test_encode_matches_the_records(batch: list[tuple[int | None, dict[str, Any]]]) -> None:
    flat: list[Any] = []
    for i, (step, metrics) in enumerate(batch):
        flat.extend((step, 1_000_000_000 + i, metrics))
    lines = reporting.encode(flat).splitlines()
    assert len(lines) == len(batch)
    for line, (step, metrics) in zip(lines, batch, strict=True):
        obj = _loads_report(line)
        assert isinstance(obj, dict), line
        assert obj["s"] == step
        expected = {k: float(v) for k, v in metrics.items() if _number(v)}
        assert set(obj["v"]) == set(expected), (line, metrics)
        for k, v in expected.items():
            got = obj["v"][k]
            assert (math.isnan(v) and math.isnan(got)) or got == pytest.approx(v, rel=1e-11)


def _number(v: Any) -> bool:
    """What report keeps: anything ``float()`` accepts (numbers, numpy scalars, "0.5")."""
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def test_encoded_lines_are_json(in_process: Path) -> None:
    reporting.report(step=3, loss=0.25)
    reporting.flush()
    line = (in_process / "report.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["v"] == {"loss": 0.25}
