"""Finding the checkpoints a script saves by itself: forms, completeness and the bounded walk."""

from __future__ import annotations

import json
import os
import struct
import time
import zipfile
from pathlib import Path

import pytest

from runner.checkpoints import found as fc
from runner.checkpoints.forms import (
    compile_globs,
    file_is_whole,
    folder_is_whole,
    is_checkpoint_name,
    paths_in_line,
    step_from_name,
)
from runner.checkpoints.found import CheckpointFinder
from runner.config import ConfigError, _run_defaults
from runner.control import reruns
from runner.metrics.history import read_history
from runner.metrics.ingest import Ingestor
from runner.model import RunSpec
from runner.registry import METRICS, OUTPUT, SUMMARY, Registry

# (line, the path it names) -- the printed forms of well-known code
NAMED = [
    ("saving checkpoint to out", "out"),  # nanoGPT train.py
    ("Saving model checkpoint to hf_out/checkpoint-500", "hf_out/checkpoint-500"),  # HF Trainer
    ("Checkpoint saved: runs/exp1/best.pt.", "runs/exp1/best.pt"),
    ("checkpoint saved to /data/ckpt/last.pth", "/data/ckpt/last.pth"),
    (
        "Epoch 0, global step 50: 'val_loss' reached 0.41 (best 0.41), saving model to "
        "'/w/lightning_logs/version_0/checkpoints/epoch=0-step=50.ckpt' as top 1",
        "/w/lightning_logs/version_0/checkpoints/epoch=0-step=50.ckpt",
    ),
    ("Saved model to best.pt", "best.pt"),
    ("=> saving checkpoint 'model_best.pth.tar'", None),  # quoted name without "to": not a path
    ("INFO: Saving checkpoint at epoch 3 to `ckpt/ep3.pt`", "ckpt/ep3.pt"),
    ("writing weights to model_5.pth", "model_5.pth"),
]
NOT_NAMED = [
    "step 250: train loss 2.1000, val loss 2.2000",
    "iter 100: loss 2.3456, time 12.34ms, mfu 3.21%",
    "Saving model shards: 100%|██████████| 1/1",
    "{'loss': '3.901', 'grad_norm': '0.8686', 'learning_rate': '4.583e-05', 'epoch': '0.03'}",
    "checkpoint every 500 steps",
    "Downloading https://example.com/model.bin to cache",
]


@pytest.mark.parametrize(("line", "path"), NAMED)
def test_paths_named_in_output(line: str, path: str | None) -> None:
    assert paths_in_line(line) == ([path] if path else [])


@pytest.mark.parametrize("line", NOT_NAMED)
def test_lines_that_name_no_checkpoint(line: str) -> None:
    assert paths_in_line(line) == []


def test_names_and_steps() -> None:
    assert is_checkpoint_name("ckpt.pt") and is_checkpoint_name("model.safetensors")
    assert is_checkpoint_name("epoch=0-step=5.ckpt") and is_checkpoint_name("ckpt_100")
    assert not is_checkpoint_name("pytorch_model.bin")
    assert is_checkpoint_name("pytorch_model.bin", beside_config=True)
    assert not is_checkpoint_name("ckpt.log") and not is_checkpoint_name(".ckpt.pt.tmp-99")
    assert not is_checkpoint_name("ckpt.pt.tmp")  # a save in progress
    assert step_from_name("/x/epoch=2-step=450.ckpt") == 450
    assert step_from_name("out/checkpoint-500") == 500
    assert step_from_name("iter_1000.pth") == 1000 and step_from_name("ckpt-00300.pt") == 300
    assert step_from_name("ckpt.pt") is None and step_from_name("model_5.pth") is None


def test_globs() -> None:
    rx = compile_globs(["*.npz", "runs/*/weights/**/*.h5", "./orbax/ckpt_?"])
    assert rx is not None
    for path in ("a.npz", "deep/er/a.npz", "runs/x/weights/a.h5", "runs/x/weights/b/c/a.h5"):
        assert rx.match(path), path
    for path in ("runs/x/y/weights/a.h5", "a.npz.txt", "orbax/ckpt_10"):
        assert not rx.match(path), path
    assert compile_globs([]) is None
    assert _run_defaults({"checkpoint_glob": "*.npz"}).checkpoint_globs == ("*.npz",)
    with pytest.raises(ConfigError):
        _run_defaults({"checkpoint_glob": [3]})


