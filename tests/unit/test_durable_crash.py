"""Crash replay: every lifecycle write, cut at random points with unsynced data dropped.

A small model of a file system records what the real :func:`runner.durable.write_json` does
through its ``FileOps`` seam: file data is durable only once fsynced, directory changes only
once the directory is fsynced. A crash keeps the durable state plus a random subset of what
was pending (and torn prefixes of unsynced data). After every simulated crash, each file must
be one complete version that was written, and every write that returned must be there.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from runner.durable import write_json
from runner.model import ProcessIdentity, RunSpec, RunState, Status

ROOT = "/run"


@dataclass
class Inode:
    volatile: bytes = b""
    durable: bytes | None = None  # None: never synced


@dataclass
class ModelFs:
    """Records operations; can produce the state a crash after any prefix would leave."""

    inodes: list[Inode] = field(default_factory=list)
    names: dict[str, int] = field(default_factory=dict)  # the live directory
    durable_names: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[str, str, int | None]] = field(default_factory=list)  # dir ops
    fds: dict[int, int] = field(default_factory=dict)
    log: list[tuple[str, object]] = field(default_factory=list)

    # --- FileOps ---
    def create(self, path: str, mode: int = 0o600) -> int:
        ino = len(self.inodes)
        self.inodes.append(Inode())
        self.names[path] = ino
        self.pending.append(("link", path, ino))
        fd = 1000 + len(self.fds)
        self.fds[fd] = ino
        self.log.append(("create", path))
        return fd

    def write(self, fd: int, data: bytes) -> None:
        self.inodes[self.fds[fd]].volatile += data
        self.log.append(("write", fd))

    def fsync(self, fd: int) -> None:
        ino = self.inodes[self.fds[fd]]
        ino.durable = ino.volatile
        self.log.append(("fsync", fd))

    def close(self, fd: int) -> None:
        self.log.append(("close", fd))

    def replace(self, src: str, dst: str) -> None:
        ino = self.names.pop(src)
        self.names[dst] = ino
        self.pending.append(("unlink", src, None))
        self.pending.append(("link", dst, ino))
        self.log.append(("replace", dst))

    def fsync_dir(self, path: str) -> None:
        self.durable_names = dict(self.names)
        self.pending.clear()
        self.log.append(("fsync_dir", path))

    def unlink(self, path: str) -> None:
        if path in self.names:
            del self.names[path]
            self.pending.append(("unlink", path, None))

    # --- crash ---
    def crash_view(self, rng: random.Random) -> dict[str, bytes]:
        names = dict(self.durable_names)
        for op, name, ino in self.pending:
            if rng.random() < 0.5:
                continue  # this metadata change never reached the disk
            if op == "link" and ino is not None:
                names[name] = ino
            else:
                names.pop(name, None)
        out = {}
        for name, ino_id in names.items():
            ino = self.inodes[ino_id]
            if ino.durable is not None and ino.durable == ino.volatile:
                out[name] = ino.durable
            else:  # unsynced data: lost, kept, or torn
                choice = rng.random()
                base = ino.durable or b""
                if choice < 0.4:
                    out[name] = base
                elif choice < 0.7:
                    out[name] = ino.volatile
                else:
                    out[name] = ino.volatile[: rng.randrange(len(ino.volatile) + 1)]
        return out


class Snapshotting(ModelFs):
    """Keeps a deep copy of the model after every operation, to crash after any prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.history: list[ModelFs] = []
        self.completed: list[list[tuple[str, bytes]]] = []  # writes acknowledged so far
        self._acked: list[tuple[str, bytes]] = []

    def _snap(self) -> None:
        copy = ModelFs(
            inodes=[Inode(i.volatile, i.durable) for i in self.inodes],
            names=dict(self.names),
            durable_names=dict(self.durable_names),
            pending=list(self.pending),
            fds=dict(self.fds),
        )
        self.history.append(copy)
        self.completed.append(list(self._acked))

    def ack(self, path: str, data: bytes) -> None:
        self._acked.append((path, data))

    def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
        attr = super().__getattribute__(name)
        if name in ("create", "write", "fsync", "close", "replace", "fsync_dir", "unlink"):

            def wrapped(*args):  # type: ignore[no-untyped-def]
                result = attr(*args)
                self._snap()
                return result

            return wrapped
        return attr


