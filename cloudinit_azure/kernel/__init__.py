"""Kernel tuning for Hyper-V guests: NUMA, host entropy, SCSI timeouts, serial console.

Each part is independent, switchable and idempotent, because the module runs
on every boot: sysfs values (SCSI timeouts) and the entropy pool reset at each
boot, and the grub/udev/systemd edits must converge instead of piling up.
Everything that touches the machine takes ``root`` (and a runner, ``which``
or ``ioctl`` seam), so tests and the simulator point it at a temporary tree.
No cloud-init imports here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from cloudinit_azure import settings
from cloudinit_azure.kernel import cmdline  # noqa: F401
from cloudinit_azure.kernel.entropy import (  # noqa: F401
    ACPI_HEADER_LEN,
    MAX_CREDIT_BITS,
    MAX_PAYLOAD,
    OEM0,
    RNDADDENTROPY,
    EntropyOutcome,
    Ioctl,
    credit_bits,
    oem0_payload,
    rand_pool_info,
    rnd_ioctl,
    seed_entropy,
)
from cloudinit_azure.kernel.getty import (  # noqa: F401
    GETTY_TEMPLATES,
    GETTY_WANTS,
    GettyOutcome,
    console_tty,
    enable_serial_getty,
)
from cloudinit_azure.kernel.grub import (  # noqa: F401
    NUMA_FIXED_IN,
    Which,
    grub_commands,
    kernel_version,
    needs_numa_off,
    regenerate_grub,
    which_in,
)
from cloudinit_azure.kernel.scsi import (  # noqa: F401
    UDEV_RULE,
    ScsiOutcome,
    hyperv_disks,
    install_udev_rule,
    is_hyperv_disk,
    root_disks,
    set_scsi_timeouts,
    sys_dir,
    udev_rule,
)
from cloudinit_azure.runner import Runner

LOG = logging.getLogger(__name__)



def _default(part: str, key: str = "enabled") -> Any:
    """A default of ``schemas/azure_kernel.json``: the only place one is written."""
    node = settings.schema("azure_kernel")["properties"][part]
    return node["default"] if "default" in node else node["properties"][key]["default"]


DEFAULT_CONSOLE_ARGS = _default("serial_console", "args")


@dataclass(frozen=True)
class KernelConfig:
    """The ``azure_kernel:`` settings, after :func:`settings.load` filled defaults."""

    numa: bool = _default("numa")
    entropy: bool = _default("entropy")
    scsi_timeout: bool = _default("scsi_timeout")
    scsi_seconds: int = _default("scsi_timeout", "seconds")
    serial_console: bool = _default("serial_console")
    console_args: tuple[str, ...] = tuple(DEFAULT_CONSOLE_ARGS.split())
    regenerate_grub: bool = _default("serial_console", "regenerate_grub")
    getty: bool = _default("serial_console", "getty")
    sysfs: str = _default("sysfs")

    @classmethod
    def from_settings(cls, cfg: Mapping[str, Any]) -> KernelConfig:
        """From :func:`settings.load`'s result; a part it lacks keeps the schema default."""
        d = cls()
        scsi = cfg.get("scsi_timeout", {})
        console = cfg.get("serial_console", {})
        return cls(
            numa=cfg.get("numa", {}).get("enabled", d.numa),
            entropy=cfg.get("entropy", {}).get("enabled", d.entropy),
            scsi_timeout=scsi.get("enabled", d.scsi_timeout),
            scsi_seconds=int(scsi.get("seconds", d.scsi_seconds)),
            serial_console=console.get("enabled", d.serial_console),
            console_args=tuple(str(console.get("args", DEFAULT_CONSOLE_ARGS)).split()),
            regenerate_grub=console.get("regenerate_grub", d.regenerate_grub),
            getty=console.get("getty", d.getty),
            sysfs=str(cfg.get("sysfs", d.sysfs)),
        )


@dataclass(frozen=True)
class KernelOutcome:
    entropy: Optional[EntropyOutcome] = None
    scsi: Optional[ScsiOutcome] = None
    numa_off_wanted: bool = False
    cmdline: Optional[cmdline.CmdlineOutcome] = None
    grub_regenerated: bool = False
    getty: Optional[GettyOutcome] = None


def apply(root: str, config: KernelConfig, *, release: str, runner: Runner,
          ioctl: Ioctl, which: Optional[Which] = None,
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
