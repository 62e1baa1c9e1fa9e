"""Kernel tuning for Hyper-V guests: NUMA, host entropy, SCSI timeouts, serial console.

Each part is independent, switchable and idempotent, because the module runs
on every boot: sysfs values (SCSI timeouts) and the entropy pool reset at each
boot, and the grub/udev/systemd edits must converge instead of piling up.
Everything that touches the machine takes ``root`` (and a runner, ``which``
or ``ioctl`` seam), so tests and the simulator point it at a temporary tree.
No cloud-init imports here.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from cloudinit_azure import atomic, cmdline
from cloudinit_azure.runner import CommandError, Runner

LOG = logging.getLogger(__name__)

Which = Callable[[str], Optional[str]]
Ioctl = Callable[[str, int, bytes], Any]


# ---------------------------------------------------------------- settings

DEFAULT_CONSOLE_ARGS = "console=ttyS0,115200n8 earlyprintk=ttyS0"


@dataclass(frozen=True)
class KernelConfig:
    """The ``azure_kernel:`` settings, after :func:`settings.load` filled defaults."""

    numa: bool = True
    entropy: bool = True
    scsi_timeout: bool = True
    scsi_seconds: int = 300
    serial_console: bool = True
    console_args: tuple[str, ...] = tuple(DEFAULT_CONSOLE_ARGS.split())
    regenerate_grub: bool = True
    getty: bool = True
    sysfs: str = "/sys"

    @classmethod
    def from_settings(cls, cfg: Mapping[str, Any]) -> KernelConfig:
        scsi = cfg.get("scsi_timeout", {})
        console = cfg.get("serial_console", {})
        return cls(
            numa=cfg.get("numa", {}).get("enabled", True),
            entropy=cfg.get("entropy", {}).get("enabled", True),
            scsi_timeout=scsi.get("enabled", True),
            scsi_seconds=int(scsi.get("seconds", 300)),
            serial_console=console.get("enabled", True),
            console_args=tuple(str(console.get("args", DEFAULT_CONSOLE_ARGS)).split()),
            regenerate_grub=console.get("regenerate_grub", True),
            getty=console.get("getty", True),
            sysfs=str(cfg.get("sysfs", "/sys")),
        )


# ---------------------------------------------------------------- NUMA

# Kernels before 2.6.37 mis-handle the virtual NUMA topology Hyper-V exposes
# (boot hangs/crashes on multi-node sizes); the Azure Linux Agent has always
# turned NUMA off for them.
NUMA_FIXED_IN = (2, 6, 37)


def kernel_version(release: str) -> Optional[tuple[int, ...]]:
    """``"2.6.32-754.el6.x86_64"`` -> ``(2, 6, 32)``; None when unparseable."""
    m = re.match(r"\s*(\d+(?:\.\d+)*)", release)
    if not m:
        return None
    return tuple(int(p) for p in m.group(1).split("."))


def needs_numa_off(release: str) -> bool:
    """True for kernels older than 2.6.37, compared as numbers, not strings."""
    version = kernel_version(release)
    if version is None:
        return False
    return version < NUMA_FIXED_IN


# ---------------------------------------------------------------- entropy

OEM0 = "sys/firmware/acpi/tables/OEM0"
ACPI_HEADER_LEN = 36
RNDADDENTROPY = 0x40085203  # _IOW('R', 0x03, int[2])
# Hyper-V supplies 64 bytes; we credit 8 bits per byte (it is the host's own
# RNG output) but never more than 512 bits, so a larger or odd table cannot
# make the kernel believe it is better seeded than Hyper-V ever promises.
MAX_CREDIT_BITS = 512
MAX_PAYLOAD = 4096


def oem0_payload(table: bytes) -> Optional[bytes]:
    """The entropy bytes of an OEM0 ACPI table, or None when it is not Hyper-V's.

    The 36-byte ACPI header is constant and never credited. Kernels that
    seed from OEM0 themselves (Linux 6.9+) zero the payload afterwards; an
    all-zero payload means there is nothing left to add.
    """
    if len(table) < ACPI_HEADER_LEN or table[:4] != b"OEM0":
        return None
    if table[16:24] != b"MICROSFT":
        return None
    (length,) = struct.unpack_from("<I", table, 4)
    if length <= ACPI_HEADER_LEN or length > len(table):
        return None
    payload = table[ACPI_HEADER_LEN:length][:MAX_PAYLOAD]
    if not any(payload):
        return b""
    return payload


def credit_bits(payload: bytes) -> int:
    return min(len(payload) * 8, MAX_CREDIT_BITS)


def rand_pool_info(payload: bytes, bits: int) -> bytes:
    """Pack ``struct rand_pool_info {int entropy_count; int buf_size; u32 buf[];}``."""
    padded = payload + b"\0" * (-len(payload) % 4)
    return struct.pack("=ii", bits, len(payload)) + padded


def _ioctl(path: str, request: int, arg: bytes) -> None:
    """The real ioctl: needs CAP_SYS_ADMIN for RNDADDENTROPY."""
    import fcntl

    fd = os.open(path, os.O_WRONLY)
    try:
        fcntl.ioctl(fd, request, arg)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EntropyOutcome:
    status: str  # credited | mixed | absent | consumed | invalid | failed
    nbytes: int = 0
    bits: int = 0


def seed_entropy(root: str, *, ioctl: Ioctl = _ioctl,
                 log: logging.Logger = LOG) -> EntropyOutcome:
    """Mix Hyper-V's OEM0 entropy into the kernel pool, crediting it if allowed.

    Runs before SSH host keys are generated. Without CAP_SYS_ADMIN (or any
    ioctl failure) the bytes go to /dev/urandom: mixed in, not credited.
    """
    try:
        with open(os.path.join(root, OEM0), "rb") as f:
            table = f.read()
    except FileNotFoundError:
        log.debug("no ACPI OEM0 table: not a Hyper-V guest, no host entropy")
        return EntropyOutcome("absent")
    except OSError as err:
        log.warning("cannot read ACPI OEM0 table: %s", err)
        return EntropyOutcome("failed")
    payload = oem0_payload(table)
    if payload is None:
        log.warning("ACPI OEM0 table is not Hyper-V's entropy table; ignored")
        return EntropyOutcome("invalid")
    if not payload:
        log.debug("OEM0 entropy already consumed (zeroed) by the kernel")
        return EntropyOutcome("consumed")
    bits = credit_bits(payload)
    try:
        ioctl(os.path.join(root, "dev/random"), RNDADDENTROPY,
              rand_pool_info(payload, bits))
        log.info("credited %d bits of Hyper-V host entropy", bits)
        return EntropyOutcome("credited", len(payload), bits)
    except OSError as err:
        reason = errno.errorcode.get(err.errno or 0, str(err))
        log.info("RNDADDENTROPY refused (%s); mixing host entropy without credit", reason)
    try:
        fd = os.open(os.path.join(root, "dev/urandom"), os.O_WRONLY)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
    except OSError as err:
        log.warning("cannot write host entropy to /dev/urandom: %s", err)
        return EntropyOutcome("failed", len(payload))
    return EntropyOutcome("mixed", len(payload), 0)


# ---------------------------------------------------------------- SCSI timeouts

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
        atomic.write_file(path, text)
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


# ---------------------------------------------------------------- grub regeneration


def which_in(root: str) -> Which:
    """Find tools only on the machine being configured.

    For ``root == "/"`` that is :func:`shutil.which`; for any other root it
    finds nothing, so a host's grub tools never run against someone else's tree.
    """
    if os.path.realpath(root) == "/":
        return shutil.which
    return lambda name: None


def _grub_var(root: str, name: str) -> Optional[str]:
    text = _read_attr(os.path.join(root, cmdline.GRUB_DEFAULT))
    if not text:
        return None
    found = re.findall(r"^[ \t]*" + name + r"=[\"']?([^\"'\s#]*)", text, re.M)
    return found[-1] if found else None


def _grub_cfg(root: str) -> str:
    """Where grub2-mkconfig should write: an existing grub.cfg, BIOS layout first."""
    for rel in ("boot/grub2/grub.cfg", "boot/grub/grub.cfg"):
        if os.path.exists(os.path.join(root, rel)):
            return "/" + rel
    efi = os.path.join(root, "boot/efi/EFI")
    if os.path.isdir(efi):
        for vendor in sorted(os.listdir(efi)):
            if os.path.exists(os.path.join(efi, vendor, "grub.cfg")):
                return f"/boot/efi/EFI/{vendor}/grub.cfg"
    if os.path.isdir(os.path.join(root, "boot/grub2")):
        return "/boot/grub2/grub.cfg"
    return "/boot/grub/grub.cfg"


def grub_commands(root: str, added: Sequence[str], which: Which) -> list[list[str]]:
    """The commands that make the boot loader use the new command line.

    BLS systems (``GRUB_ENABLE_BLSCFG=true``, RHEL 8+/Fedora) keep arguments
    in each entry: ``grubby`` updates them. Otherwise ``update-grub``
    (Debian/Ubuntu), else ``grub2-mkconfig``/``grub-mkconfig``. No tool: [].
    """
    if (_grub_var(root, "GRUB_ENABLE_BLSCFG") or "").lower() == "true":
        grubby = which("grubby")
        if grubby:
            return [[grubby, "--update-kernel=ALL", "--args=" + " ".join(added)]]
    tool = which("update-grub")
    if tool:
        return [[tool]]
    for name in ("grub2-mkconfig", "grub-mkconfig"):
        tool = which(name)
        if tool:
            return [[tool, "-o", _grub_cfg(root)]]
    return []


def regenerate_grub(root: str, added: Sequence[str], *, runner: Runner, which: Which,
                    log: logging.Logger = LOG) -> bool:
    """Run the distro's grub tool; False (logged) when absent or failing."""
    commands = grub_commands(root, added, which)
    if not commands:
        log.info("no grub tool found: new kernel arguments apply once grub.cfg is regenerated")
        return False
    for cmd in commands:
        try:
            runner(cmd, timeout=300)
        except (CommandError, OSError) as err:
            log.warning("regenerating grub configuration failed: %s", err)
            return False
    log.info("regenerated grub configuration with %s", os.path.basename(commands[0][0]))
    return True


