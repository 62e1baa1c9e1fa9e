"""The one seam to the machine: what the core may touch, passed in by the adapters.

Core functions take a root path, a :class:`~cloudinit_azure.runner.Runner`, a
clock or a kill function as parameters and never default to the real machine;
files are replaced through the one atomic writer (:mod:`cloudinit_azure.atomic`).
The adapters (``cloudinit_azure/sources``, ``cloudinit_azure/modules``, the CLIs)
build one :class:`Host` with :func:`this_machine` and hand its parts in; tests
build one over a temporary root with the shared fake runner.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from cloudinit_azure.runner import Runner, run

# The plug-in's one persistent state directory (markers, staged key pairs, the
# resource disk's record, moved-away udev rules), absolute on the target system.
STATE_DIR = "/var/lib/cloudinit-azure"
# Its per-boot counterpart (this boot's attempts, ephemeral DHCP files).
RUN_DIR = "/run/cloudinit-azure"


@dataclass(frozen=True)
class Host:
    """Root path, program runner, clock and kill of one machine."""

    root: Path
    runner: Runner
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    kill: Callable[[int, int], None]

    def path(self, system_path: str) -> Path:
        """An absolute path of the target system, under :attr:`root`."""
        return self.root / system_path.lstrip("/")

    @property
    def state_dir(self) -> Path:
        return self.path(STATE_DIR)


def read_text(path: Union[str, os.PathLike[str]]) -> Optional[str]:
    """A small file's text (sysfs, /proc, config), or None when it cannot be read.

    Undecodable bytes are replaced: sysfs and image files are not ours to trust.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def this_machine(**overrides: Any) -> Host:
    """The real machine: root ``/``, :func:`~cloudinit_azure.runner.run`, ``os.kill``.

    Only adapters call this; ``overrides`` replaces single parts.
    """
    parts: dict[str, Any] = dict(root=Path("/"), runner=run, clock=time.monotonic,
                                 sleep=time.sleep, kill=os.kill)
    parts.update(overrides)
    return Host(**parts)
