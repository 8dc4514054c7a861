"""An opt-in governor folder shared by the users of one machine.

By default the governor's state (token bucket, queue, leases and their VRAM reservations)
lives in ``$BACKPROP_HOME/governor/``: private to one user and one registry. On a GPU box used
by several people, ``[governor] shared_dir`` in ``backprop.toml`` (or ``BACKPROP_GOVERNOR_DIR``,
which wins) names a folder that every user's supervisors share, so the bucket, the queue,
``max_parallel`` and the reservations count everyone's runs.

Everything in that folder may have been written by another user, so it is handled as hostile:

* the folder is created ``2770`` (group-shared, setgid so files keep its group); an existing
  one must be a real directory (a symlink is refused), not world-writable, and ours or our
  group's. It is checked through a descriptor opened with ``O_NOFOLLOW``;
* files are opened with ``O_NOFOLLOW | O_NONBLOCK`` and must be regular and small; writes
  go to a fresh ``O_EXCL`` temporary file renamed into place (a planted symlink is replaced,
  never followed) with mode ``0660``;
* each user's entries sit under an owner key (uid and a digest of the registry path); another
  owner's section is parsed entry by entry, a bad entry is dropped with a warning, and those
  entries only ever count for admission. Nothing read from the shared folder is ever
  signalled: the governor signals no process at all, and a run's own supervisor is found in
  the run's private folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from runner import envnames
from runner.privacy import warn_once

ENV_VAR = envnames.GOVERNOR_DIR
SHARED_DIR_MODE = 0o2770
SHARED_FILE_MODE = 0o660
MAX_SHARED_FILE = 1024 * 1024
OWNER_RE = re.compile(r"^[0-9]{1,10}:[0-9a-f]{16}$")


class SharedDirError(Exception):
    """The shared governor folder is unsafe or unusable (one-line message)."""


def configured_dir(setting: str) -> Path | None:
    """The shared folder to use: ``$BACKPROP_GOVERNOR_DIR``, else the setting, else none."""
    value = os.environ.get(ENV_VAR, "").strip() or setting.strip()
    return Path(value).expanduser() if value else None


def owner_key(home: Path) -> str:
    """This user's and registry's key in the shared state (uid and a digest of the path)."""
    try:
        where = str(home.resolve())
    except OSError:
        where = str(home)
    digest = hashlib.blake2b(where.encode(), digest_size=8).hexdigest()
    return f"{os.getuid()}:{digest}"


def prepare(path: Path) -> Path:
    """Create the shared folder if missing, or check that an existing one is safe to use.

    Raises:
        SharedDirError: a symlink, not a folder, world-writable, or neither ours nor our
            group's.
    """
    created = False
    try:
        os.mkdir(path, SHARED_DIR_MODE)
        created = True
    except FileExistsError:
        pass
    except OSError as exc:
        raise SharedDirError(
            f"shared governor folder {path}: cannot create: {exc.strerror}"
        ) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        why = "is a symlink" if exc.errno in (errno.ELOOP, errno.ENOTDIR) else exc.strerror
        raise SharedDirError(f"shared governor folder {path}: {why}") from None
    try:
        st = os.fstat(fd)
        if created and st.st_uid == os.getuid():
            os.fchmod(fd, SHARED_DIR_MODE)  # through the descriptor: the umask narrowed mkdir
            st = os.fstat(fd)
    finally:
        os.close(fd)
    if st.st_mode & 0o002:
        raise SharedDirError(
            f"shared governor folder {path} is world-writable (mode "
            f"{stat.S_IMODE(st.st_mode):04o}); make it 2770 for one group"
        )
    if st.st_uid not in (os.getuid(), 0) and st.st_gid not in os.getgroups() + [os.getgid()]:
        raise SharedDirError(f"shared governor folder {path} is neither yours nor your group's")
    return path


def open_lock(path: Path) -> int:
    """Open (creating it if needed) the shared lock file without following a symlink."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(2):
        try:
            fd = os.open(path, flags, SHARED_FILE_MODE)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            warn_once(f"backprop: warning: {path} was a symlink; replaced it by a lock file")
            os.unlink(path)  # removes the link itself, never its target
            continue
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SharedDirError(f"{path} is not a regular file")
        if st.st_uid == os.getuid():
            os.fchmod(fd, SHARED_FILE_MODE)
        return fd
    raise SharedDirError(f"{path} keeps being replaced by a symlink")


def read_untrusted(path: Path) -> Any:
    """Parse a JSON file another user may have written; ``None`` when absent or unusable.

    A symlink, a non-regular file, an oversized file or invalid JSON reads as ``None`` with
    a warning (the next write replaces it).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        warn_once(f"backprop: warning: ignored {path}: {_why(exc)}")
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SHARED_FILE:
            warn_once(f"backprop: warning: ignored {path}: not a small regular file")
            return None
        raw = os.read(fd, MAX_SHARED_FILE + 1)
    finally:
        os.close(fd)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        warn_once(f"backprop: warning: ignored {path}: not valid JSON ({type(exc).__name__})")
        return None


def _why(exc: OSError) -> str:
    return "a symlink" if exc.errno == errno.ELOOP else str(exc.strerror)


def _reject(name: str) -> Any:
    raise ValueError(f"non-finite constant {name}")
