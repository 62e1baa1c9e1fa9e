"""SCSI timeouts for the root disk and Hyper-V disks (sysfs and a udev rule).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

LOG = logging.getLogger(__name__)



UDEV_RULE = "etc/udev/rules.d/66-azure-scsi-timeout.rules"


def udev_rule(seconds: int) -> str:
    """A rule giving Hyper-V SCSI disks added later the same timeout, no polling.

    Hyper-V pads SCSI inquiry strings (vendor ``"Msft    "``, model
    ``"Virtual Disk    "``), hence the globs; ATTRS must match on one parent
    (the scsi_device, which has both). ``ATTR{device/timeout}=`` is udev's
    own sysfs write: no shell.
    """
    return (
        "# Managed by cloudinit-azure (azure_kernel.scsi_timeout).\n"
        f"# Hyper-V SCSI disks get a {seconds} s command timeout when they appear.\n"
        'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="sd*", ENV{DEVTYPE}=="disk", '
        'ATTRS{vendor}=="Msft*", ATTRS{model}=="Virtual Disk*", '
        f'ATTR{{device/timeout}}="{seconds}"\n'
    )


def install_udev_rule(root: str, seconds: int, log: logging.Logger = LOG) -> bool:
    """Write the rule only when its content differs; True when written."""
    path = os.path.join(root, UDEV_RULE)
    text = udev_rule(seconds)
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as err:
        log.warning("cannot write /%s: %s", UDEV_RULE, err)
        return False
    log.info("installed /%s", UDEV_RULE)
    return True


def _read_attr(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def sys_dir(root: str, sysfs: str = "/sys") -> str:
    """Where sysfs is for the SCSI part: ``sysfs`` (absolute, on the target
    system) under ``root``. Image builders and the simulator point it at a
    fake tree; the real sysfs of a sandbox is read-only."""
    return os.path.join(root, sysfs.strip("/") or "sys")


def is_hyperv_disk(root: str, name: str, sysfs: str = "/sys") -> bool:
    """A Hyper-V synthetic SCSI disk: Msft / Virtual Disk on the VMBus."""
    dev = os.path.join(sys_dir(root, sysfs), "block", name)
    if (_read_attr(os.path.join(dev, "device/vendor")) or "") != "Msft":
        return False
    if not (_read_attr(os.path.join(dev, "device/model")) or "").startswith("Virtual Disk"):
        return False
    return "vmbus" in os.path.realpath(dev).lower()


def hyperv_disks(root: str, sysfs: str = "/sys") -> list[str]:
    try:
        names = sorted(os.listdir(os.path.join(sys_dir(root, sysfs), "block")))
    except FileNotFoundError:
        return []
    return [n for n in names if is_hyperv_disk(root, n, sysfs)]


def _whole_disks(root: str, sys_path: str, depth: int = 0, sysfs: str = "/sys") -> list[str]:
    """Disks under a sysfs block device: its parent if a partition, its slaves if dm/md."""
    real = os.path.realpath(sys_path)
    if not os.path.isdir(real) or depth > 8:
        return []
    slaves_dir = os.path.join(real, "slaves")
    slaves = sorted(os.listdir(slaves_dir)) if os.path.isdir(slaves_dir) else []
    if slaves:
        out: list[str] = []
        for s in slaves:
            for d in _whole_disks(root, os.path.join(sys_dir(root, sysfs), "class/block", s),
                                  depth + 1, sysfs):
                if d not in out:
                    out.append(d)
        return out
    if os.path.exists(os.path.join(real, "partition")):
        real = os.path.dirname(real)
    return [os.path.basename(real)]


def root_disks(root: str, sysfs: str = "/sys") -> list[str]:
    """The whole disk(s) holding ``/``, from ``/proc/self/mountinfo``.

    Uses the mount's major:minor (``/sys/dev/block/M:m``), falling back to
    the source device name; overlay, tmpfs and the like yield nothing.
    """
    text = _read_attr(os.path.join(root, "proc/self/mountinfo"))
    if not text:
        return []
    entry = None
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/":
            entry = fields  # the last one is the mount on top
    if entry is None:
        return []
    dev = os.path.join(sys_dir(root, sysfs), "dev/block", entry[2])
    if os.path.exists(dev):
        return _whole_disks(root, dev, sysfs=sysfs)
    source = ""
    if "-" in entry[6:]:
        sep = entry.index("-", 6)
        source = entry[sep + 2] if len(entry) > sep + 2 else ""
    if source.startswith("/dev/"):
        name = os.path.basename(os.path.realpath(os.path.join(root, source.lstrip("/"))))
        return _whole_disks(root, os.path.join(sys_dir(root, sysfs), "class/block", name),
                            sysfs=sysfs)
    return []


@dataclass(frozen=True)
class ScsiOutcome:
    written: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    rule_written: bool = False


def set_scsi_timeouts(root: str, seconds: int,
                      log: logging.Logger = LOG, sysfs: str = "/sys") -> ScsiOutcome:
    """Set ``device/timeout`` on the root disk and every Hyper-V SCSI disk.

    ``sysfs`` is where sysfs is on the target system (default ``/sys``)."""
    disks: list[str] = []
    for d in root_disks(root, sysfs) + hyperv_disks(root, sysfs):
        if d not in disks:
            disks.append(d)
    written, unchanged, skipped = [], [], []
    want = str(seconds)
    for d in disks:
        path = os.path.join(sys_dir(root, sysfs), "block", d, "device/timeout")
        if not os.path.lexists(path):
            log.debug("%s has no SCSI timeout (not a SCSI disk); skipped", d)
            skipped.append(d)
            continue
        if _read_attr(path) == want:
            unchanged.append(d)
            continue
        try:
            with open(path, "w", encoding="ascii") as f:
                f.write(want)
        except OSError as err:
            log.warning("cannot set SCSI timeout of %s: %s", d, err)
            skipped.append(d)
            continue
        written.append(d)
    if written:
        log.info("SCSI timeout %s s set on %s", want, ", ".join(written))
    rule = install_udev_rule(root, seconds, log)
    return ScsiOutcome(tuple(written), tuple(unchanged), tuple(skipped), rule)
