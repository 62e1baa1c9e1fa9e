"""Azure resource (temporary) disk: discovery, safety decision, plan, execution.

Azure ships the resource disk NTFS-formatted, empty but for a warning file,
and may hand over a fresh one after a resize or redeploy. We reformat it only
when it is provably empty, and mount it on every boot. The decision and the
command plan are pure functions over frozen dataclasses; everything that
touches the machine takes a :class:`Machine` (root path, runner, clock ...)
so tests and the simulator can point it elsewhere. Nothing here imports
cloud-init.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from cloudinit_azure import atomic
from cloudinit_azure import settings as settings_mod
from cloudinit_azure.report import ProvisioningError
from cloudinit_azure.runner import CommandError, Runner, run

LOG = logging.getLogger(__name__)

NAMESPACE = "azure_resource_disk"
CLOUD_LINK = "/dev/disk/cloud/azure_resource"
GEN1_DEVICE_ID = "?00000000-0001-*"  # the udev rule's glob; "?" is the "{"
GEN2_SCSI_CONTROLLER = "{f8b3781a-1e82-4818-a1c3-63d806ec15bb}"
NVME_TEMP_MODEL = "Microsoft NVMe Direct Disk"
MSR_GUID = "e3c9e316-0b5c-4db8-817d-f92df00215ae"
LINUX_FS_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
AZURE_NTFS_FILES = frozenset({"dataloss_warning_readme.txt", "system volume information"})
README_NAME = "DATALOSS_WARNING_README.txt"
MARKER_PATH = "/var/lib/cloudinit-azure/resource-disk.json"
FSTAB_PATH = "/etc/fstab"
FSTAB_COMMENT = "# cloudinit-azure: resource disk (temporary storage, lost on redeploy)"
SWAP_COMMENT = "# cloudinit-azure: swap file on the resource disk"
SWAPFILE_NAME = "swapfile"
MIB = 1024 * 1024
PARTITION_TIMEOUT = 10.0

README_TEXT = """\
WARNING: THIS IS A TEMPORARY DISK.

Any data stored on this drive is SUBJECT TO LOSS and THERE IS NO WAY TO
RECOVER IT. Azure may replace this disk with an empty one when the VM is
resized, redeployed, stopped (deallocated) or moved to another host.

