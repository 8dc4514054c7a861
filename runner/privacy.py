"""Private by default: the registry's permissions and what may show of a run's environment.

A run's ``spec.json`` holds the submitter's environment (``HF_TOKEN``, ``WANDB_API_KEY``, cloud
keys, ``--env`` values) so that every resume sees the same one. So the registry root and every
run folder are created 0700 and files 0600 (:mod:`runner.durable`); a registry root found
looser (made by hand, or by an older Backprop) is tightened to 0700 the first time Backprop
touches it, silently, since nothing of Backprop needs it open. A root that is not ours, or
that is not only a registry (``BACKPROP_HOME=/tmp``), is left as it is: its ``runs/`` folder,
0700, keeps the specs private. Only a ``runs/`` folder open to others that we cannot tighten
is reported, once per process, on stderr.
Environment values are never printed or exported unless asked (``show --show-env``,
``export --with-env``): listings name the variables and mask their values.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path

PRIVATE_DIR = 0o700
MASK = "***"

_warned: set[str] = set()


def make_private_dir(path: Path, *, parents: bool = False) -> None:
    """Create ``path`` as a 0700 folder if missing (the umask can only narrow 0700)."""
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        pass


def tighten_root(root: Path) -> str | None:
    """Make an existing registry root 0700 if it is open to others; return what was done.

    Only a root that is ours and holds nothing but Backprop's own entries is changed: a
    folder such as ``/tmp`` or a project folder used as ``BACKPROP_HOME`` is left as it is
    (its ``runs/``, 0700, keeps the specs private).

    Returns:
        A one-line description if it was tightened, else ``None``.
    """
    try:
        st = os.stat(root)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o077:
        return None
    if st.st_mode & stat.S_ISVTX or st.st_uid != os.getuid() or not _looks_like_registry(root):
        return None
    try:
        os.chmod(root, PRIVATE_DIR)
    except OSError:
        return None
    return f"tightened {root} from {stat.S_IMODE(st.st_mode):04o} to 0700"


# What Backprop keeps in a registry root (a root holding anything else is not only ours).
_ROOT_ENTRIES = frozenset(
    {"runs", "governor", "next_id", ".lock", "index.cache", "backprop.toml", "tui.json"}
)


def _looks_like_registry(root: Path) -> bool:
    """Empty, or holding only what Backprop puts there: a registry root, safe to make private."""
    try:
        names = os.listdir(root)
    except OSError:
        return False
    return all(n in _ROOT_ENTRIES or n.startswith((".resume-", ".tmp-")) for n in names)


def tighten_registry(root: Path) -> None:
    """:func:`tighten_root`, and make ``root/runs`` 0700 (warned about once if it cannot be)."""
    tighten_root(root)
    runs = root / "runs"
    try:
        st = os.lstat(runs)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode) or not st.st_mode & 0o077:
        return
    if st.st_uid == os.getuid():
        try:
            os.chmod(runs, PRIVATE_DIR)
            return
        except OSError:
            pass
    warn_once(
        f"backprop: warning: {runs} (mode {stat.S_IMODE(st.st_mode):04o}) is open to others "
        "and cannot be made private by you: run environments in it may be read"
    )


def warn_once(message: str) -> str:
    """Print ``message`` on stderr the first time in this process; return it."""
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)
    return message


def masked_env(env: Mapping[str, str], *, show: bool = False) -> dict[str, str]:
    """The environment as ``show`` prints it: names, with values masked unless ``show``."""
    return {k: (v if show else MASK) for k, v in sorted(env.items())}
