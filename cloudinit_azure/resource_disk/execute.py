"""Running a plan: each typed step by its type, then the marker.

Every check that can fail runs before the first destructive step; the disk is
checked to still exist before each destructive one.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Callable, Optional

from cloudinit_azure import atomic
from cloudinit_azure.report import (
    FsUuidUnknownError,
    MountPointBusyError,
    MountPointNotDirectoryError,
    PartitionMissingError,
    ResourceDiskCommandError,
    ResourceDiskNotFoundError,
    ResourceDiskToolError,
    ResourceDiskVanishedError,
)
from cloudinit_azure.resource_disk.decide import (
    Decision,
    Marker,
    decide,
    instance_state,
    ntfs_candidate,
)
from cloudinit_azure.resource_disk.discover import Discovered, discover
from cloudinit_azure.resource_disk.fstab import SWAP_COMMENT, remove_fstab, update_fstab
from cloudinit_azure.resource_disk.machine import (
    FSTAB_PATH,
    LOG,
    MARKER_PATH,
    MIB,
    Machine,
    _mounts,
    _read,
    _swaps,
)
from cloudinit_azure.resource_disk.plan import (
    Chmod,
    Command,
    FindPartition,
    FstabMount,
    FstabRemove,
    FstabSwap,
    MakeDir,
    MakeFileSystem,
    Mount,
    Remove,
    Step,
    WriteReadme,
    plan,
    plan_swap,
    swap_size_mib,
    swapfile_path,
)
from cloudinit_azure.resource_disk.probe import (
    NtfsListing,
    ensure_node,
    list_ntfs,
    probe,
    read_layout,
    sysfs_partitions,
)
from cloudinit_azure.resource_disk.settings import DiskSettings
from cloudinit_azure.runner import CommandError

PARTITION_TIMEOUT = 10.0
README_NAME = "DATALOSS_WARNING_README.txt"

README_TEXT = """\
WARNING: THIS IS A TEMPORARY DISK.

Any data stored on this drive is SUBJECT TO LOSS and THERE IS NO WAY TO
RECOVER IT. Azure may replace this disk with an empty one when the VM is
resized, redeployed, stopped (deallocated) or moved to another host.