# ---------------------------------------------------------------- serial getty

GETTY_WANTS = "etc/systemd/system/getty.target.wants"
GETTY_TEMPLATES = ("usr/lib/systemd/system/serial-getty@.service",
                   "lib/systemd/system/serial-getty@.service")


def console_tty(args: Sequence[str], default: str = "ttyS0") -> str:
    """The serial device the console arguments name (last ``console=ttyS*``)."""
    tty = default
    for arg in args:
        if arg.startswith("console=ttyS"):
            tty = arg[len("console="):].split(",", 1)[0]
    return tty


@dataclass(frozen=True)
class GettyOutcome:
    status: str  # enabled | present | no-systemd | failed
    link: Optional[str] = None


def enable_serial_getty(root: str, tty: str, log: logging.Logger = LOG) -> GettyOutcome:
    """Enable ``serial-getty@<tty>`` by creating its wants link, as ``systemctl enable`` does.

    Works in a chroot or image without a running systemd. The link is what
    ``systemctl enable`` would make; an existing link (or an image author's
    own file) is left as it is.
    """
    template = next((t for t in GETTY_TEMPLATES if os.path.exists(os.path.join(root, t))), None)
    if template is None:
        log.debug("no serial-getty@.service under %s: not a systemd system", root)
        return GettyOutcome("no-systemd")
    rel = f"{GETTY_WANTS}/serial-getty@{tty}.service"
    link = os.path.join(root, rel)
    if os.path.lexists(link):
        return GettyOutcome("present", rel)
    try:
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink("/" + template, link)
    except OSError as err:
        log.warning("cannot enable serial-getty@%s: %s", tty, err)
        return GettyOutcome("failed")
    log.info("enabled serial-getty@%s.service", tty)
    return GettyOutcome("enabled", rel)


