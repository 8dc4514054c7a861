"""Damaged registry files and hostile names: no exception, runs marked corrupt, nothing lost."""

from __future__ import annotations

import copy
import io
import json
import os
import random
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from runner.control import bundle as bundles
from runner.control import submission
from runner.control.errors import LifecycleError
from runner.control.submission import SubmitOptions
from runner.durable import write_json
from runner.model import (
    ProcessIdentity,
    RunSpec,
    RunState,
    ShapeError,
    Status,
    validate_name,
)
from runner.registry import Registry, RunNotFound

ME = ProcessIdentity(pid=999_999, start_ticks=1, boot_id="some-other-boot")


def good_spec(run_id: str) -> dict[str, Any]:
    return RunSpec(
        id=run_id, name="ok", command=("python3", "t.py"), cwd="/tmp", created_at=time.time() - 3600
    ).to_json()


def good_state(run_id: str) -> dict[str, Any]:
    return RunState(
        run_id=run_id,
        attempt=1,
        status=Status.COMPLETED,
        updated_at=1.0,
        supervisor=ME,
        exit_code=0,
        started_at=1.0,
        ended_at=2.0,
    ).to_json()


WRONG_VALUES: list[Any] = [
    None,
    True,
    3,
    -1,
    1.5,
    "x",
    "",
    [],
    {},
    [1, "a"],
    {"a": 1},
    "\x00",
    "../../etc",
    10**30,
    "\x1b[31m",
    "[bold]x",
]


def mutate(rng: random.Random, doc: dict[str, Any]) -> bytes:
    """One damaged version of a JSON document."""
    raw = json.dumps(doc).encode()
    kind = rng.randrange(9)
    if kind == 0:  # truncated anywhere
        return raw[: rng.randrange(len(raw))]
    if kind == 1:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if kind == 2:  # invalid UTF-8 inside a string
        i = raw.index(b'"name"') + 9 if b'"name"' in raw else 1
        return raw[:i] + b"\xff\xfe\xc3" + raw[i:]
    if kind == 3:  # a key with a wrong-typed value
        d = copy.deepcopy(doc)
        d[rng.choice(sorted(d))] = rng.choice(WRONG_VALUES)
        return json.dumps(d).encode()
    if kind == 4:  # a missing key
        d = copy.deepcopy(doc)
        d.pop(rng.choice(sorted(d)))
        return json.dumps(d).encode()
    if kind == 5:  # the wrong top-level shape
        return json.dumps(rng.choice([[doc], "spec", 7, None, [], True])).encode()
    if kind == 6:  # non-finite numbers and deep nesting
        return rng.choice(
            [
                b'{"schema": 1, "created_at": NaN}',
                b"[" * 5000 + b"]" * 5000,
                b'{"schema": Infinity}',
            ]
        )
    if kind == 7:  # empty, whitespace, or a byte-order mark
        return rng.choice([b"", b"   \n", b"\xef\xbb\xbf" + raw])
    d = copy.deepcopy(doc)  # another run's record, or a future schema
    if "id" in d:
        d["id"] = "000000"
    if "run_id" in d:
        d["run_id"] = "000000"
    d["schema"] = rng.choice([2, "1", 0])
    return json.dumps(d).encode()


def strict_json(raw: bytes) -> Any:
    """What the registry accepts: UTF-8 without BOM, finite numbers only."""

    def refuse(name: str) -> Any:
        raise ValueError(name)

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def snapshot_tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_thousands_of_damaged_files_mark_runs_corrupt_and_delete_nothing(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "home")
    reg.ensure()
    rng = random.Random(7)
    expected_corrupt = set()
    n = 3200
    for i in range(1, n + 1):
        run_id = f"{i:06d}"
        folder = reg.runs_dir / run_id
        folder.mkdir()
        which = rng.choice(["spec", "state", "summary", "metrics"])
        spec_bytes = json.dumps(good_spec(run_id)).encode()
        state_bytes = json.dumps(good_state(run_id)).encode()
        if which == "spec":
            spec_bytes = mutate(rng, good_spec(run_id))
        elif which == "state":
            state_bytes = mutate(rng, good_state(run_id))
        (folder / "spec.json").write_bytes(spec_bytes)
        (folder / "state.json").write_bytes(state_bytes)
        if which == "summary":
            (folder / "summary.json").write_bytes(mutate(rng, {"schema": 1, "step": 3}))
        if which == "metrics":
            (folder / "metrics.jsonl").write_bytes(mutate(rng, {"a": 1, "s": 1}) + b"\n\xff")
        # Which of these a strict reader must refuse:
        try:
            spec = RunSpec.from_json(strict_json(spec_bytes))
            assert spec.id == run_id
            state = RunState.from_json(strict_json(state_bytes))
            assert state.run_id == run_id
        except (ShapeError, ValueError, AssertionError, RecursionError):
            expected_corrupt.add(run_id)
    before = snapshot_tree(reg.root)
    views = reg.list_runs()
    assert len(views) == n
    corrupt = {v.id for v in views if v.status is Status.CORRUPT}
    assert corrupt == expected_corrupt
    assert len(corrupt) > 1000  # the generator really produced damage
    for v in views:
        json.dumps(v.to_json())  # every view is printable
        if v.status is Status.CORRUPT:
            assert v.reason  # says which file and why
    for run_id in sorted(corrupt)[:200]:
        assert reg.load(run_id).status is Status.CORRUPT
    after = snapshot_tree(reg.root)
    after.pop("index.cache", None)
    assert after == before  # nothing deleted or rewritten


