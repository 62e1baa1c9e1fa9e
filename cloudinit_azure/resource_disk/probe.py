"""Reading the disk as it is: sysfs partitions, /dev nodes, blkid, the NTFS
root, what is mounted or swapped on, and whether a raw disk is blank.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from dataclasses import dataclass, replace
from typing import Optional

from cloudinit_azure.report import (
    NoDeviceNumberError,
)
from cloudinit_azure.resource_disk.decide import DiskLayout, Partition
from cloudinit_azure.resource_disk.discover import Discovered
from cloudinit_azure.resource_disk.machine import (
    LOG,
    MIB,
    Machine,
    _devname,
    _mounts,
    _read,
    _swaps,
)
from cloudinit_azure.runner import Runner


@dataclass(frozen=True)
class SysPartition:
    """A partition as sysfs knows it: number, device number, /dev node."""

    name: str
    number: int
    devnum: str  # "major:minor"
    node: str


def sysfs_partitions(machine: Machine, disk: str) -> tuple[SysPartition, ...]:
    """Partitions of ``disk`` from ``/sys/class/block/<disk>/<part>/partition``.

    Names come from uevent DEVNAME, never from ``disk + number``, which is
    wrong for loop (``loop3p1``) and NVMe (``nvme0n1p1``) devices.
    """
    base = machine.path(f"/sys/class/block/{disk}")
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return ()
    parts = []
    for entry in entries:
        number = (_read(os.path.join(base, entry, "partition")) or "").strip()
        devnum = (_read(os.path.join(base, entry, "dev")) or "").strip()
        if not number.isdigit() or not devnum:
            continue
        parts.append(SysPartition(entry, int(number), devnum, _devname(machine, entry)))
    return tuple(sorted(parts, key=lambda p: p.number))


def _node_devnum(path: str) -> Optional[tuple[int, int]]:
    """(major, minor) of a block device node, None for anything else."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def ensure_node(machine: Machine, name: str) -> str:
    """Return the /dev node of ``name``, creating it from sysfs major:minor
    when missing (no udev in the simulator or early boot). A stale block
    node left from an old partition table (other major:minor) is replaced."""
    node = _devname(machine, name)
    real = machine.path(node)
    devnum = (_read(machine.path(f"/sys/class/block/{name}/dev")) or "").strip()
    match = re.fullmatch(r"(\d+):(\d+)", devnum)
    want = (int(match.group(1)), int(match.group(2))) if match else None
    if os.path.lexists(real):
        have = _node_devnum(real)
        if have is None or want is None or have == want:
            return node
        os.unlink(real)
    if want is None:
        raise NoDeviceNumberError(device=name)
    os.makedirs(os.path.dirname(real), exist_ok=True)
    machine.mknod(real, stat.S_IFBLK | 0o660, os.makedev(*want))
    return node