Please do not use this disk for storing any personal or application data.
It was formatted and mounted by cloudinit-azure; see its resource-disk
documentation for the azure_resource_disk configuration keys.
"""


class ResourceDiskError(ProvisioningError):
    """The resource disk could not be set up; nothing was destroyed by us
    unless the message says the format had already begun."""

    default_reason = "error setting up the resource disk"


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskSettings:
    """Validated ``azure_resource_disk`` settings (schema defaults filled)."""

    enabled: bool = True
    device: Optional[str] = None
    filesystem: str = "ext4"
    label: str = "AzureTemp"
    mountpoint: str = "/mnt"
    mount_options: str = "defaults,nofail"
    never_destroy_ntfs: bool = False
    swap_enabled: bool = False
    swap_size: str = "2048"
    wait_seconds: float = 0.0


def load_settings(cfg: Optional[Mapping[str, Any]]) -> DiskSettings:
    """Validate ``cfg["azure_resource_disk"]``; also honour the built-in
    datasource's ``datasource: Azure: never_destroy_ntfs`` so existing image
    configs keep their promise."""
    raw = settings_mod.load(NAMESPACE, cfg)
    ds_cfg = ((cfg or {}).get("datasource") or {}).get("Azure") or {}
    never = bool(raw["never_destroy_ntfs"]) or _truthy(ds_cfg.get("never_destroy_ntfs"))
    swap = raw.get("swap") or {}
    return DiskSettings(
        enabled=bool(raw["enabled"]),
        device=raw.get("device"),
        filesystem=raw["filesystem"],
        label=raw["label"],
        mountpoint=raw["mountpoint"],
        mount_options=raw["mount_options"],
        never_destroy_ntfs=never,
        swap_enabled=bool(swap.get("enabled")),
        swap_size=str(swap.get("size", "2048")),
        wait_seconds=float(raw["wait_seconds"]),
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


# --------------------------------------------------------------------------
# The machine seam
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Machine:
    """Everything execution touches, so tests can substitute each piece."""

    root: str = "/"
    runner: Runner = run
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    mknod: Callable[..., None] = os.mknod
    statvfs: Callable[[str], Any] = os.statvfs

    def path(self, system_path: str) -> str:
        """Map an absolute path on the target system to one under ``root``."""
        return os.path.join(self.root, system_path.lstrip("/"))


# --------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Discovered:
    """The resource disk and how we found it (for the log)."""

    name: str  # kernel name, e.g. "sdb", "nvme0n1", "loop3"
    node: str  # /dev path on the target system
    how: str  # "config" | "symlink" | "vmbus-gen1" | "vmbus-gen2" | "nvme"


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


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
            raise ResourceDiskError("configured device is a partition; name the whole disk",
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


# --------------------------------------------------------------------------
# Partitions, nodes and probing
# --------------------------------------------------------------------------


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
        raise ResourceDiskError("no device number in sysfs", device=name)
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


# --------------------------------------------------------------------------
# Layout and decision (pure)
# --------------------------------------------------------------------------


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
    if (layout.pttype == "gpt" and len(parts) == 2
            and parts[0].parttype.lower() == MSR_GUID and parts[1].fstype == "ntfs"):
        return parts[1]
    return None


def user_files(names: Iterable[str]) -> list[str]:
    """Entries of the NTFS root that Azure did not put there."""
    return [n for n in names
            if n not in (".", "..") and n.strip().lower() not in AZURE_NTFS_FILES]


def _describe(fstype: str, label: str) -> str:
    if not fstype:
        return "no file system"
    return f"file system {fstype}" + (f" labelled {label!r}" if label else "")


def decide(layout: DiskLayout, cfg: DiskSettings, *,
           ntfs_files: Optional[Sequence[str]] = None,
           ntfs_error: str = "",
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
        return Decision("format", f"{layout.disk} is raw: no partition table, no file system")

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
                            warn=True)
        extra = user_files(ntfs_files)
        if extra:
            shown = ", ".join(sorted(extra)[:5])
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


# --------------------------------------------------------------------------
# Instance state (marker file)
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Plan (pure)
# --------------------------------------------------------------------------

PART = "{part}"  # placeholder: the new partition's node, found after partitioning
UUID = "{uuid}"  # placeholder: the file system UUID, read after mkfs


@dataclass(frozen=True)
class Step:
    """One thing to do. ``run`` steps are command lines; the other kinds are
    done in-process by the executor so they can be tested without a host."""

    kind: str  # run | find_partition | mkdir | mount | readme | fstab | fstab_remove
    #            | chmod | remove
    argv: tuple[str, ...] = ()
    stdin: Optional[str] = None
    check: bool = True
    destructive: bool = False


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
    raise ResourceDiskError("unsupported file system", filesystem=fs)


def fstab_fields(cfg: DiskSettings) -> tuple[str, ...]:
    passno = "2" if cfg.filesystem == "ext4" else "0"
    return (f"UUID={UUID}", cfg.mountpoint, cfg.filesystem, cfg.mount_options, "0", passno)


def plan_format(disk: str, cfg: DiskSettings) -> tuple[Step, ...]:
    """GPT with one Linux partition over the whole disk, file system, mount,
    warning file and fstab entry."""
    script = f'label: gpt\ntype={LINUX_FS_GUID}, name="{cfg.label}"\n'
    return (
        Step("run", ("sfdisk", "--wipe", "always", "--wipe-partitions", "always",
                     "--quiet", disk), stdin=script, destructive=True),
        Step("run", ("partx", "-u", disk), check=False),
        Step("run", ("udevadm", "settle", "--timeout=10"), check=False),
        Step("find_partition", (disk, "1")),
        Step("run", mkfs_argv(cfg.filesystem, cfg.label, PART), destructive=True),
        Step("mkdir", (cfg.mountpoint,)),
        Step("mount", ("mount", "-t", cfg.filesystem, "-o", cfg.mount_options, PART,
                       cfg.mountpoint)),
        Step("readme", (cfg.mountpoint,)),
        Step("fstab", fstab_fields(cfg)),
    )


def plan_mount(node: str, cfg: DiskSettings, mounted: bool) -> tuple[Step, ...]:
    """Every later boot: mount our file system if it is not, keep fstab right."""
    steps = [Step("mkdir", (cfg.mountpoint,))]
    if not mounted:
        steps.append(Step("mount", ("mount", "-t", cfg.filesystem, "-o", cfg.mount_options,
                                    node, cfg.mountpoint)))
    steps.append(Step("fstab", fstab_fields(cfg)))
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
    entry = Step("fstab", (path, "none", "swap", "sw,nofail", "0", "0"))
    if not cfg.swap_enabled:
        return (Step("fstab_remove", (path,)),)
    want = size_mib * MIB
    if existing_bytes == want:
        return ((Step("run", ("swapon", path)),) if not active else ()) + (entry,)
    steps = []
    if active:
        steps.append(Step("run", ("swapoff", path)))
    if existing_bytes is not None:
        steps.append(Step("remove", (path,)))
    if cfg.filesystem == "btrfs":
        # btrfs needs a NOCOW, non-compressed file: mkswapfile does all of it.
        steps.append(Step("run", ("btrfs", "filesystem", "mkswapfile", "--size",
                                  f"{size_mib}m", path)))
        steps.append(Step("chmod", (path, "600")))
    else:
        steps.append(Step("run", ("fallocate", "-l", str(want), path)))
        steps.append(Step("chmod", (path, "600")))
        steps.append(Step("run", ("mkswap", path)))
    steps.append(Step("run", ("swapon", path)))
    steps.append(entry)
    return tuple(steps)


# --------------------------------------------------------------------------
# fstab (pure)
# --------------------------------------------------------------------------


def update_fstab(text: str, fields: Sequence[str], replaces: Iterable[str] = (),
                 comment: str = FSTAB_COMMENT) -> str:
    """Put ``fields`` in fstab exactly once. The first line for the same
    spec (or any in ``replaces``: old UUID, LABEL=, /dev path) or the same
    mount point is replaced in place, later ones dropped; else append."""
    specs = {fields[0], *replaces}
    target = None if fields[1] == "none" else fields[1]  # swap: match by spec only
    new_line = "\t".join(fields)
    out: list[str] = []
    placed = False
    for line in text.splitlines():
        if _fstab_matches(line, specs, target):
            if not placed:
                out.append(new_line)
                placed = True
            continue
        out.append(line)
    if not placed:
        while out and not out[-1].strip():
            out.pop()
        out += [comment, new_line]
    return "\n".join(out) + "\n"


def remove_fstab(text: str, spec: str, comment: str = SWAP_COMMENT) -> str:
    """Drop lines for ``spec`` and our comment right above them."""
    lines = text.splitlines()
    out: list[str] = []
    for line in lines:
        if _fstab_matches(line, {spec}, None):
            if out and out[-1].strip() == comment:
                out.pop()
            continue
        out.append(line)
    if out == lines:
        return text
    return "\n".join(out) + ("\n" if out else "")


def _fstab_matches(line: str, specs: set, target: Optional[str]) -> bool:
    toks = line.split()
    if not toks or toks[0].startswith("#"):
        return False
    if toks[0] in specs:
        return True
    return target is not None and len(toks) > 1 and toks[1].rstrip("/") == target.rstrip("/")


# --------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What happened, for the log and the tests."""

    device: Optional[Discovered]
    decision: Optional[Decision] = None
    steps: tuple[Step, ...] = ()
    fs_uuid: str = ""
    swap_mib: int = 0


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
    return DiskLayout(disk.node, whole.get("PTTYPE", ""),
                      whole.get("TYPE", "") if bare else "",
                      whole.get("LABEL", "") if bare else "",
                      whole.get("UUID", "") if bare else "",
                      tuple(parts), tuple(in_use), unclear)


