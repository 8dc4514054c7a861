"""The shared state file, the learned-VRAM record and framework detection."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from governor import learn
from governor.bucket import BucketState
from governor.frameworks import detect
from governor.policy import Request
from governor.queue import Waiter
from governor.reservations import Lease
from governor.store import GovernorState, GovernorStore
from runner.model import ProcessIdentity, RunSpec

ME = ProcessIdentity(pid=os.getpid(), start_ticks=1, boot_id="b")


def test_state_round_trips(tmp_path: Path) -> None:
    store = GovernorStore(tmp_path)
    with store.transaction() as st:
        st.bucket = BucketState(2.5, 100.0)
        st.leases["000001"] = Lease(
            run_id="000001",
            name="a",
            group="g",
            gpus=(0, 1),
            vram=5,
            ram=6,
            admitted_at=1.0,
            started_at=2.0,
            forced=True,
            supervisor=ME,
            trainer=ME,
            peak_vram=7,
            command_key="cmd:x",
            script_key=None,
        )
        st.waiters["000002"] = Waiter(
            request=Request(run_id="000002", gpus=0),
            since=3.0,
            order_t=2.0,
            attempt=2,
            supervisor=ME,
            reason="r",
            rule="gpu",
        )
    again = store.read()
    assert again.bucket == BucketState(2.5, 100.0)
    assert again.leases["000001"].gpus == (0, 1) and again.leases["000001"].forced
    assert again.leases["000001"] == st.leases["000001"]
    assert again.waiters == st.waiters


def test_no_write_when_nothing_changed(tmp_path: Path) -> None:
    store = GovernorStore(tmp_path)
    with store.transaction() as st:
        st.bucket = BucketState(1.0, 1.0)
    before = store.state_path.stat().st_mtime_ns, store.state_path.stat().st_ino
    with store.transaction():
        pass
    assert (store.state_path.stat().st_mtime_ns, store.state_path.stat().st_ino) == before


def test_an_exception_leaves_the_file_alone(tmp_path: Path) -> None:
    store = GovernorStore(tmp_path)
    try:
        with store.transaction() as st:
            st.bucket = BucketState(1.0, 1.0)
            raise RuntimeError
    except RuntimeError:
        pass
    assert not store.state_path.exists()


def _read_back(data: bytes) -> GovernorState:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = GovernorStore(d)
        store.dir.mkdir()
        store.state_path.write_bytes(data)
        return store.read()


def _assert_well_formed(state: GovernorState) -> None:
    """Only entries a governor can act on survive, and they survive a write and a read."""
    import json

    for run_id, lease in state.leases.items():
        assert run_id.isdigit() and lease.run_id == run_id
        assert all(isinstance(g, int) for g in lease.gpus)
    for run_id, waiter in state.waiters.items():
        assert run_id.isdigit() and waiter.request.run_id == run_id
    again = _read_back(json.dumps(state.to_json()).encode())
    assert again.to_json() == state.to_json()


@given(st.binary(max_size=300))
def test_damaged_state_reads_as_empty_or_partial(junk: bytes) -> None:
    state = _read_back(junk)
    if not junk.lstrip().startswith(b"{"):  # not even a JSON object: nothing to keep
        assert state.to_json() == GovernorState().to_json()
    _assert_well_formed(state)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_IDS = st.sampled_from(["000001", "000002", "../x", "", "7"]) | st.text(max_size=6)
_FIELDS = st.sampled_from(["run_id", "gpus", "vram", "ram", "group", "admitted_at", "name"])


@given(
    st.dictionaries(_IDS, st.dictionaries(_FIELDS, _IDS | _JSON, max_size=5), max_size=4),
    st.dictionaries(_IDS, _JSON, max_size=3),
    _JSON,
)
def test_a_json_state_of_any_shape_keeps_only_well_formed_entries(
    leases: dict[str, object], waiters: dict[str, object], bucket: object
) -> None:
    import json

    doc = {"schema": 1, "bucket": bucket, "leases": leases, "waiters": waiters}
    state = _read_back(json.dumps(doc).encode())
    _assert_well_formed(state)
    assert set(state.leases) <= set(leases) and set(state.waiters) <= set(waiters)


def test_wrong_shaped_entries_are_dropped(tmp_path: Path) -> None:
    import json

    store = GovernorStore(tmp_path)
    store.dir.mkdir()
    store.state_path.write_text(
        json.dumps(
            {
                "schema": 1,
                "bucket": {"tokens": "many", "t": 1},
                "leases": {
                    "000001": {"run_id": "000001", "gpus": ["x"]},
                    "../evil": {"run_id": "../evil"},
                    "000003": {"run_id": "000004"},
                    "000005": {"run_id": "000005", "vram": 3},
                },
                "waiters": {
                    "000006": {"request": {"run_id": "000006"}, "since": 1, "order_t": 1},
                    "000007": {"request": {"run_id": "000007"}, "since": "x", "order_t": 1},
                },
            }
        )
    )
    s = store.read()
    assert s.bucket is None
    assert list(s.leases) == ["000005"] and list(s.waiters) == ["000006"]


def test_prune_keeps_live_supervisors_and_live_trainers() -> None:
    dead = ProcessIdentity(pid=5, start_ticks=5, boot_id="gone")
    st = GovernorState(
        leases={
            "000001": Lease(run_id="000001", supervisor=ME),
            "000002": Lease(run_id="000002", supervisor=dead, trainer=ME),
            "000003": Lease(run_id="000003", supervisor=dead, trainer=dead),
        },
        waiters={
            "000004": Waiter(request=Request(run_id="000004"), since=0, order_t=0, supervisor=dead),
            "000005": Waiter(request=Request(run_id="000005"), since=0, order_t=0, supervisor=ME),
        },
    )
    assert sorted(st.prune(lambda i: i == ME)) == ["000003", "000004"]
    assert sorted(st.leases) == ["000001", "000002"] and list(st.waiters) == ["000005"]


def _spec(command: tuple[str, ...], script: str | None) -> RunSpec:
    return RunSpec(id="000001", name="n", command=command, cwd="/", created_at=0.0, script=script)


def test_learned_record_keeps_recent_peaks_and_falls_back_to_the_script(tmp_path: Path) -> None:
    a = _spec(("py", "/t.py", "--bs", "32"), "/t.py")
    b = _spec(("py", "/t.py", "--bs", "64"), "/t.py")
    path = tmp_path / "learned.json"
    data = learn.load(path)
    assert learn.lookup(data, learn.command_key(a), learn.script_key(a)) is None
    for i, peak in enumerate([10, 30, 20, 5, 5, 5, 5]):
        data = learn.record(data, learn.command_key(a), learn.script_key(a), peak, float(i))
    learn.save(path, data)
    data = learn.load(path)
    assert learn.lookup(data, learn.command_key(a), None) == 20  # 30 fell out of the last 5
    assert learn.lookup(data, learn.command_key(b), learn.script_key(b)) == 20
    assert learn.lookup(data, learn.command_key(b), None) is None
    path.write_text("{not json")
    assert learn.load(path) == learn.empty()


def test_learned_record_is_bounded() -> None:
    data = learn.empty()
    for i in range(learn.MAX_ENTRIES + 50):
        data = learn.record(data, f"cmd:{i}", None, 1, float(i))
    assert len(data["entries"]) == learn.MAX_ENTRIES
    assert "cmd:0" not in data["entries"] and f"cmd:{learn.MAX_ENTRIES + 49}" in data["entries"]


def test_framework_detection(tmp_path: Path) -> None:
    cases = {
        "import torch\nimport numpy as np\n": {"pytorch"},
        "import os, sys, tensorflow as tf\n": {"tensorflow"},
        "from jax import numpy as jnp\nimport torch.nn as nn\n": {"jax", "pytorch"},
        "    import flax.linen as nn  # inside a function\n": {"jax"},
        "from lightning.pytorch import Trainer\n": {"pytorch"},
        "# import torch\nprint('import jax')\n": set(),
        "import torchvision\n": set(),
    }
    for source, expected in cases.items():
        p = tmp_path / "s.py"
        p.write_text(source)
        assert detect(str(p)) == expected, source
    assert detect(str(tmp_path / "missing.py")) == frozenset()
    assert detect(None) == frozenset()
