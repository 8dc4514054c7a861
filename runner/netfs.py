"""Whether the registry lives on a network file system, and so how to watch it.

A cluster's registry sits on NFS, Lustre, GPFS, BeeGFS, CIFS or sshfs and is written from
several hosts. inotify sees only the writes made through *this* kernel, so a TUI on the login
node would never hear of a metric line written on a compute node (measured: see
FIELD_NOTES.md). There the TUI's feed polls instead: it stats the few files of the live
runs about once a second and lists ``runs/`` slowly for new runs (:mod:`tui.feed.poll_watcher`);
it never polls the tree recursively. Cross-host ``flock`` cannot be relied on either (a mount
with ``nolock``, or a lock daemon that is down), so registry code that only *optimises* with a
lock skips it there.

The file system is read from ``/proc/self/mountinfo``: the mount with the longest mount point
that holds the path (the last one listed wins, as later mounts hide earlier ones).
``BACKPROP_POLL=1`` forces network behaviour (tests, or a file system not recognised here),
``BACKPROP_POLL=0`` forces local behaviour.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from runner import envnames

# File systems shared between hosts: inotify misses other clients' writes, flock may be local.
NETWORK_FSTYPES = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "fuse.sshfs",
        "sshfs",
        "fuse.cephfs",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.juicefs",
        "afs",
        "ocfs2",
        "gfs2",
        "9p",
        "panfs",
        "wekafs",
        "orangefs",
        "pvfs2",
    }
)
MOUNTINFO = "/proc/self/mountinfo"
POLL_ENV = envnames.POLL


def _unescape(field: str) -> str:
    r"""Decode mountinfo's octal escapes (``\040`` for a space, ``\011``, ``\012``, ``\134``)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """The ``(mount point, fstype)`` of each line of a ``mountinfo`` text (malformed skipped).

    A line reads ``id parent major:minor root mountpoint options [optional...] - fstype
    source superoptions``; the optional fields end at the lone ``-``.
    """
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split(" ")
        try:
            dash = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < 5 or dash + 1 >= len(fields):
            continue
        mounts.append((_unescape(fields[4]), fields[dash + 1]))
    return mounts


def fstype_of(path: str | os.PathLike[str], mountinfo: str) -> str | None:
    """The file system type of the mount that holds ``path`` (absolute, resolved), or ``None``."""
    target = os.path.normpath(os.fspath(path))
    best: tuple[int, str] | None = None
    for point, fstype in parse_mountinfo(mountinfo):
        inside = point == "/" or target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return best[1] if best else None


def is_network_fstype(fstype: str | None) -> bool:
    """Whether ``fstype`` is shared between hosts (``fuse.sshfs`` and the like included)."""
    if fstype is None:
        return False
    return fstype in NETWORK_FSTYPES or fstype.split(".")[0] in NETWORK_FSTYPES


def forced() -> bool | None:
    """``BACKPROP_POLL``: ``True`` (1/yes/true/on), ``False`` (0/no/false/off) or ``None``."""
    value = os.environ.get(POLL_ENV, "").strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    return None


@lru_cache(maxsize=16)
def _detected(root: str) -> bool:
    """Whether ``root`` (or its nearest existing parent) is on a network file system."""
    path = Path(root)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        resolved = path.resolve()
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:  # no /proc: nothing tells us, so local
        return False
    return is_network_fstype(fstype_of(resolved, text))


def on_network_fs(root: str | os.PathLike[str]) -> bool:
    """Whether the registry at ``root`` is shared between hosts (``BACKPROP_POLL`` overrides).

    Detection reads ``/proc/self/mountinfo`` once per root and process.
    """
    force = forced()
    if force is not None:
        return force
    return _detected(os.fspath(root))
