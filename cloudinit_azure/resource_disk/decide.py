"""What is on the disk and what to do with it: pure data and the safety table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

from cloudinit_azure.resource_disk.settings import DiskSettings

MSR_GUID = "e3c9e316-0b5c-4db8-817d-f92df00215ae"
LINUX_FS_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
AZURE_NTFS_FILES = frozenset({"dataloss_warning_readme.txt", "system volume information"})


@dataclass(frozen=True)
class Partition:
    node: str
    number: int
    fstype: str = ""
    label: str = ""
    uuid: str = ""
    parttype: str = ""  # GPT type GUID (lower case) or MBR type ("0x7")
    partname: str = ""  # GPT partition name


@dataclass(frozen=True)
class DiskLayout:
    """What is on the disk, as probed; input to :func:`decide`."""

    disk: str
    pttype: str = ""  # "gpt", "dos" or "" (none)
    fstype: str = ""  # a file system on the whole disk
    label: str = ""
    uuid: str = ""
    partitions: tuple[Partition, ...] = ()
    in_use: tuple[tuple[str, str], ...] = ()  # (node, mountpoint or "[swap]")
    unclear: str = ""  # probing could not tell (ambivalent signatures)
    # Raw and read back as zeros in its first and last MiB, where our GPT
    # headers lived: a fresh disk from the platform, not one a user wrote to
    # after wiping its signatures (wipefs leaves the rest of the headers).
    blank: bool = False

    @property
    def raw(self) -> bool:
        return not (self.pttype or self.fstype or self.partitions or self.unclear)


@dataclass(frozen=True)
class Decision:
    """What to do with the disk, and exactly why."""

    action: str  # "format" | "mount" | "skip"
    reason: str
    target: str = ""  # node to mount for "mount"
    uuid: str = ""
    # A "skip" we could not avoid (probing failed, disk busy elsewhere) is a
    # warning; leaving a disk alone on purpose (user files, not ours,
    # never_destroy_ntfs) is the safe outcome working, logged at INFO, so
    # cloud-init 23.4+ does not call the boot "degraded" for it.
    warn: bool = False


def ntfs_candidate(layout: DiskLayout) -> Optional[Partition]:
    """The NTFS partition of an Azure-shaped disk: exactly one NTFS partition,
    or on GPT an MS-reserved partition followed by an NTFS one."""
    parts = layout.partitions
    if len(parts) == 1 and parts[0].fstype == "ntfs":
        return parts[0]
    # An MS-reserved partition holds no file system; one that carries a
    # signature is not Azure's layout (someone reused it), so not a candidate.
    if (layout.pttype == "gpt" and len(parts) == 2
            and parts[0].parttype.lower() == MSR_GUID and not parts[0].fstype
            and parts[1].fstype == "ntfs"):
        return parts[1]
    return None


def user_files(names: Iterable[str]) -> list[str]:
    """Entries of the NTFS root that Azure did not put there.

    Compared exactly, up to case (NTFS's own rule): a user's
    ``"DATALOSS_WARNING_README.txt "`` or ``" System Volume Information"``
    (Azure's names with a blank) is a user file, not Azure's.
    """
    return [n for n in names
            if n not in (".", "..") and n.lower() not in AZURE_NTFS_FILES]


def _describe(fstype: str, label: str) -> str:
    if not fstype:
        return "no file system"
    return f"file system {fstype}" + (f" labelled {label!r}" if label else "")


def decide(layout: DiskLayout, cfg: DiskSettings, *,
           ntfs_files: Optional[Sequence[str]] = None,
           ntfs_error: str = "",
           ntfs_tools_missing: bool = False,
           is_new_instance: bool = False,
           previously_ours: bool = False) -> Decision:
    """The safety table. Format only a raw disk or a provably empty Azure
    NTFS disk (new instance, or ours before and handed back NTFS); mount a
    disk carrying our file system; leave everything else alone, saying why."""
    fs, label, mp = cfg.filesystem, cfg.label, cfg.mountpoint
    if layout.unclear:
        return Decision("skip", f"{layout.disk}: probing was inconclusive ({layout.unclear})",
                        warn=True)

    ours: Optional[tuple[str, str]] = None  # (node, uuid)
    if not layout.partitions and layout.fstype == fs and layout.label == label:
        ours = (layout.disk, layout.uuid)
    elif (len(layout.partitions) == 1 and layout.partitions[0].fstype == fs
          and layout.partitions[0].label == label):
        ours = (layout.partitions[0].node, layout.partitions[0].uuid)
    if ours is not None:
        others = [(n, m) for n, m in layout.in_use if not (n == ours[0] and m == mp)]
        if others:
            node, where = others[0]
            return Decision("skip", f"{node} carries our {fs} file system but is in use at "
                                    f"{where}, not {mp}", warn=True)
        return Decision("mount", f"{ours[0]} already carries our {fs} file system "
                                 f"labelled {label!r}",
                        target=ours[0], uuid=ours[1])

    if layout.in_use:
        node, where = layout.in_use[0]
        return Decision("skip", f"{node} is in use ({where}); not touching {layout.disk}")

    if layout.raw:
        # "Raw" alone is no proof of "empty": a user may use the disk as a raw
        # block device (wipe our signatures, write data). Only a new instance,
        # or a blank disk that replaced ours (resize/redeploy), is formatted.
        if is_new_instance:
            return Decision("format", f"{layout.disk} is raw (no partition table, no file "
                                      "system) on a new instance")
        if previously_ours and layout.blank:
            return Decision("format", f"{layout.disk} came back raw and blank (resize or "
                                      "redeploy replaced our disk)")
        return Decision("skip", f"{layout.disk} has no partition table or file system, but "
                                "this is not a new instance and the disk is not blank: "
                                "data may have been written to it as a raw device")

    parts = layout.partitions
    if (layout.pttype == "gpt" and len(parts) == 1 and not parts[0].fstype
            and parts[0].parttype == LINUX_FS_GUID.lower() and parts[0].partname == label):
        return Decision("format", f"{parts[0].node} is our partition without a file system "
                                  "(an earlier format was interrupted)")

    candidate = ntfs_candidate(layout)
    if candidate is not None:
        if cfg.never_destroy_ntfs:
            return Decision("skip", f"{candidate.node} is NTFS and never_destroy_ntfs is set")
        if ntfs_files is None:
            why = ntfs_error or "no listing"
            return Decision("skip", f"cannot list the NTFS volume on {candidate.node}: {why}",
                            warn=not ntfs_tools_missing)
        extra = user_files(ntfs_files)
        if extra:
            # A name with a leading or trailing blank is shown quoted, so the
            # log says why "DATALOSS_WARNING_README.txt " is not Azure's.
            shown = ", ".join(repr(n) if n != n.strip() else n for n in sorted(extra)[:5])
            more = f" (+{len(extra) - 5} more)" if len(extra) > 5 else ""
            return Decision("skip", f"NTFS volume {candidate.node} holds user files: "
                                    f"{shown}{more}")
        if is_new_instance:
            return Decision("format", f"{candidate.node} is Azure's empty NTFS volume on a "
                                      "new instance")
        if previously_ours:
            return Decision("format", f"{candidate.node} came back as Azure's empty NTFS "
                                      "volume (resize or redeploy replaced our disk)")
        return Decision("skip", f"{candidate.node} is an empty NTFS volume, but this is not a "
                                "new instance and we never formatted a disk for it")

    if layout.partitions:
        if len(layout.partitions) == 1:
            p = layout.partitions[0]
            return Decision("skip", f"{p.node} holds {_describe(p.fstype, p.label)}, not ours "
                                    f"({fs} labelled {label!r})")
        kinds = ", ".join(p.fstype or "-" for p in layout.partitions)
        return Decision("skip", f"unexpected partition layout on {layout.disk}: "
                                f"{len(layout.partitions)} partitions ({kinds})")
    if layout.fstype:
        return Decision("skip", f"{layout.disk} holds {_describe(layout.fstype, layout.label)}"
                                f", not ours ({fs} labelled {label!r})")
    return Decision("skip", f"{layout.disk} has a {layout.pttype} partition table "
                            "without partitions")


@dataclass(frozen=True)
class Marker:
    """What we set up, for which instance; read back on every boot."""

    instance_id: Optional[str]
    device: str = ""
    partition: str = ""
    fs_uuid: str = ""
    filesystem: str = ""
    label: str = ""
    mountpoint: str = ""


def instance_state(marker: Optional[Marker], instance_id: Optional[str]) -> tuple[bool, bool]:
    """(is_new_instance, previously_ours): no marker, or one for another
    instance, is a new instance; a marker for this instance means we have
    formatted a resource disk here before."""
    if marker is None or marker.instance_id != instance_id:
        return True, False
    return False, True
