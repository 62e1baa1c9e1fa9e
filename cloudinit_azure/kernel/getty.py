"""The serial getty, enabled by link as ``systemctl enable`` would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

LOG = logging.getLogger(__name__)



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