def parse_blkid_export(text: str) -> dict[str, str]:
    """Parse ``blkid -o export`` (values escape spaces with backslashes)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = re.sub(r"\\(.)", r"\1", value.strip())
    return out


def probe(runner: Runner, node: str) -> dict[str, str]:
    """Low-level probe (``-p`` bypasses the blkid cache, stale after mkfs).

    Exit 2 means no signature; other failures mean we cannot tell, which the
    decision treats as "leave it alone".
    """
    res = runner(["blkid", "-p", "-o", "export", node], check=False)
    if res.returncode == 0:
        return parse_blkid_export(res.stdout)
    if res.returncode == 2:
        return {}
    return {"AMBIVALENT": res.stderr.strip() or f"blkid exit {res.returncode}"}


def read_layout(machine: Machine, disk: Discovered) -> DiskLayout:
    """Probe the disk and its sysfs partitions; note what is in use.

    A partition table the kernel shows no partitions for (a disk whose
    table changed while attached, e.g. handed over fresh by a redeploy on a
    kernel that did not re-read it) is synced with ``partx -u`` first, so
    the decision sees what is really on the disk.
    """
    whole = probe(machine.runner, disk.node)
    if whole.get("PTTYPE") and not sysfs_partitions(machine, disk.name):
        try:
            machine.runner(["partx", "-u", disk.node], check=False)
        except OSError as err:
            LOG.debug("partx not run: %s", err)
    parts = []
    unclear = whole.get("AMBIVALENT", "")
    for sp in sysfs_partitions(machine, disk.name):
        node = ensure_node(machine, sp.name)
        info = probe(machine.runner, node)
        unclear = unclear or info.get("AMBIVALENT", "")
        parts.append(Partition(node, sp.number, info.get("TYPE", ""), info.get("LABEL", ""),
                               info.get("UUID", ""), info.get("PART_ENTRY_TYPE", "").lower(),
                               info.get("PART_ENTRY_NAME", "")))
    nodes = {disk.node, *(p.node for p in parts)}
    in_use = [(src, mp) for src, mp in _mounts(machine) if src in nodes]
    in_use += [(src, "[swap]") for src in _swaps(machine) if src in nodes]
    bare = not parts
    layout = DiskLayout(disk.node, whole.get("PTTYPE", ""),
                        whole.get("TYPE", "") if bare else "",
                        whole.get("LABEL", "") if bare else "",
                        whole.get("UUID", "") if bare else "",
                        tuple(parts), tuple(in_use), unclear)
    if layout.raw:
        layout = replace(layout, blank=is_blank(machine.path(disk.node)))
    return layout


BLANK_PROBE = MIB  # bytes read at each end of a raw disk


def is_blank(path: str, size: int = BLANK_PROBE) -> bool:
    """The first and last ``size`` bytes read back as zeros; False when unreadable.

    Our format puts GPT headers at both ends; ``wipefs`` erases only their
    magic, so a disk we formatted and a user then wiped is never blank.
    """
    try:
        with open(path, "rb") as dev:
            end = dev.seek(0, os.SEEK_END)
            if end < 2 * size:
                return False
            for offset in (0, end - size):
                dev.seek(offset)
                data = dev.read(size)
                if len(data) != size or data.count(0) != size:
                    return False
    except OSError:
        return False
    return True


NTFS3G_PROGRAMS = ("usr/bin/ntfs-3g", "bin/ntfs-3g", "usr/sbin/mount.ntfs-3g",
                   "sbin/mount.ntfs-3g")


@dataclass(frozen=True)
class NtfsListing:
    """The NTFS root's names, or why they could not be read."""

    names: Optional[tuple[str, ...]] = None
    error: str = ""
    # Neither ntfsls nor ntfs-3g is installed: the disk is left alone on
    # purpose (an image without NTFS tools), an INFO line, not a warning.
    tools_missing: bool = False


def list_ntfs(machine: Machine, node: str) -> NtfsListing:
    """Root directory of an NTFS volume: ``ntfsls`` (ntfs-3g, no mount), else
    a read-only ntfs-3g FUSE mount (only if ntfs-3g is installed)."""
    try:
        res = machine.runner(["ntfsls", "-a", "-f", node], check=False)
        if res.returncode == 0:
            return NtfsListing(tuple(n for n in res.stdout.splitlines() if n))
        error = f"ntfsls exit {res.returncode}: {res.stderr.strip()}"
    except OSError as err:
        error = f"ntfsls unavailable ({err.strerror or err})"
        if not any(os.path.exists(machine.path(p)) for p in NTFS3G_PROGRAMS):
            return NtfsListing(error=f"{error}; ntfs-3g is not installed (install the "
                                     "ntfs-3g package to let empty NTFS disks be "
                                     "reformatted)", tools_missing=True)
    run_dir = machine.path("/run")
    os.makedirs(run_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="azure-resource-ntfs.", dir=run_dir)
    system_tmp = "/run/" + os.path.basename(tmp)
    try:
        res = machine.runner(["mount", "-t", "ntfs-3g", "-o", "ro", node, system_tmp],
                             check=False)
        if res.returncode != 0:
            return NtfsListing(error=f"{error}; read-only ntfs-3g mount failed: "
                                     f"{res.stderr.strip()}")
        try:
            return NtfsListing(tuple(sorted(os.listdir(tmp))))
        finally:
            machine.runner(["umount", system_tmp], check=False)
    except OSError as err:
        return NtfsListing(error=f"{error}; read-only mount failed: {err}")
    finally:
        try:
            os.rmdir(tmp)
        except OSError:
            pass
