"""fstab edits (pure): our one line per mount point or swap file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Optional

FSTAB_COMMENT = "# cloudinit-azure: resource disk (temporary storage, lost on redeploy)"
SWAP_COMMENT = "# cloudinit-azure: swap file on the resource disk"


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
