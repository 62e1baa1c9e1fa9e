"""Instance identity: the DMI system-uuid, stable across firmware quirks.

Hyper-V Gen1 and Gen2 firmware (and old versus new kernels reading SMBIOS)
present the same VM's UUID with the first three fields in different byte
orders, and in different letter case. cloud-init treats a new instance id as
a new VM (re-runs per-instance modules, regenerates host keys), so an id that
differs from the previous one only in those ways keeps the previous id.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Optional, Union

from cloudinit_azure.runner import Runner

LOG = logging.getLogger(__name__)

_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
# SMBIOS: all zeros = "not set", all ones = "not present"; neither identifies a VM.
_UNSET = {"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"}


def is_uuid(text: str) -> bool:
    """True for the canonical 8-4-4-4-12 hex form (any case)."""
    return bool(_UUID_RE.fullmatch(text))


def byte_swap(uuid: str) -> str:
    """Reverse the bytes of the first three fields (Gen1 <-> Gen2 order), lower case.

    ``aabbccdd-eeff-0011-2233-445566778899`` <-> ``ddccbbaa-ffee-1100-2233-445566778899``.
    Raises ValueError for anything that is not a UUID.
    """
    if not is_uuid(uuid):
        raise ValueError(f"not a UUID: {uuid!r}")
    fields = uuid.lower().split("-")
    for i in range(3):
        fields[i] = bytes.fromhex(fields[i])[::-1].hex()
    return "-".join(fields)


def instance_id(system_uuid: str, previous: Optional[str]) -> str:
    """The instance id for this boot: the lower-cased system-uuid, or ``previous``.

    ``previous`` is kept verbatim when it names the same VM (same UUID up to
    case or byte order), since changing the id would look like a new VM.
    Raises ValueError when ``system_uuid`` is not a UUID.
    """
    if not is_uuid(system_uuid):
        raise ValueError(f"not a UUID: {system_uuid!r}")
    new = system_uuid.lower()
    if previous and is_uuid(previous):
        if previous.lower() == new or byte_swap(previous) == new:
            return previous
    return new


def _valid(text: Optional[str]) -> Optional[str]:
    if text is None:
        return None
    text = text.strip().lower()
    if not is_uuid(text) or text in _UNSET:
        return None
    return text


def read_system_uuid(
    sys_root: Union[str, os.PathLike[str]] = "/sys", runner: Optional[Runner] = None
) -> Optional[str]:
    """The DMI system-uuid (lower case) or None when absent or not a real UUID.

    Reads ``<sys_root>/class/dmi/id/product_uuid``; when that cannot be read
    (no DMI in sysfs, or not root) and a runner is given, asks
    ``dmidecode -s system-uuid``.
    """
    path = Path(sys_root, "class", "dmi", "id", "product_uuid")
    try:
        return _valid(path.read_text(encoding="ascii", errors="replace"))
    except OSError as exc:
        LOG.debug("cannot read %s: %s", path, exc)
    if runner is None:
        return None
    try:
        result = runner(["dmidecode", "-s", "system-uuid"], check=False)
    except Exception as exc:  # a missing tool means "unknown", not a crash
        LOG.debug("dmidecode failed: %s", exc)
        return None
    if result.returncode != 0:
        LOG.debug("dmidecode exited %s: %s", result.returncode, result.stderr.strip())
        return None
    # dmidecode may print "# ..." comment lines before the value.
    lines = [ln for ln in result.stdout.splitlines()
             if ln.strip() and not ln.startswith("#")]
    return _valid(lines[-1]) if lines else None
