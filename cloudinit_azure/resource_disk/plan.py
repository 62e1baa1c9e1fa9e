"""The plan (pure): what to do with the disk, as typed steps.

Each step is a frozen dataclass the executor handles by its type; nothing is
encoded in strings to be parsed later. Values only known once the plan runs
are named by the step itself: :class:`MakeFileSystem` formats the partition
:class:`FindPartition` found and yields the UUID :class:`FstabMount` writes,
and a :class:`Mount` without a ``source`` mounts that same partition.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

from cloudinit_azure.report import (
    UnsupportedFilesystemError,
)
from cloudinit_azure.resource_disk.decide import LINUX_FS_GUID, Decision
from cloudinit_azure.resource_disk.machine import MIB
from cloudinit_azure.resource_disk.settings import DiskSettings

SWAPFILE_NAME = "swapfile"


@dataclass(frozen=True)
class Command:
    """A program run as given (``check=False``: optional, a failure is logged)."""

    argv: tuple[str, ...]
    stdin: Optional[str] = None
    check: bool = True
    destructive: bool = False


@dataclass(frozen=True)
class FindPartition:
    """Wait for partition ``number`` of the disk in sysfs; make its /dev node."""

    number: int
    destructive: ClassVar[bool] = False


@dataclass(frozen=True)
class MakeFileSystem:
    """mkfs on the partition found before; its UUID is read back afterwards."""

    filesystem: str
    label: str
    destructive: ClassVar[bool] = True

    def argv(self, node: str) -> tuple[str, ...]:
        return mkfs_argv(self.filesystem, self.label, node)


@dataclass(frozen=True)
class MakeDir:
    path: str
    destructive: ClassVar[bool] = False


@dataclass(frozen=True)
class Mount:
    """Mount ``source``, or (None) the partition made by this plan."""

    filesystem: str
    options: str
    target: str
    source: Optional[str] = None
    destructive: ClassVar[bool] = False

    def argv(self, source: str) -> tuple[str, ...]:
        return ("mount", "-t", self.filesystem, "-o", self.options, source, self.target)


@dataclass(frozen=True)
class WriteReadme:
    directory: str
    destructive: ClassVar[bool] = False


@dataclass(frozen=True)
class FstabMount:
    """Our fstab line for the file system: ``UUID=<its uuid> mountpoint ...``."""

    mountpoint: str
    filesystem: str
    options: str
    passno: str
    destructive: ClassVar[bool] = False

    def fields(self, uuid: str) -> tuple[str, ...]:
        return (f"UUID={uuid}", self.mountpoint, self.filesystem, self.options, "0",
                self.passno)


@dataclass(frozen=True)
class FstabSwap:
    path: str
    destructive: ClassVar[bool] = False

    def fields(self) -> tuple[str, ...]:
        return (self.path, "none", "swap", "sw,nofail", "0", "0")


@dataclass(frozen=True)
class FstabRemove:
    spec: str
    destructive: ClassVar[bool] = False


@dataclass(frozen=True)
class Chmod:
    path: str
    mode: int
    destructive: ClassVar[bool] = False


@dataclass(frozen=True)
class Remove:
    path: str
    destructive: ClassVar[bool] = False


Step = Union[Command, FindPartition, MakeFileSystem, MakeDir, Mount, WriteReadme, FstabMount,
             FstabSwap, FstabRemove, Chmod, Remove]


def mkfs_argv(fs: str, label: str, node: str) -> tuple[str, ...]:
    """mkfs without discard and with lazy init: Ready does not wait on us,
    but the user's first minutes on a big disk should not either."""
    if fs == "ext4":
        return ("mkfs.ext4", "-F", "-q", "-L", label,
                "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", node)
    if fs == "xfs":
        return ("mkfs.xfs", "-f", "-q", "-K", "-L", label, node)
    if fs == "btrfs":
        return ("mkfs.btrfs", "-f", "-q", "-K", "-L", label, node)
    raise UnsupportedFilesystemError(filesystem=fs)


def fstab_mount(cfg: DiskSettings) -> FstabMount:
    passno = "2" if cfg.filesystem == "ext4" else "0"
    return FstabMount(cfg.mountpoint, cfg.filesystem, cfg.mount_options, passno)


def plan_format(disk: str, cfg: DiskSettings) -> tuple[Step, ...]:
    """GPT with one Linux partition over the whole disk, file system, mount,
    warning file and fstab entry."""
    script = f'label: gpt\ntype={LINUX_FS_GUID}, name="{cfg.label}"\n'
    return (
        Command(("sfdisk", "--wipe", "always", "--wipe-partitions", "always",
                 "--quiet", disk), stdin=script, destructive=True),
        Command(("partx", "-u", disk), check=False),
        Command(("udevadm", "settle", "--timeout=10"), check=False),
        FindPartition(1),
        MakeFileSystem(cfg.filesystem, cfg.label),
        MakeDir(cfg.mountpoint),
        Mount(cfg.filesystem, cfg.mount_options, cfg.mountpoint),
        WriteReadme(cfg.mountpoint),
        fstab_mount(cfg),
    )


def plan_mount(node: str, cfg: DiskSettings, mounted: bool) -> tuple[Step, ...]:
    """Every later boot: mount our file system if it is not, keep fstab right."""
    steps: list[Step] = [MakeDir(cfg.mountpoint)]
    if not mounted:
        steps.append(Mount(cfg.filesystem, cfg.mount_options, cfg.mountpoint, node))
    steps.append(fstab_mount(cfg))
    return tuple(steps)


def plan(decision: Decision, disk: str, cfg: DiskSettings,
         mounted: bool = False) -> tuple[Step, ...]:
    if decision.action == "format":
        return plan_format(disk, cfg)
    if decision.action == "mount":
        return plan_mount(decision.target, cfg, mounted)
    return ()


def swap_size_mib(spec: Any, fs_bytes: int) -> int:
    """``"2048"``/``2048`` MiB, or ``"10%"`` of the file system."""
    text = str(spec).strip()
    if text.endswith("%"):
        return int(fs_bytes * int(text[:-1]) // 100 // MIB)
    return int(text)


def swapfile_path(cfg: DiskSettings) -> str:
    return os.path.join(cfg.mountpoint, SWAPFILE_NAME)


def plan_swap(cfg: DiskSettings, size_mib: int, existing_bytes: Optional[int],
              active: bool) -> tuple[Step, ...]:
    """Swap file steps; an existing file of the right size is kept (only
    activated if needed), any other size is recreated."""
    path = swapfile_path(cfg)
    entry = FstabSwap(path)
    if not cfg.swap_enabled:
        return (FstabRemove(path),)
    want = size_mib * MIB
    if existing_bytes == want:
        return ((Command(("swapon", path)),) if not active else ()) + (entry,)
    steps: list[Step] = []
    if active:
        steps.append(Command(("swapoff", path)))
    if existing_bytes is not None:
        steps.append(Remove(path))
    if cfg.filesystem == "btrfs":
        # btrfs needs a NOCOW, non-compressed file: mkswapfile does all of it.
        steps.append(Command(("btrfs", "filesystem", "mkswapfile", "--size",
                              f"{size_mib}m", path)))
        steps.append(Chmod(path, 0o600))
    else:
        steps.append(Command(("fallocate", "-l", str(want), path)))
        steps.append(Chmod(path, 0o600))
        steps.append(Command(("mkswap", path)))
    steps.append(Command(("swapon", path)))
    steps.append(entry)
    return tuple(steps)
