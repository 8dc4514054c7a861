"""Detecting a registry on a network file system from ``/proc/self/mountinfo`` (issue 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import netfs

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
40 22 0:35 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
51 22 0:45 / /scratch rw,relatime shared:30 - lustre 10.0.0.1@tcp:/scratch rw,flock
52 22 0:46 / /home rw,relatime shared:31 - nfs4 nas:/export/home rw,vers=4.2,hard
53 52 8:2 / /home/local\\040disk rw,relatime shared:32 - xfs /dev/sdb1 rw
54 22 0:47 / /mnt/remote rw,nosuid,nodev,relatime shared:33 - fuse.sshfs me@host:/data rw
55 22 0:48 / /gpfs/fs1 rw,relatime - gpfs fs1 rw
56 22 0:49 / /mnt/beegfs rw,relatime shared:40 master:2 - beegfs beegfs_nodev rw
57 22 0:50 / /mnt/win rw,relatime - cifs //srv/share rw
58 22 0:51 / /tmp rw - tmpfs tmpfs rw
59 58 0:52 / /tmp rw - nfs srv:/tmp rw
garbage line without the separator
"""


@pytest.mark.parametrize(
    ("path", "fstype", "network"),
    [
        ("/home/alice/.backprop", "nfs4", True),
        ("/home", "nfs4", True),
        ("/home/local disk/reg", "xfs", False),  # a local mount inside an NFS one, escaped name
        ("/homework", "ext4", False),  # a prefix of a mount point's name is not inside it
        ("/scratch/u/reg", "lustre", True),
        ("/mnt/remote/x", "fuse.sshfs", True),
        ("/gpfs/fs1/proj", "gpfs", True),
        ("/mnt/beegfs/r", "beegfs", True),
        ("/mnt/win/r", "cifs", True),
        ("/var/lib/x", "ext4", False),
        ("/tmp/reg", "nfs", True),  # the later of two mounts on one point hides the earlier
    ],
)
def test_the_mount_holding_a_path_names_its_file_system(
    path: str, fstype: str, network: bool
) -> None:
    found = netfs.fstype_of(path, MOUNTINFO)
    assert found == fstype
    assert netfs.is_network_fstype(found) is network


def test_malformed_mountinfo_lines_are_skipped() -> None:
    mounts = netfs.parse_mountinfo("1 2 3\n\n" + MOUNTINFO)
    assert ("/scratch", "lustre") in mounts
    assert all(point.startswith("/") for point, _ in mounts)
    assert netfs.fstype_of("/x", "") is None


def test_the_environment_forces_either_way(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(netfs.POLL_ENV, "1")
    assert netfs.on_network_fs("/definitely/local") is True
    monkeypatch.setenv(netfs.POLL_ENV, "off")
    assert netfs.on_network_fs("/home") is False
    monkeypatch.delenv(netfs.POLL_ENV)
    # This machine's own mount table: the test's tmp folder is on a local disk or tmpfs.
    table = Path(netfs.MOUNTINFO).read_text()
    assert netfs.on_network_fs(tmp_path) is netfs.is_network_fstype(
        netfs.fstype_of(tmp_path, table)
    )
