"""The optional host name watcher (a systemd path unit on /etc/hostname) and
the one idempotent file write the network modules share.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

LOG = logging.getLogger(__name__)


def write_if_changed(path: Path, text: str, mode: Optional[int] = None) -> bool:
    """Idempotent atomic write: True when the file was created or changed.

    An existing file keeps its mode; a new one gets ``mode`` (default 0644).
    """
    path = Path(path)
    if _read_raw(path) == text:
        return False
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


def _read_raw(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


WATCH_UNIT = "azure-hostname-publish"


def watcher_units(python: str) -> dict[str, str]:
    """The systemd path unit on /etc/hostname and the oneshot it starts."""
    return {
        f"{WATCH_UNIT}.path": (
            "[Unit]\nDescription=Watch /etc/hostname to publish it to Azure DNS\n\n"
            "[Path]\nPathChanged=/etc/hostname\n"
            f"Unit={WATCH_UNIT}.service\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
        f"{WATCH_UNIT}.service": (
            "[Unit]\nDescription=Publish the host name to Azure DNS\n"
            "After=network-online.target\n\n"
            "[Service]\nType=oneshot\n"
            f"ExecStart={python} -m cloudinit_azure.network publish\n"
        ),
    }


def install_watcher(root: Path, python: Optional[str] = None) -> bool:
    """Write and enable (by link, no systemctl) the watcher units; True if changed."""
    unit_dir = Path(root) / "etc/systemd/system"
    changed = False
    for name, text in watcher_units(python or sys.executable or "/usr/bin/python3").items():
        changed |= write_if_changed(unit_dir / name, text)
    wants = unit_dir / "multi-user.target.wants" / f"{WATCH_UNIT}.path"
    if not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to(f"/etc/systemd/system/{WATCH_UNIT}.path")
        changed = True
    return changed