# ---------------------------------------------------------------- all parts


@dataclass(frozen=True)
class KernelOutcome:
    entropy: Optional[EntropyOutcome] = None
    scsi: Optional[ScsiOutcome] = None
    numa_off_wanted: bool = False
    cmdline: Optional[cmdline.CmdlineOutcome] = None
    grub_regenerated: bool = False
    getty: Optional[GettyOutcome] = None


def apply(root: str, config: KernelConfig, *, release: str, runner: Runner,
          which: Optional[Which] = None, ioctl: Ioctl = _ioctl,
          log: logging.Logger = LOG) -> KernelOutcome:
    """Run every enabled part; each is idempotent and failures are logged, not raised.

    Order: entropy first (time-sensitive: before SSH host keys), then SCSI
    timeouts, then one kernel command-line edit for NUMA and console
    together, so grub is regenerated at most once, and only on a change.
    """
    which = which or which_in(root)
    entropy = seed_entropy(root, ioctl=ioctl, log=log) if config.entropy else None
    scsi = (set_scsi_timeouts(root, config.scsi_seconds, log, config.sysfs)
            if config.scsi_timeout else None)

    args: list[str] = []
    numa_off = config.numa and needs_numa_off(release)
    if config.numa and kernel_version(release) is None:
        log.warning("cannot parse kernel release %r; NUMA left alone", release)
    if numa_off:
        args.append("numa=off")
    if config.serial_console:
        args.extend(config.console_args)
    edit = cmdline.ensure_args(root, args, log) if args else None
    regenerated = False
    if edit is not None and edit.changed:
        if config.regenerate_grub:
            regenerated = regenerate_grub(root, edit.added, runner=runner, which=which, log=log)
        else:
            log.info("grub regeneration disabled: kernel arguments apply at its next run")

    getty = None
    if config.serial_console and config.getty:
        getty = enable_serial_getty(root, console_tty(config.console_args), log)
    return KernelOutcome(entropy, scsi, numa_off, edit, regenerated, getty)