def _zip(path: Path, payload: bytes = b"w" * 1000) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)


def _safetensors(path: Path, cut: int = 0) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    data = struct.pack("<Q", len(header)) + header + b"\0" * 16
    path.write_bytes(data[: len(data) - cut])


def test_whole_files_and_folders(tmp_path: Path) -> None:
    _zip(tmp_path / "a.pt")
    assert file_is_whole(str(tmp_path / "a.pt")) is True
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:-10])  # a save stopped before its end record
    assert file_is_whole(str(tmp_path / "cut.pt")) is False
    _safetensors(tmp_path / "m.safetensors")
    _safetensors(tmp_path / "short.safetensors", cut=4)
    assert file_is_whole(str(tmp_path / "m.safetensors")) is True
    assert file_is_whole(str(tmp_path / "short.safetensors")) is False
    (tmp_path / "legacy.pt").write_bytes(b"\x80\x02legacy pickle")
    assert file_is_whole(str(tmp_path / "legacy.pt")) is None  # the format does not tell
    hf = tmp_path / "checkpoint-10"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    _safetensors(hf / "model.safetensors")
    assert folder_is_whole(str(hf)) is False  # trainer_state.json is written last
    (hf / "trainer_state.json").write_text("{}")
    assert folder_is_whole(str(hf)) is True


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def tick(self, s: float = fc.SCAN_INTERVAL_S) -> float:
        self.now += s
        return self.now


def _finder(root: Path, clock: Clock, **kw: object) -> CheckpointFinder:
    return CheckpointFinder(str(root), since=clock.now, clock=clock, **kw)  # type: ignore[arg-type]