def lifecycle_writes() -> list[tuple[str, object]]:
    """The sequence of files a run's launcher and supervisor write, in order."""
    me = ProcessIdentity(pid=4242, start_ticks=99, boot_id="b")
    spec = RunSpec(id="000001", name="t", command=("python3", "t.py"), cwd="/", created_at=1.0)
    base = RunState(
        run_id="000001", attempt=1, status=Status.STARTING, updated_at=1.0, supervisor=me
    )
    writes: list[tuple[str, object]] = [(f"{ROOT}/spec.json", spec.to_json())]
    for i, (status, reason) in enumerate(
        [
            (Status.STARTING, "supervisor started"),
            (Status.QUEUED, "GPU 0 busy"),
            (Status.RUNNING, "running"),
            (Status.PAUSED, "paused by user"),
            (Status.RUNNING, "running"),
            (Status.STOPPED, "stopped by user; exit 0"),
        ]
    ):
        st = RunState(
            **{**base.__dict__, "status": status, "reason": reason, "updated_at": 2.0 + i}
        )
        writes.append((f"{ROOT}/state.json", st.to_json()))
    return writes


def encoded(obj: object) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()


def replay(writer, seed_count: int, seed: int = 0) -> list[str]:  # type: ignore[no-untyped-def]
    """Run the writes through ``writer``; crash after every op with random drops; list faults."""
    fs = Snapshotting()
    versions: dict[str, set[bytes]] = {}
    for path, obj in lifecycle_writes():
        writer(path, obj, fs)
        versions.setdefault(path, set()).add(encoded(obj))
        fs.ack(path, encoded(obj))
    rng = random.Random(seed)
    faults = []
    for _ in range(seed_count):
        k = rng.randrange(len(fs.history))
        snap, acked = fs.history[k], fs.completed[k]
        view = snap.crash_view(rng)
        for path, allowed in versions.items():
            content = view.get(path)
            if content is not None and content not in allowed:
                faults.append(f"op {k}: {path} holds {content[:30]!r}")
            latest = [d for p, d in acked if p == path]
            if latest and content is None:
                faults.append(f"op {k}: acknowledged {path} is missing")
            elif latest and content in allowed:
                # The last acknowledged write, or a newer one still in flight.
                order = [encoded(o) for p, o in lifecycle_writes() if p == path]
                if order.index(content) < order.index(latest[-1]):
                    faults.append(f"op {k}: {path} went back to an older version")
    return faults


def durable_writer(path: str, obj: object, fs: ModelFs) -> None:
    write_json(path, obj, ops=fs)


def test_every_crash_point_leaves_old_or_new_never_partial() -> None:
    faults = replay(durable_writer, seed_count=3000)
    assert faults == []


def test_every_operation_index_is_exercised() -> None:
    fs = Snapshotting()
    for path, obj in lifecycle_writes():
        durable_writer(path, obj, fs)
    ops = len(fs.history)
    # 7 writes x (create, write, fsync, close, replace, fsync_dir)
    assert ops == 7 * 6
    rng = random.Random(1)
    hit = {rng.randrange(ops) for _ in range(3000)}
    assert hit == set(range(ops))


@pytest.mark.parametrize("broken", ["no_fsync", "no_dir_fsync"])
def test_the_model_catches_a_writer_that_skips_a_sync(broken: str) -> None:
    """The replay has teeth: a writer without fsync (or without the folder fsync) fails it."""

    def writer(path: str, obj: object, fs: ModelFs) -> None:
        tmp = f"{path}.tmp"
        fd = fs.create(tmp)
        fs.write(fd, encoded(obj))
        if broken != "no_fsync":
            fs.fsync(fd)
        fs.close(fd)
        fs.replace(tmp, path)
        if broken != "no_dir_fsync":
            fs.fsync_dir(os.path.dirname(path))

    assert replay(writer, seed_count=3000) != []


def test_real_write_json_leaves_no_temp_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for i in range(20):
        write_json(tmp_path / "state.json", {"i": i})
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert json.loads((tmp_path / "state.json").read_text()) == {"i": 19}


def test_latest_checkpoint_is_the_newer_of_announced_and_on_disk(tmp_path: Path) -> None:
    from runner.control.reruns import latest_checkpoint
    from runner.model import SCHEMA
    from runner.registry import SUMMARY, Registry

    reg = Registry(tmp_path)
    reg.ensure()
    spec = RunSpec(id="000001", name="t", command=("python3", "t.py"), cwd="/", created_at=1.0)
    folder = reg.create(spec)
    ckpts = folder / "checkpoints"
    ckpts.mkdir(exist_ok=True)
    assert latest_checkpoint(reg, "000001") is None
    announced = tmp_path / "elsewhere.pt"
    announced.write_bytes(b"a")
    os.utime(announced, (100.0, 100.0))
    write_json(folder / SUMMARY, {"schema": SCHEMA, "latest_checkpoint": str(announced)})
    assert latest_checkpoint(reg, "000001") == str(announced)
    unannounced = ckpts / "step-200.pt"
    unannounced.write_bytes(b"b")
    os.utime(unannounced, (200.0, 200.0))
    (ckpts / ".partial.tmp").write_bytes(b"c")  # a save in progress is never picked
    assert latest_checkpoint(reg, "000001") == str(unannounced)
    os.utime(announced, (300.0, 300.0))
    assert latest_checkpoint(reg, "000001") == str(announced)
