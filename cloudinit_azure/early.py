"""Can init-local create the account now? A pure decision over fstab and the mount table.

init-local runs before ``local-fs.target`` has necessarily mounted every
file system in fstab. A user created while ``/home`` (or the user's home) is
not mounted yet would land on the root file system and be hidden by the
mount a moment later: the account would exist without its keys. In that case
the flow leaves the account to cloud-init's own modules in the init stage and
Ready to ``azure_ready`` (the fallback path).
"""

from __future__ import annotations

import posixpath
from typing import Optional

_NEVER_AT_BOOT = {"noauto"}
_NOT_A_PLACE = {"swap", "none"}


def _unescape(field: str) -> str:
    """fstab and mountinfo write blanks and backslashes as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def fstab_mountpoints(fstab: str) -> list[str]:
    """Mount points that fstab mounts at boot (no swap, no ``noauto``)."""
    out = []
    for line in fstab.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        target = _unescape(fields[1])
        options = set(fields[3].split(",")) if len(fields) > 3 else set()
        if target in _NOT_A_PLACE or not target.startswith("/") or options & _NEVER_AT_BOOT:
            continue
        out.append(posixpath.normpath(target))
    return out


def mounted(mountinfo: str) -> set[str]:
    """Mount points of ``/proc/self/mountinfo`` (field 5)."""
    out = set()
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            out.add(posixpath.normpath(_unescape(fields[4])))
    return out


def account_blocker(home: str, fstab: str, mountinfo: str) -> Optional[str]:
    """Why the account cannot be created now, or None when it can.

    Blocked when a file system that fstab mounts at ``home`` or above it
    (other than ``/``) is not mounted yet.
    """
    home = posixpath.normpath(home)
    present = mounted(mountinfo)
    for target in sorted(fstab_mountpoints(fstab), key=len, reverse=True):
        if target == "/" or target in present:
            continue
        if home == target or home.startswith(target.rstrip("/") + "/"):
            return f"{target} (in fstab) is not mounted yet at init-local; {home} lies on it"
    return None