def _age(path: Path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_walk_finds_this_attempts_checkpoints_once(tmp_path: Path) -> None:
    clock = Clock()
    _zip(tmp_path / "old.pt")
    _age(tmp_path / "old.pt")  # from before the attempt: not its checkpoint
    f = _finder(tmp_path, clock, exclude=[str(tmp_path / "registry")])
    assert f.poll(clock.now) == []
    ckpts = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    ckpts.mkdir(parents=True)
    _zip(ckpts / "epoch=0-step=10.ckpt")
    (tmp_path / "registry" / "runs").mkdir(parents=True)
    _zip(tmp_path / "registry" / "runs" / "x.pt")
    for hidden in (".git", ".venv", "__pycache__", "wandb"):
        (tmp_path / hidden).mkdir()
        _zip(tmp_path / hidden / "a.pt")
    venv = tmp_path / "env"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("")
    _zip(venv / "b.pt")
    found = f.poll(clock.tick())
    assert [(x.path, x.step, x.how) for x in found] == [
        (str(ckpts / "epoch=0-step=10.ckpt"), 10, "scan")
    ]
    assert f.poll(clock.tick()) == []  # recorded once
    _zip(tmp_path / "old.pt", b"new")  # replaced during the attempt: its checkpoint now
    assert [x.path for x in f.poll(clock.tick())] == [str(tmp_path / "old.pt")]
    assert sorted(f.live()) == sorted(
        [str(ckpts / "epoch=0-step=10.ckpt"), str(tmp_path / "old.pt")]
    )


def test_unknown_format_needs_two_equal_looks(tmp_path: Path) -> None:
    clock = Clock()
    f = _finder(tmp_path, clock)
    (tmp_path / "ckpt_5").write_bytes(b"opaque")
    assert f.poll(clock.tick()) == []  # first look
    with open(tmp_path / "ckpt_5", "ab") as fh:
        fh.write(b" still writing")
    assert f.poll(clock.tick()) == []  # changed since
    assert [x.step for x in f.poll(clock.tick())] == [5]  # the same twice: whole
    (tmp_path / "ckpt_6").write_bytes(b"opaque")
    assert [x.path for x in f.poll(clock.tick(), final=True)] == [str(tmp_path / "ckpt_6")]


def test_bin_only_beside_a_config_and_hf_folders(tmp_path: Path) -> None:
    clock = Clock()
    f = _finder(tmp_path, clock)
    (tmp_path / "vocab.bin").write_bytes(b"x")
    model = tmp_path / "final"
    model.mkdir()
    (model / "config.json").write_text("{}")
    _zip(model / "pytorch_model.bin")
    hf = tmp_path / "hf_out" / "checkpoint-20"
    hf.mkdir(parents=True)
    (hf / "config.json").write_text("{}")
    _safetensors(hf / "model.safetensors")
    found = f.poll(clock.tick())
    assert [x.path for x in found] == [str(model / "pytorch_model.bin")]  # the folder: not yet
    (hf / "trainer_state.json").write_text("{}")
    found = f.poll(clock.tick())
    assert [(x.path, x.step) for x in found] == [(str(hf), 20)]  # one record for the folder


def test_output_names_a_folder_and_the_step(tmp_path: Path) -> None:
    clock = Clock()
    out = tmp_path / "out"
    out.mkdir()
    _zip(out / "ckpt.pt")
    _age(out / "ckpt.pt")
    f = _finder(tmp_path, clock)
    f.hint("saving checkpoint to out", step=250)
    assert f.poll(clock.now) == []  # printed before the save: the old file is not it
    _zip(out / "ckpt.pt", b"iter 250")
    (found,) = f.poll(clock.tick())
    assert (found.path, found.step, found.how) == (str(out / "ckpt.pt"), 250, "output")


def test_globs_and_outside_paths(tmp_path: Path) -> None:
    clock = Clock()
    (tmp_path / "w").mkdir()
    f = _finder(tmp_path / "w", clock, globs=["*.npz"])
    _zip(tmp_path / "w" / "weights_3.npz")
    elsewhere = tmp_path / "elsewhere.pt"
    _zip(elsewhere)
    f.hint(f"Checkpoint saved: {elsewhere}")
    found = sorted(x.path for x in f.poll(clock.tick()))
    assert found == [str(elsewhere), str(tmp_path / "w" / "weights_3.npz")]


def test_a_working_dir_holding_a_data_set_is_not_listed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    data = tmp_path / "data"
    for i in range(5):
        (data / f"part{i}").mkdir(parents=True)
        for j in range(fc.DATA_DIR_LIMIT + 50):
            (data / f"part{i}" / f"{j}.pt").write_bytes(b"")
    f = _finder(tmp_path, clock)
    listed: list[str] = []
    real = os.scandir

    def counting(path: str) -> object:
        listed.append(str(path))
        return real(path)

    monkeypatch.setattr(fc.os, "scandir", counting)
    assert f.poll(clock.tick()) == []  # too many entries: a data set, not searched
    first = len(listed)
    listed.clear()
    f.poll(clock.tick())
    assert listed == [] and first == 7  # nothing changed: nothing listed again
    (tmp_path / "ckpt.pt").write_bytes(b"")
    _zip(tmp_path / "ckpt.pt")
    assert [x.path for x in f.poll(clock.tick())] == [str(tmp_path / "ckpt.pt")]
    assert listed == [str(tmp_path)]  # only the folder that changed


# --- in the supervisor's ingest loop, and for resume ---------------------------------------------


def _run(tmp_path: Path) -> tuple[Path, RunSpec]:
    run_dir = tmp_path / "home" / "runs" / "000001"
    (run_dir / "checkpoints").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    spec = RunSpec(
        id="000001", name="t", command=("python", "x.py"), cwd=str(tmp_path / "work"), created_at=0
    )
    return run_dir, spec


def test_ingest_records_a_found_checkpoint_like_an_announced_one(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)
    ing = Ingestor(run_dir, spec, 1, oom_kills=lambda: None)
    (tmp_path / "work" / "out").mkdir()
    with open(run_dir / OUTPUT, "ab") as f:
        f.write(b"step 20: train loss 1.0000, val loss 1.1000\nsaving checkpoint to out\n")
    _zip(tmp_path / "work" / "out" / "ckpt.pt")
    ing.poll(final=True)  # found in the last poll of an attempt: recorded all the same
    ing.close()
    ckpt = str(tmp_path / "work" / "out" / "ckpt.pt")
    s = json.loads((run_dir / SUMMARY).read_text())
    assert s["checkpoints"] == 1 and s["latest_checkpoint"] == ckpt
    assert s["recent_checkpoints"] == [ckpt]
    h = read_history(run_dir)
    assert [(e.path, e.step) for e in h.events] == [(ckpt, 20)]
    (record,) = [
        json.loads(line) for line in (run_dir / METRICS).read_text().splitlines() if '"e"' in line
    ]
    assert record["size"] == os.path.getsize(ckpt) and record["found"] == "output"
    # The next attempt knows it (counted, not recorded again) until it is replaced.
    ing2 = Ingestor(run_dir, spec, 2, oom_kills=lambda: None)
    ing2.poll(final=True)
    ing2.close()
    assert json.loads((run_dir / SUMMARY).read_text())["checkpoints"] == 1
    assert len(read_history(run_dir).events) == 1


def test_resume_takes_the_newest_whole_checkpoint(tmp_path: Path) -> None:
    run_dir, spec = _run(tmp_path)
    registry = Registry(tmp_path / "home")
    work = tmp_path / "work"
    _zip(work / "good.pt")
    _age(work / "good.pt", 60)
    (run_dir / "checkpoints" / "older.pt").write_bytes(b"x")
    _age(run_dir / "checkpoints" / "older.pt", 120)
    _zip(work / "cut.pt")
    data = (work / "cut.pt").read_bytes()
    (work / "cut.pt").write_bytes(data[: len(data) // 2])  # stopped while being written
    hf = work / "checkpoint-30"
    hf.mkdir()
    (hf / "config.json").write_text("{}")  # no trainer_state.json: not whole either
    recent = [str(work / "good.pt"), str(hf), str(work / "cut.pt")]
    summary = {"schema": 1, "latest_checkpoint": str(work / "cut.pt"), "recent_checkpoints": recent}
    (run_dir / SUMMARY).write_text(json.dumps(summary))
    assert reruns.latest_checkpoint(registry, "000001") == str(work / "good.pt")
    (hf / "trainer_state.json").write_text("{}")
    assert reruns.latest_checkpoint(registry, "000001") == str(hf)  # a folder resumes too


def test_a_large_folder_unchanged_since_before_the_attempt_is_not_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = tmp_path / "corpus" / "shard_0"
    corpus.mkdir(parents=True)
    for j in range(1500):
        (corpus / f"{j:05d}.pt").write_bytes(b"")
    if os.stat(corpus).st_size <= fc.OLD_BIG_DIR_BYTES:
        pytest.skip("this file system does not grow a folder's size with its entries")
    _age(corpus)
    clock = Clock()
    f = _finder(tmp_path, clock)
    listed: list[str] = []
    real = os.scandir
    monkeypatch.setattr(fc.os, "scandir", lambda p: listed.append(str(p)) or real(p))
    assert f.poll(clock.tick()) == []
    assert str(corpus) not in listed
    _zip(corpus / "ckpt_new.pt")  # an entry comes: listed now, the newest candidates kept
    assert [x.path for x in f.poll(clock.tick())] == [str(corpus / "ckpt_new.pt")]
    assert str(corpus) in listed


def test_a_fifo_where_a_checkpoint_was_never_blocks(tmp_path: Path) -> None:
    clock = Clock()
    f = _finder(tmp_path, clock)
    os.mkfifo(tmp_path / "ckpt.pt")
    f.hint(f"Checkpoint saved: {tmp_path / 'ckpt.pt'}")
    assert f.poll(clock.tick(), final=True) == []
    assert file_is_whole(str(tmp_path / "ckpt.pt")) is False  # opened without blocking


def test_a_bad_glob_is_refused_where_written_and_never_fatal_later() -> None:
    assert compile_globs(["[z-a]", "*.npz"]) is not None  # the good one still applies
    assert compile_globs(["[z-a]"]) is None
    with pytest.raises(ConfigError, match="checkpoint_glob"):
        _run_defaults({"checkpoint_glob": ["[z-a]"]})


def test_a_fault_in_the_finder_costs_no_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(CheckpointFinder, "_walk", broken)
    monkeypatch.setattr(CheckpointFinder, "_hint", broken)
    run_dir, spec = _run(tmp_path)
    ing = Ingestor(run_dir, spec, 1, oom_kills=lambda: None)
    with open(run_dir / OUTPUT, "ab") as f:
        f.write(b"step 1: loss 0.5\nsaving checkpoint to out\nstep 2: loss 0.25\n")
    ing.poll(final=True)
    ing.close()
    assert [p.step for p in read_history(run_dir).points] == [1, 2]
