"""The resource disk's seam to the machine: root path, runner, clock, and the
few reads every stage shares (sysfs text, /proc mount tables, /dev links).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional

from cloudinit_azure.host import STATE_DIR, read_text
from cloudinit_azure.runner import Runner

LOG = logging.getLogger("cloudinit_azure.resource_disk")

MIB = 1024 * 1024
MARKER_PATH = f"{STATE_DIR}/resource-disk.json"
FSTAB_PATH = "/etc/fstab"


@dataclass(frozen=True)
class Machine:
    """Everything the resource disk code touches, so tests substitute each piece.

    Nothing has a default: the adapter passes its :class:`~cloudinit_azure.host.Host`'s
    parts and ``os.mknod``/``os.statvfs``.
    """

    root: str
    runner: Runner
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    mknod: Callable[..., None]
    statvfs: Callable[[str], Any]

    def path(self, system_path: str) -> str:
        """Map an absolute path on the target system to one under ``root``."""
        return os.path.join(self.root, system_path.lstrip("/"))


_read = read_text  # the package's name for it


def _uevent(machine: Machine, name: str) -> dict[str, str]:
    text = _read(machine.path(f"/sys/class/block/{name}/uevent")) or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _devname(machine: Machine, name: str) -> str:
    """The /dev node of a kernel block device, from its uevent DEVNAME."""
    return "/dev/" + (_uevent(machine, name).get("DEVNAME") or name)


def _resolve_link(machine: Machine, system_path: str, depth: int = 16) -> Optional[str]:
    """Follow symlinks of ``system_path`` inside ``root`` (absolute targets
    are re-rooted) and return the final system path, or None if absent."""
    current = os.path.normpath(system_path)
    for _ in range(depth):
        real = machine.path(current)
        if os.path.islink(real):
            target = os.readlink(real)
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(current), target)
            current = os.path.normpath(target)
            continue
        return current if os.path.exists(real) else None
    return None


def _proc_table(machine: Machine, path: str) -> list[tuple[str, str]]:
    """(source, target) pairs of /proc/self/mounts or /proc/swaps."""
    text = _read(machine.path(path)) or ""
    out = []
    for line in text.splitlines():
        toks = line.split()
        if len(toks) >= 2 and toks[0] != "Filename":
            out.append((toks[0].replace("\\040", " "), toks[1].replace("\\040", " ")))
    return out


def _canonical(machine: Machine, source: str) -> str:
    """/dev/disk/by-uuid/... and friends resolved to the /dev node."""
    if source.startswith("/dev/"):
        return _resolve_link(machine, source) or source
    return source


def _mounts(machine: Machine) -> list[tuple[str, str]]:
    return [(_canonical(machine, src), mp) for src, mp in
            _proc_table(machine, "/proc/self/mounts")]


def _swaps(machine: Machine) -> list[str]:
    return [_canonical(machine, src) for src, _ in _proc_table(machine, "/proc/swaps")]
