"""Optional PyTorch helpers for training scripts: atomic checkpoints, resume, graceful stop.

``import runner.torch`` does not import torch; the checkpoint functions do, on first use.
Under Backprop, checkpoints go to ``$BACKPROP_CHECKPOINT_DIR`` and a resumed attempt finds
its checkpoint in ``$BACKPROP_RESUME_FROM``; standalone, ``./checkpoints`` is used.

Typical loop::

    from runner import report
    from runner.torch import GracefulStop, load_checkpoint, save_checkpoint

    state = load_checkpoint()            # None on a fresh start
    start = state["step"] if state else 0
    with GracefulStop() as stop:         # SIGINT/SIGTERM: finish the step, save, exit
        for step in range(start + 1, total + 1):
            ...
            report(step=step, loss=loss.item())
            if step % 100 == 0 or stop.requested:
                save_checkpoint({"model": model.state_dict(), "step": step}, step)
            if stop.requested:
                break
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from runner import envnames

ENV_CHECKPOINT_DIR = envnames.CHECKPOINT_DIR
ENV_RESUME_FROM = envnames.RESUME_FROM
DEFAULT_PREFIX = "ckpt"


def checkpoint_dir() -> Path:
    """Where checkpoints go: ``$BACKPROP_CHECKPOINT_DIR``, else ``./checkpoints``."""
    return Path(os.environ.get(ENV_CHECKPOINT_DIR) or "checkpoints")


def _pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r"-(\d+)\.pt")


def list_checkpoints(
    directory: Path | str | None = None, prefix: str = DEFAULT_PREFIX
) -> list[Path]:
    """Checkpoints saved by :func:`save_checkpoint` in ``directory``, oldest step first."""
    folder = Path(directory) if directory is not None else checkpoint_dir()
    pattern = _pattern(prefix)
    found: list[tuple[int, Path]] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        m = pattern.fullmatch(name)
        if m:
            found.append((int(m.group(1)), folder / name))
    return [p for _, p in sorted(found)]


def latest_checkpoint(
    directory: Path | str | None = None, prefix: str = DEFAULT_PREFIX
) -> Path | None:
    """The checkpoint with the highest step, or ``None``."""
    found = list_checkpoints(directory, prefix)
    return found[-1] if found else None


def save_checkpoint(
    state: Mapping[str, Any],
    step: int,
    *,
    keep: int = 3,
    directory: Path | str | None = None,
    prefix: str = DEFAULT_PREFIX,
    announce: bool = True,
) -> Path:
    """Save ``state`` atomically as ``<prefix>-<step>.pt`` and keep only the last ``keep``.

    The file is written under a temporary name starting with ``.``, fsynced and renamed, so
    a crash or SIGKILL leaves the previous checkpoints intact and never a partial file. Keep
    ``state`` to tensors, numbers, strings and containers of them so that it loads with
    ``weights_only=True``.

    Args:
        state: what to save (model and optimizer state dicts, the step, ...).
        step: the training step it belongs to (names the file).
        keep: how many of the newest checkpoints to keep (at least 1).
        directory: where to save (default :func:`checkpoint_dir`).
        prefix: the file name prefix.
        announce: print ``{"event": "checkpoint_saved", "path": ..., "step": ...}`` so
            Backprop records it.

    Returns:
        The checkpoint's path.
    """
    import torch

    folder = Path(directory) if directory is not None else checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{prefix}-{int(step):08d}.pt"
    tmp = folder / f".{final.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    for old in list_checkpoints(folder, prefix)[: -max(keep, 1)]:
        with contextlib.suppress(OSError):
            old.unlink()
    if announce:
        event = {"event": "checkpoint_saved", "path": str(final.resolve()), "step": int(step)}
        print(json.dumps(event), flush=True)
    return final


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def resume_path(directory: Path | str | None = None, prefix: str = DEFAULT_PREFIX) -> Path | None:
    """The checkpoint to resume from: ``$BACKPROP_RESUME_FROM``, else the latest saved one."""
    env = os.environ.get(ENV_RESUME_FROM)
    if env:
        return Path(env)
    return latest_checkpoint(directory, prefix)


def load_checkpoint(
    path: Path | str | None = None,
    *,
    map_location: str | Any = "cpu",
    directory: Path | str | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> Any:
    """Load a checkpoint safely (``weights_only=True``); ``None`` when there is none.

    Args:
        path: the file (default :func:`resume_path`).
        map_location: where tensors go (``"cpu"`` unless told otherwise).
        directory: where to look for the latest checkpoint.
        prefix: the file name prefix to look for.
    """
    import torch

    target = Path(path) if path is not None else resume_path(directory, prefix)
    if target is None:
        return None
    return torch.load(target, map_location=map_location, weights_only=True)


# --- graceful stop ------------------------------------------------------------------------------


_current: list[GracefulStop] = []


class GracefulStop:
    """Turns SIGINT and SIGTERM into a request to stop after the current step.

    Inside the ``with`` block the first signal only sets :attr:`requested`; the loop checks
    it, saves a checkpoint and leaves. A second SIGINT raises ``KeyboardInterrupt`` (the user
    insists). The previous handlers come back on exit. Backprop's stop and time limit send
    SIGINT first, so a run that uses this loses no work.

    Args:
        signals: the signals to catch.
    """

    def __init__(self, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.signals = tuple(signals)
        self.requested = False
        self.signal: int | None = None  # the first one
        self._interrupts = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        _current.append(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self in _current:
            _current.remove(self)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Only a second SIGINT insists: SIGTERM then SIGINT is a scheduler's stop (Slurm
        # signals the whole job) followed by the supervisor's own, not the user twice.
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                raise KeyboardInterrupt
        if not self.requested:
            self.signal = signum
        self.requested = True

    def should_stop(self) -> bool:
        """Whether a stop was requested."""
        return self.requested


def should_stop() -> bool:
    """Whether the innermost active :class:`GracefulStop` received a stop request."""
    return bool(_current) and _current[-1].requested