def list_ntfs(machine: Machine, node: str) -> tuple[Optional[list[str]], str]:
    """Root directory of an NTFS volume: ``ntfsls`` (ntfs-3g, no mount), else
    a read-only ntfs-3g FUSE mount. Returns (names, error)."""
    try:
        res = machine.runner(["ntfsls", "-a", "-f", node], check=False)
        if res.returncode == 0:
            return [n for n in res.stdout.splitlines() if n.strip()], ""
        error = f"ntfsls exit {res.returncode}: {res.stderr.strip()}"
    except OSError as err:
        error = f"ntfsls unavailable ({err.strerror or err}); install ntfs-3g"
    run_dir = machine.path("/run")
    os.makedirs(run_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="azure-resource-ntfs.", dir=run_dir)
    system_tmp = "/run/" + os.path.basename(tmp)
    try:
        res = machine.runner(["mount", "-t", "ntfs-3g", "-o", "ro", node, system_tmp],
                             check=False)
        if res.returncode != 0:
            return None, f"{error}; read-only ntfs-3g mount failed: {res.stderr.strip()}"
        try:
            return sorted(os.listdir(tmp)), ""
        finally:
            machine.runner(["umount", system_tmp], check=False)
    except OSError as err:
        return None, f"{error}; read-only mount failed: {err}"
    finally:
        try:
            os.rmdir(tmp)
        except OSError:
            pass