def test_listing_cache_is_rebuilt_when_damaged(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import runner.registry as registry_mod

    monkeypatch.setattr(registry_mod, "CACHE_SETTLE_S", 0.0)
    reg = Registry(tmp_path / "home")
    reg.ensure()
    for i in range(1, 4):
        run_id = f"{i:06d}"
        (reg.runs_dir / run_id).mkdir()
        write_json(reg.runs_dir / run_id / "spec.json", good_spec(run_id))
        write_json(reg.runs_dir / run_id / "state.json", good_state(run_id))
    first = [v.to_json() for v in reg.list_runs()]
    assert (reg.root / "index.cache").is_file()
    cached = [v.to_json() for v in reg.list_runs()]
    assert cached == first and all(v.cached is not None for v in reg.list_runs())
    (reg.root / "index.cache").write_bytes(b"\xff garbage")
    assert [v.to_json() for v in reg.list_runs()] == first
    # A changed state invalidates its entry.
    st = RunState.from_json(good_state("000002"))
    write_json(
        reg.runs_dir / "000002" / "state.json",
        RunState(**{**st.__dict__, "status": Status.FAILED, "exit_code": 9}).to_json(),
    )
    by_id = {v.id: v.to_json() for v in reg.list_runs()}
    assert by_id["000002"]["status"] == "failed" and by_id["000002"]["exit_code"] == 9


HOSTILE = [
    "../../x",
    "a/b",
    "x\x00y",
    "n" * 300,
    "\x1b[2J\x1b]0;pwn\x07",
    "[bold red]x[/]",
    "..",
    ".",
    "",
    "/etc/passwd",
    "-rf",
    "a\nb",
    "\u202etxt.py",
    " lead",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused_and_create_nothing(tmp_path: Path, name: str) -> None:
    reg = Registry(tmp_path / "home")
    reg.ensure()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError):
        validate_name(name)
    with pytest.raises(ValueError):
        submission.submit(reg, ["true"], name=name, options=SubmitOptions(start=False))
    with pytest.raises(ValueError):
        reg.run_dir(name)
    with pytest.raises(RunNotFound):
        reg.resolve(name)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_hostile_name_in_a_forged_spec_is_corrupt(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "home")
    reg.ensure()
    (reg.runs_dir / "000001").mkdir()
    spec = good_spec("000001")
    spec["name"] = "\x1b]52;c;cm0gLXJmIH4=\x07"
    write_json(reg.runs_dir / "000001" / "spec.json", spec)
    view = reg.load("000001")
    assert view.status is Status.CORRUPT and "\x1b" not in view.to_json()["name"]


def _bundle(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize(
    "member", ["../../escaped.txt", "/tmp/abs-escape.txt", "000001/../../escaped.txt"]
)
def test_hostile_bundles_never_write_outside_the_root(tmp_path: Path, member: str) -> None:
    reg = Registry(tmp_path / "home")
    reg.ensure()
    spec = json.dumps(good_spec("000001")).encode()
    bundle = _bundle(tmp_path, {"000001/spec.json": spec, member: b"pwned"})
    with pytest.raises(LifecycleError):
        bundles.import_run(reg, bundle)
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/abs-escape.txt").exists()
    assert reg.ids() == []  # nothing half-imported
    leftovers = [p.name for p in reg.runs_dir.iterdir()]
    assert leftovers == []


def test_symlinked_bundle_member_is_refused(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "home")
    reg.ensure()
    path = tmp_path / "link.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = json.dumps(good_spec("000001")).encode()
        info = tarfile.TarInfo("000001/spec.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("000001/output.log")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/shadow"
        tar.addfile(link)
    with pytest.raises(LifecycleError):
        bundles.import_run(reg, path)
    assert reg.ids() == []