Please do not use this disk for storing any personal or application data.
It was formatted and mounted by cloudinit-azure; see its resource-disk
documentation for the azure_resource_disk configuration keys.
"""


@dataclass(frozen=True)
class Outcome:
    """What happened, for the log and the tests."""

    device: Optional[Discovered]
    decision: Optional[Decision] = None
    steps: tuple[Step, ...] = ()
    fs_uuid: str = ""
    swap_mib: int = 0


def read_marker(machine: Machine) -> Optional[Marker]:
    text = _read(machine.path(MARKER_PATH))
    if not text:
        return None
    try:
        data = json.loads(text)
        return Marker(**{k: data.get(k, "") for k in Marker.__dataclass_fields__})
    except (ValueError, TypeError):
        return None


def write_marker(machine: Machine, marker: Marker) -> None:
    path = machine.path(MARKER_PATH)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic.write_file(path, json.dumps(marker.__dict__, indent=1, sort_keys=True) + "\n")


class _Executor:
    """Runs plan steps; knows the partition and file system UUID once made."""

    def __init__(self, machine: Machine, disk: Discovered, log: logging.Logger,
                 old_specs: Sequence[str] = (), part: str = "", uuid: str = "") -> None:
        self.m = machine
        self.disk = disk
        self.log = log
        self.old_specs = [s for s in old_specs if s and s != "UUID="]
        self.part = part
        self.uuid = uuid
        self._handlers: dict[type, Callable[..., None]] = {
            Command: self._command, FindPartition: self._find_partition,
            MakeFileSystem: self._mkfs, MakeDir: self._mkdir, Mount: self._mount,
            WriteReadme: self._readme, FstabMount: self._fstab_mount,
            FstabSwap: self._fstab_swap, FstabRemove: self._fstab_remove,
            Chmod: self._chmod, Remove: self._remove,
        }

    def _disk_present(self) -> None:
        if not os.path.exists(self.m.path(self.disk.node)):
            raise ResourceDiskVanishedError(device=self.disk.node)

    def run_steps(self, steps: Sequence[Step]) -> None:
        for step in steps:
            if step.destructive:
                self._disk_present()
            self._handlers[type(step)](step)

    def _run(self, argv: Sequence[str], stdin: Optional[str], check: bool) -> None:
        argv = list(argv)
        try:
            self.m.runner(argv, input=stdin, check=check)
        except CommandError as err:
            self._disk_present()  # a vanished disk explains the failure best
            raise ResourceDiskCommandError(tool=argv[0], command=" ".join(argv),
                                           error=err.result.stderr.strip()) from err
        except OSError as err:
            if check:
                raise ResourceDiskToolError(tool=argv[0], error=str(err)) from err
            self.log.debug("optional %s not run: %s", argv[0], err)

    def _command(self, step: Command) -> None:
        self._run(step.argv, step.stdin, step.check)

    def _find_partition(self, step: FindPartition) -> None:
        self.part = self._wait_partition(step.number)

    def _mkfs(self, step: MakeFileSystem) -> None:
        self._run(step.argv(self.part), None, True)
        self.uuid = probe(self.m.runner, self.part).get("UUID", "")

    def _mkdir(self, step: MakeDir) -> None:
        path = self.m.path(step.path)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise MountPointNotDirectoryError(
                                    mountpoint=step.path)
        os.makedirs(path, exist_ok=True)

    def _mount(self, step: Mount) -> None:
        self._run(step.argv(step.source or self.part), None, True)

    def _readme(self, step: WriteReadme) -> None:
        with open(os.path.join(self.m.path(step.directory), README_NAME), "w",
                  encoding="utf-8") as f:
            f.write(README_TEXT)

    def _fstab_mount(self, step: FstabMount) -> None:
        if not self.uuid:
            raise FsUuidUnknownError(
                                    device=self.part or self.disk.node)
        specs = [s for s in (*self.old_specs, self.disk.node, self.part) if s]
        self._edit_fstab(lambda t: update_fstab(t, step.fields(self.uuid), specs))

    def _fstab_swap(self, step: FstabSwap) -> None:
        self._edit_fstab(lambda t: update_fstab(t, step.fields(), (), SWAP_COMMENT))

    def _fstab_remove(self, step: FstabRemove) -> None:
        self._edit_fstab(lambda t: remove_fstab(t, step.spec))

    def _chmod(self, step: Chmod) -> None:
        os.chmod(self.m.path(step.path), step.mode)

    def _remove(self, step: Remove) -> None:
        os.unlink(self.m.path(step.path))

    def _edit_fstab(self, change: Callable[[str], str]) -> None:
        path = self.m.path(FSTAB_PATH)
        before = _read(path) or ""
        after = change(before)
        if after != before:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic.write_file(path, after)

    def _wait_partition(self, number: int) -> str:
        """The new partition, found in sysfs by number (not by name); its
        /dev node is created when there is no udev to do it."""
        deadline = self.m.clock() + PARTITION_TIMEOUT
        while True:
            self._disk_present()
            for sp in sysfs_partitions(self.m, self.disk.name):
                if sp.number == number:
                    return ensure_node(self.m, sp.name)
            if self.m.clock() >= deadline:
                raise PartitionMissingError(
                                        device=self.disk.node, partition=number)
            self.m.sleep(0.1)



def setup(cfg: DiskSettings, instance_id: Optional[str], machine: Machine,
          log: logging.Logger = LOG) -> Outcome:
    """Discover, decide, plan and execute: the whole module, every boot.

    Raises :class:`ResourceDiskError` for real errors (configured device
    missing, mount point is a file or taken, disk vanished, a command
    failed); every check that can fail runs before anything is destroyed.
    No resource disk, or one we must leave alone, is logged, not raised.
    """
    if not cfg.enabled:
        log.info("resource disk: disabled by azure_resource_disk.enabled")
        return Outcome(None)
    disk = discover(machine, cfg.device, cfg.wait_seconds)
    if disk is None:
        if cfg.device:
            raise ResourceDiskNotFoundError(device=cfg.device)
        log.info("resource disk: none found; nothing to do")
        return Outcome(None)
    log.info("resource disk: %s found by %s", disk.node, disk.how)
    if not os.path.exists(machine.path(disk.node)):
        disk = replace(disk, node=ensure_node(machine, disk.name))

    mp_real = machine.path(cfg.mountpoint)
    if os.path.lexists(mp_real) and not os.path.isdir(mp_real):
        raise MountPointNotDirectoryError(
                                mountpoint=cfg.mountpoint)

    layout = read_layout(machine, disk)
    marker = read_marker(machine)
    is_new, ours_before = instance_state(marker, instance_id)
    listing = NtfsListing()
    candidate = ntfs_candidate(layout)
    if candidate is not None and not cfg.never_destroy_ntfs and not layout.in_use:
        listing = list_ntfs(machine, candidate.node)
    decision = decide(layout, cfg, ntfs_files=listing.names, ntfs_error=listing.error,
                      ntfs_tools_missing=listing.tools_missing,
                      is_new_instance=is_new, previously_ours=ours_before)
    if decision.action == "skip":
        (log.warning if decision.warn else log.info)(
            "resource disk: leaving %s alone: %s", disk.node, decision.reason)
        return Outcome(disk, decision)

    mounted = (decision.target, cfg.mountpoint) in set(layout.in_use)
    taken = [src for src, mp in _mounts(machine)
             if mp.rstrip("/") == cfg.mountpoint and not (mounted and src == decision.target)]
    if taken:
        raise MountPointBusyError(
                                mountpoint=cfg.mountpoint, source=taken[-1])
    log.info("resource disk: %s %s: %s", decision.action, disk.node, decision.reason)

    steps = plan(decision, disk.node, cfg, mounted)
    old = [f"UUID={marker.fs_uuid}" if marker and marker.fs_uuid else "",
           marker.partition if marker else "", f"LABEL={cfg.label}"]
    ex = _Executor(machine, disk, log, old)
    if decision.action == "mount":
        ex.part = decision.target
        ex.uuid = decision.uuid or probe(machine.runner, ex.part).get("UUID", "")
    ex.run_steps(steps)

    swap_steps, swap_mib = _swap(machine, cfg, log)
    ex.run_steps(swap_steps)
    new_marker = Marker(instance_id, disk.node, ex.part, ex.uuid, cfg.filesystem,
                        cfg.label, cfg.mountpoint)
    if new_marker != marker:
        write_marker(machine, new_marker)
    return Outcome(disk, decision, steps + swap_steps, ex.uuid, swap_mib)


def _swap(machine: Machine, cfg: DiskSettings,
          log: logging.Logger) -> tuple[tuple[Step, ...], int]:
    """Measure the mounted file system and the existing swap file, then plan."""
    path = swapfile_path(cfg)
    if not cfg.swap_enabled:
        return plan_swap(cfg, 0, None, False), 0
    st = machine.statvfs(machine.path(cfg.mountpoint))
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    size = swap_size_mib(cfg.swap_size, total)
    try:
        existing: Optional[int] = os.stat(machine.path(path)).st_size
    except OSError:
        existing = None
    if size <= 0 or size * MIB > free + (existing or 0):
        log.warning("resource disk: a %s MiB swap file does not fit (%d MiB free); no swap",
                    size, free // MIB)
        return (), 0
    active = path in _swaps(machine)
    return plan_swap(cfg, size, existing, active), size