class _Executor:
    """Runs plan steps, filling {part}/{uuid} in as they become known."""

    def __init__(self, machine: Machine, disk: Discovered, log: logging.Logger,
                 old_specs: Sequence[str] = ()) -> None:
        self.m = machine
        self.disk = disk
        self.log = log
        self.old_specs = [s for s in old_specs if s and s != "UUID="]
        self.part = ""
        self.uuid = ""

    def _sub(self, argv: Sequence[str]) -> list[str]:
        return [a.replace(PART, self.part).replace(UUID, self.uuid) for a in argv]

    def _disk_present(self) -> None:
        if not os.path.exists(self.m.path(self.disk.node)):
            raise ResourceDiskError("resource disk vanished during setup", device=self.disk.node)

    def run_steps(self, steps: Sequence[Step]) -> None:
        for step in steps:
            self.do(step)

    def _run(self, argv: list[str], stdin: Optional[str], check: bool) -> None:
        try:
            self.m.runner(argv, input=stdin, check=check)
        except CommandError as err:
            self._disk_present()  # a vanished disk explains the failure best
            raise ResourceDiskError(f"{argv[0]} failed", command=" ".join(argv),
                                    error=err.result.stderr.strip()) from err
        except OSError as err:
            if check:
                raise ResourceDiskError(f"cannot run {argv[0]}", error=str(err)) from err
            self.log.debug("optional %s not run: %s", argv[0], err)

    def do(self, step: Step) -> None:
        m = self.m
        if step.destructive:
            self._disk_present()
        if step.kind in ("run", "mount"):
            argv = self._sub(step.argv)
            self._run(argv, step.stdin, step.check)
            if argv[0].startswith("mkfs."):
                self.uuid = probe(m.runner, self.part).get("UUID", "")
        elif step.kind == "find_partition":
            self.part = self._wait_partition(int(step.argv[1]))
        elif step.kind == "mkdir":
            path = m.path(step.argv[0])
            if os.path.lexists(path) and not os.path.isdir(path):
                raise ResourceDiskError("mount point exists and is not a directory",
                                        mountpoint=step.argv[0])
            os.makedirs(path, exist_ok=True)
        elif step.kind == "readme":
            with open(os.path.join(m.path(step.argv[0]), README_NAME), "w",
                      encoding="utf-8") as f:
                f.write(README_TEXT)
        elif step.kind == "fstab":
            fields = self._sub(step.argv)
            if fields[0] == "UUID=":
                raise ResourceDiskError("file system UUID unknown; fstab left alone",
                                        device=self.part or self.disk.node)
            if fields[2] == "swap":
                self._edit_fstab(lambda t: update_fstab(t, fields, (), SWAP_COMMENT))
            else:
                specs = [*self.old_specs, self.disk.node, self.part]
                self._edit_fstab(lambda t: update_fstab(t, fields, [s for s in specs if s]))
        elif step.kind == "fstab_remove":
            self._edit_fstab(lambda t: remove_fstab(t, step.argv[0]))
        elif step.kind == "chmod":
            os.chmod(m.path(step.argv[0]), int(step.argv[1], 8))
        elif step.kind == "remove":
            os.unlink(m.path(step.argv[0]))
        else:  # pragma: no cover - plans are built in this module
            raise ResourceDiskError("unknown plan step", kind=step.kind)

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
                raise ResourceDiskError("new partition did not appear in sysfs",
                                        device=self.disk.node, partition=number)
            self.m.sleep(0.1)


