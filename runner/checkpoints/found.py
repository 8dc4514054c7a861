"""Checkpoints a script saves by itself, found with no change to the script.

The supervisor's ingest loop owns one :class:`CheckpointFinder` per attempt. It looks for
files and folders that look like checkpoints (:mod:`runner.checkpoints.forms`: ``*.pt``,
``*.pth``, ``*.ckpt``, ``*.safetensors``, ``*.bin`` next to ``config.json``, HF Trainer's
``checkpoint-N/``, ``ckpt*``, and the run's ``checkpoint_glob`` patterns) that were created or
replaced under the run's working directory after the attempt started, and at paths the
output names ("saving checkpoint to out").

The cost is bounded, because a working directory may hold a data set:

- no watch: a walk every :data:`SCAN_INTERVAL_S` (at once after a line names a path), at most
  :data:`MAX_DEPTH` folders deep and :data:`MAX_DIRS` folders in all, breadth first;
- a folder whose modification time has not changed is not listed again (one ``stat``), so a
  quiet tree costs one ``stat`` per folder per walk; new listings stop at
  :data:`PASS_ENTRY_BUDGET` entries a walk (the rest wait for the next);
- a folder with more than :data:`BIG_DIR` entries (:data:`DATA_DIR_LIMIT` under a folder named
  ``data*``/``dataset*``) is not searched or descended, nor is a folder unchanged since before
  the attempt whose size says it is large (it is not even listed, until an entry comes or
  goes); hidden folders (``.git``, ``.venv``, caches), ``__pycache__``, ``node_modules``,
  ``site-packages``, ``wandb``, virtualenvs (a ``pyvenv.cfg``), symbolic links and the
  registry are skipped.

A checkpoint is recorded once it is whole: its format says so (a zip's end record, a
safetensors header's length; HF Trainer's ``trainer_state.json``, written last), or, where
the format says nothing, its size and time are the same at two looks (or the attempt ended).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.checkpoints.forms import (
    HF_FOLDER_RE,
    MODEL_CONFIG,
    compile_globs,
    file_is_whole,
    folder_is_whole,
    is_checkpoint_name,
    paths_in_line,
    step_from_name,
)
from runner.durable import dump_json
from runner.metrics.history import event_record

if TYPE_CHECKING:
    from runner.model import RunSpec

SCAN_INTERVAL_S = 2.0
MAX_DEPTH = 6
MAX_DIRS = 2_000
PASS_ENTRY_BUDGET = 10_000
BIG_DIR = 2_000
DATA_DIR_LIMIT = 200
BIG_RELIST_S = 60.0
OLD_BIG_DIR_BYTES = 16 * 1024  # ext4: about 450 entries; tmpfs: about 800
MAX_CANDIDATES = 512
MAX_RECORDED = 1_024
RECENT = 16
MAX_HINTS = 16
HINT_TTL_S = 600.0
MTIME_SLACK_NS = 50_000_000  # file times lag the wall clock by a timer tick
SKIP_NAMES = frozenset({"__pycache__", "node_modules", "site-packages", "dist-packages", "wandb"})


@dataclass(frozen=True)
class Found:
    """A whole checkpoint, seen for the first time (or replaced) in this attempt.

    Attributes:
        path: absolute path of the file or folder.
        size: bytes (a folder: the sum of its files).
        step: the step its name states, else the step when the output named it, if known.
        mtime: when it was last written.
        how: ``"scan"`` (found in the working directory) or ``"output"`` (named there).
    """

    path: str
    size: int
    step: int | None
    mtime: float
    how: str


@dataclass(slots=True)
class _Dir:
    mtime_ns: int
    listed_at: float
    subdirs: list[tuple[str, bool]] = field(default_factory=list)  # path, under data*
    files: list[str] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    big: bool = False
    data: bool = False


class CheckpointFinder:
    """Finds the checkpoints an attempt writes by itself (see the module notes).

    Args:
        root: the run's working directory.
        since: when the attempt started (wall time): older files are not this attempt's.
        exclude: folders never searched (the registry).
        globs: the run's ``checkpoint_glob`` patterns, relative to ``root``.
        clock: wall time.
    """

    def __init__(
        self,
        root: str,
        *,
        since: float,
        exclude: Sequence[str] = (),
        globs: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = os.path.abspath(root)
        self.since_ns = int(since * 1e9) - MTIME_SLACK_NS
        self.exclude = frozenset(os.path.abspath(p) for p in exclude)
        self.glob = compile_globs(globs)
        self.clock = clock
        self._dirs: dict[str, _Dir] = {}
        self._seen: dict[str, tuple[int, int]] = {}  # last look at a candidate not recorded
        self._recorded: dict[str, tuple[int, int] | None] = {}  # newest last
        self._hints: dict[str, tuple[float, int | None]] = {}  # path -> (look until, step)
        self._next_walk = 0.0
        self._new: list[Found] = []
        self._live: list[str] = []

    @classmethod
    def for_run(cls, run_dir: Path, spec: RunSpec, *, since: float) -> CheckpointFinder:
        """The finder of one attempt of a run: its cwd, its globs, never the registry."""
        registry_root = run_dir.parent.parent
        return cls(
            spec.cwd, since=since, exclude=(str(registry_root),), globs=spec.checkpoint_globs
        )

    # --- inputs ------------------------------------------------------------------------------

    def hint(self, line: str, step: int | None = None) -> None:
        """Note the paths a line of output names as a checkpoint (looked at in the next poll).

        ``step``: the training step when the line was printed (the checkpoint's, unless its
        name says another).
        """
        low = line.lower()  # a cheap filter first: every line of output passes here
        if not ("sav" in low or "checkp" in low or "wrot" in low or "writ" in low or "stor" in low):
            return
        with contextlib.suppress(Exception):  # never at the cost of the line's metrics
            self._hint(line, step)

    def _hint(self, line: str, step: int | None) -> None:
        for raw in paths_in_line(line):
            path = os.path.normpath(os.path.join(self.root, os.path.expanduser(raw)))
            if self._excluded(path):
                continue
            self._hints.pop(path, None)
            self._hints[path] = (self.clock() + HINT_TTL_S, step)
            while len(self._hints) > MAX_HINTS:
                self._hints.pop(next(iter(self._hints)))
            self._next_walk = 0.0

    def remember(self, path: str) -> None:
        """A checkpoint recorded by other means (announced, or in an earlier attempt)."""
        sig: tuple[int, int] | None = None
        with contextlib.suppress(OSError):
            st = os.stat(path)
            sig = (st.st_size, st.st_mtime_ns)
        self._put_recorded(path, sig)

    # --- the ingest loop's call ----------------------------------------------------------------

    def poll(self, now: float, *, final: bool = False) -> list[Found]:
        """Look when due (always when ``final``); return the checkpoints newly whole.

        Never raises: what was found before a fault is returned, the rest waits.
        """
        if not final and now < self._next_walk:
            return []
        self._next_walk = now + SCAN_INTERVAL_S
        try:  # a fault here must not cost the poll's metric records
            self._look_at_hints(now, final)
            self._walk(now, final)
            self._live = [p for p in list(self._recorded)[-RECENT * 4 :] if os.path.exists(p)]
        except Exception:
            pass
        found, self._new = self._new, []
        return found

    def live(self) -> list[str]:
        """Recorded checkpoints that still exist, oldest first (as of the last walk)."""
        return list(self._live)

    def count_outside(self, folder: Path) -> int:
        """How many recorded checkpoints exist outside ``folder`` (counted there already)."""
        prefix = str(folder) + os.sep
        return sum(1 for p in self._live if not p.startswith(prefix))

    # --- looking ----------------------------------------------------------------------------

    def _excluded(self, path: str) -> bool:
        return any(path == p or path.startswith(p + os.sep) for p in self.exclude)

    def _look_at_hints(self, now: float, final: bool) -> None:
        for path, (until, step) in list(self._hints.items()):
            if now > until:
                del self._hints[path]
                continue
            try:
                is_dir = os.path.isdir(path)
            except OSError:
                continue
            if not is_dir:
                if os.path.isfile(path):
                    self._look(path, final, "output", folder=False, step=step)
                continue
            if HF_FOLDER_RE.match(os.path.basename(path)):
                self._look(path, final, "output", folder=True, step=step)
                continue
            with contextlib.suppress(OSError), os.scandir(path) as it:
                entries = [e for _, e in zip(range(BIG_DIR), it, strict=False)]
            beside = any(e.name == MODEL_CONFIG for e in entries)
            for e in entries:
                with contextlib.suppress(OSError):
                    if e.is_dir(follow_symlinks=False) and HF_FOLDER_RE.match(e.name):
                        self._look(e.path, final, "output", folder=True, step=step)
                    elif e.is_file(follow_symlinks=False) and is_checkpoint_name(
                        e.name, beside_config=beside
                    ):
                        self._look(e.path, final, "output", folder=False, step=step)

    def _walk(self, now: float, final: bool) -> None:
        budget = PASS_ENTRY_BUDGET
        queue: deque[tuple[str, int, bool]] = deque([(self.root, 0, False)])
        visited = 0
        while queue and visited < MAX_DIRS:
            path, depth, data = queue.popleft()
            visited += 1
            try:
                st = os.stat(path)
            except OSError:
                self._dirs.pop(path, None)
                continue
            mtime = st.st_mtime_ns
            d = self._dirs.get(path)
            if d is None and mtime < self.since_ns and st.st_size > OLD_BIG_DIR_BYTES:
                # Unchanged since before the attempt and large (a folder's size grows with
                # its entries): a data set. Listed only if an entry comes or goes.
                d = _Dir(mtime_ns=mtime, listed_at=-BIG_RELIST_S, big=True, data=data)
                self._dirs[path] = d
            stale = d is None or (
                d.mtime_ns != mtime and (not d.big or now - d.listed_at >= BIG_RELIST_S)
            )
            if stale:
                if budget <= 0:
                    continue  # a later walk lists it
                d, cost = self._list(path, mtime, now, data)
                budget -= cost
                self._dirs[path] = d
            assert d is not None
            for f in d.files:
                self._look(f, final, "scan", folder=False)
            for f in d.folders:
                self._look(f, final, "scan", folder=True)
            if depth < MAX_DEPTH:
                queue.extend((s, depth + 1, under_data) for s, under_data in d.subdirs)

    def _list(self, path: str, mtime: int, now: float, data: bool) -> tuple[_Dir, int]:
        """List one folder: its subfolders to descend and its candidates."""
        d = _Dir(mtime_ns=mtime, listed_at=now, data=data)
        limit = DATA_DIR_LIMIT if data else BIG_DIR
        bins: list[str] = []
        beside = False
        n = 0
        try:
            with os.scandir(path) as it:
                for e in it:
                    n += 1
                    if n > limit:
                        d.big = True
                        break
                    name = e.name
                    if name == "pyvenv.cfg":  # a virtualenv
                        return _Dir(mtime_ns=mtime, listed_at=now, big=True), n
                    beside |= name == MODEL_CONFIG
                    try:
                        if e.is_dir(follow_symlinks=False):
                            self._classify_dir(d, e.path, name, data)
                        elif e.is_file(follow_symlinks=False):
                            if name.lower().endswith(".bin"):
                                bins.append(e.path)
                            elif is_checkpoint_name(name) or self._glob_match(e.path):
                                d.files.append(e.path)
                    except OSError:
                        continue
        except OSError:
            return d, n
        if d.big:
            return _Dir(mtime_ns=mtime, listed_at=now, big=True, data=data), n
        d.files += [b for b in bins if beside or self._glob_match(b)]
        if len(d.files) > MAX_CANDIDATES:  # keep the newest
            d.files.sort(key=_mtime_or_zero, reverse=True)
            del d.files[MAX_CANDIDATES:]
        return d, n

    def _classify_dir(self, d: _Dir, path: str, name: str, data: bool) -> None:
        if name.startswith(".") or name in SKIP_NAMES or self._excluded(path):
            return
        if HF_FOLDER_RE.match(name) or self._glob_match(path):
            d.folders.append(path)
        else:
            d.subdirs.append((path, data or name.lower().startswith("data")))

    def _glob_match(self, path: str) -> bool:
        if self.glob is None or not path.startswith(self.root + os.sep):
            return False
        return self.glob.match(path[len(self.root) + 1 :]) is not None

    def _look(
        self, path: str, final: bool, how: str, *, folder: bool, step: int | None = None
    ) -> None:
        """Record ``path`` if it is this attempt's, changed since recorded, and whole."""
        try:
            sig, size, mtime_ns = _folder_sig(path) if folder else _file_sig(path)
        except OSError:
            self._seen.pop(path, None)
            return
        if mtime_ns < self.since_ns or self._recorded.get(path, ()) == sig:
            return
        previous = self._seen.get(path)
        self._seen[path] = sig
        if len(self._seen) > MAX_CANDIDATES:
            self._seen.pop(next(iter(self._seen)))
        whole = folder_is_whole(path) if folder else file_is_whole(path, size)
        if whole is False or (whole is None and previous != sig and not final):
            return
        self._seen.pop(path, None)
        self._put_recorded(path, sig)
        named = step_from_name(path)
        self._new.append(Found(path, size, step if named is None else named, mtime_ns / 1e9, how))

    def _put_recorded(self, path: str, sig: tuple[int, int] | None) -> None:
        self._recorded.pop(path, None)
        self._recorded[path] = sig
        while len(self._recorded) > MAX_RECORDED:
            self._recorded.pop(next(iter(self._recorded)))


def found_record(attempt: int, step: int | None, found: Found) -> bytes:
    """The ``metrics.jsonl`` line of a found checkpoint: an announcement's record, plus size."""
    rec = event_record(attempt, step, found.mtime, found.path)
    rec.update(size=found.size, found=found.how)
    return dump_json(rec)


def _mtime_or_zero(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _file_sig(path: str) -> tuple[tuple[int, int], int, int]:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns), st.st_size, st.st_mtime_ns


def _folder_sig(path: str) -> tuple[tuple[int, int], int, int]:
    """A folder's size and newest time, from its files (one level)."""
    size, newest, count = 0, os.stat(path).st_mtime_ns, 0
    with os.scandir(path) as it:
        for e in it:
            count += 1
            if e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                size += st.st_size
                newest = max(newest, st.st_mtime_ns)
    return (size * 4096 + count, newest), size, newest
