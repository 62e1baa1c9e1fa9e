"""NUMA on old kernels, and regenerating grub.cfg after a command-line edit.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Sequence
from typing import Callable, Optional

from cloudinit_azure.kernel import cmdline
from cloudinit_azure.kernel.scsi import (
    _read_attr,
)
from cloudinit_azure.runner import CommandError, Runner

LOG = logging.getLogger(__name__)

Which = Callable[[str], Optional[str]]


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