def setup(cfg: DiskSettings, instance_id: Optional[str], machine: Optional[Machine] = None,
          log: logging.Logger = LOG) -> Outcome:
    """Discover, decide, plan and execute: the whole module, every boot.

    Raises :class:`ResourceDiskError` for real errors (configured device
    missing, mount point is a file or taken, disk vanished, a command
    failed); every check that can fail runs before anything is destroyed.
    No resource disk, or one we must leave alone, is logged, not raised.
    """
    machine = machine or Machine()
    if not cfg.enabled:
        log.info("resource disk: disabled by azure_resource_disk.enabled")
        return Outcome(None)
    disk = discover(machine, cfg.device, cfg.wait_seconds)
    if disk is None:
        if cfg.device:
            raise ResourceDiskError("configured resource disk not found", device=cfg.device)
        log.info("resource disk: none found; nothing to do")
        return Outcome(None)
    log.info("resource disk: %s found by %s", disk.node, disk.how)
    if not os.path.exists(machine.path(disk.node)):
        disk = replace(disk, node=ensure_node(machine, disk.name))

    mp_real = machine.path(cfg.mountpoint)
    if os.path.lexists(mp_real) and not os.path.isdir(mp_real):
        raise ResourceDiskError("mount point exists and is not a directory",
                                mountpoint=cfg.mountpoint)

    layout = read_layout(machine, disk)
    marker = read_marker(machine)
    is_new, ours_before = instance_state(marker, instance_id)
    files: Optional[list[str]] = None
    ntfs_error = ""
    candidate = ntfs_candidate(layout)
    if candidate is not None and not cfg.never_destroy_ntfs and not layout.in_use:
        files, ntfs_error = list_ntfs(machine, candidate.node)
    decision = decide(layout, cfg, ntfs_files=files, ntfs_error=ntfs_error,
                      is_new_instance=is_new, previously_ours=ours_before)
    if decision.action == "skip":
        (log.warning if decision.warn else log.info)(
            "resource disk: leaving %s alone: %s", disk.node, decision.reason)
        return Outcome(disk, decision)

    mounted = (decision.target, cfg.mountpoint) in set(layout.in_use)
    taken = [src for src, mp in _mounts(machine)
             if mp.rstrip("/") == cfg.mountpoint and not (mounted and src == decision.target)]
    if taken:
        raise ResourceDiskError("mount point already has another file system mounted",
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
