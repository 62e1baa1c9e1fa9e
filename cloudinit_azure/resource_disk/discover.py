"""Finding the resource disk: configured device, Azure's udev link, VMBus ids
in sysfs, or an NVMe temp disk.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass
from typing import Optional

from cloudinit_azure.report import (
    ResourceDiskPartitionError,
)
from cloudinit_azure.resource_disk.machine import (
    Machine,
    _devname,
    _read,
    _resolve_link,
)

CLOUD_LINK = "/dev/disk/cloud/azure_resource"
GEN1_DEVICE_ID = "?00000000-0001-*"  # the udev rule's glob; "?" is the "{"
GEN2_SCSI_CONTROLLER = "{f8b3781a-1e82-4818-a1c3-63d806ec15bb}"
NVME_TEMP_MODEL = "Microsoft NVMe Direct Disk"


@dataclass(frozen=True)
class Discovered:
    """The resource disk and how we found it (for the log)."""

    name: str  # kernel name, e.g. "sdb", "nvme0n1", "loop3"
    node: str  # /dev path on the target system
    how: str  # "config" | "symlink" | "vmbus-gen1" | "vmbus-gen2" | "nvme"


def _sysfs_name_for_node(machine: Machine, node: str) -> Optional[str]:
    """Kernel name of a /dev node: by basename, else by its device number."""
    base = os.path.basename(node)
    if os.path.isdir(machine.path(f"/sys/class/block/{base}")):
        return base
    try:
        st = os.stat(machine.path(node))
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    link = f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    real = os.path.realpath(machine.path(link))
    return os.path.basename(real) if os.path.isdir(real) else None


def _whole_disk(machine: Machine, name: str) -> str:
    """A partition's parent disk name (the sysfs parent directory)."""
    sys_dir = machine.path(f"/sys/class/block/{name}")
    if os.path.exists(os.path.join(sys_dir, "partition")):
        return os.path.basename(os.path.dirname(os.path.realpath(sys_dir)))
    return name


def _vmbus_device_id(device_dir: str, stop: str) -> Optional[str]:
    """Walk up from a block device's ``device`` dir to the VMBus device."""
    current = device_dir
    while current.startswith(stop) and len(current) > len(stop):
        text = _read(os.path.join(current, "device_id"))
        if text is not None and os.path.exists(os.path.join(current, "class_id")):
            return text.strip()
        current = os.path.dirname(current)
    return None


def _scsi_lun(device_dir: str) -> Optional[int]:
    match = re.fullmatch(r"\d+:\d+:\d+:(\d+)", os.path.basename(device_dir))
    return int(match.group(1)) if match else None


def _block_disks(machine: Machine) -> list[str]:
    try:
        return sorted(os.listdir(machine.path("/sys/block")))
    except OSError:
        return []


def discover_once(machine: Machine, device: Optional[str] = None) -> Optional[Discovered]:
    """One look for the resource disk, in order of trust: the configured
    device, Azure's udev link, VMBus ids in sysfs, an NVMe temp disk."""
    if device:
        found = _resolve_link(machine, device)
        if found is None:
            return None
        name = _sysfs_name_for_node(machine, found) or os.path.basename(found)
        if os.path.exists(machine.path(f"/sys/class/block/{name}/partition")):
            raise ResourceDiskPartitionError(
                                    device=device)
        return Discovered(name, found, "config")

    found = _resolve_link(machine, CLOUD_LINK)
    if found is not None:
        name = _sysfs_name_for_node(machine, found)
        if name:
            disk = _whole_disk(machine, name)
            return Discovered(disk, _devname(machine, disk), "symlink")

    sys_root = os.path.realpath(machine.path("/sys"))
    for name in _block_disks(machine):
        dev_link = machine.path(f"/sys/block/{name}/device")
        if not os.path.exists(dev_link):
            continue
        device_dir = os.path.realpath(dev_link)
        device_id = _vmbus_device_id(device_dir, sys_root)
        if device_id is None:
            continue
        if fnmatch.fnmatch(device_id.lower(), GEN1_DEVICE_ID):
            return Discovered(name, _devname(machine, name), "vmbus-gen1")
        if device_id.lower() == GEN2_SCSI_CONTROLLER and _scsi_lun(device_dir) == 1:
            return Discovered(name, _devname(machine, name), "vmbus-gen2")

    for name in _block_disks(machine):
        if not name.startswith("nvme"):
            continue
        model = (_read(machine.path(f"/sys/block/{name}/device/model")) or "").strip()
        if model.startswith(NVME_TEMP_MODEL):
            return Discovered(name, _devname(machine, name), "nvme")
    return None


def discover(machine: Machine, device: Optional[str] = None,
             wait_seconds: float = 0.0) -> Optional[Discovered]:
    """Poll :func:`discover_once` for up to ``wait_seconds`` (hot-plugged or
    slow disks); the sleep and clock come from ``machine``."""
    deadline = machine.clock() + wait_seconds
    while True:
        found = discover_once(machine, device)
        remaining = deadline - machine.clock()
        if found is not None or remaining <= 0:
            return found
        machine.sleep(min(1.0, remaining))
