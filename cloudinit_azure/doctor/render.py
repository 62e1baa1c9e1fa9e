"""The doctor's report as text for a person or JSON for a script (pure)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Sequence

from cloudinit_azure.doctor.model import ERROR, OK, STATUSES, WARNING, Check, exit_code

AREAS = (("azure", "Azure's requirements for Linux images"),
         ("plugin", "what the plug-in needs"),
         ("config", "cloud-init configuration"))
MARK = {OK: "ok", WARNING: "WARNING", ERROR: "ERROR"}


def as_dict(root: str, os_name: str, checks: Sequence[Check]) -> dict[str, Any]:
    counts = Counter(c.status for c in checks)
    return {"root": root, "os": os_name, "exit": exit_code(checks),
            "summary": {s: counts.get(s, 0) for s in STATUSES},
            "checks": [c.as_dict() for c in checks]}


def as_json(root: str, os_name: str, checks: Sequence[Check]) -> str:
    return json.dumps(as_dict(root, os_name, checks), indent=2) + "\n"


def as_text(root: str, os_name: str, checks: Sequence[Check]) -> str:
    lines = [f"cloudinit-azure doctor: {root} ({os_name})"]
    for area, heading in AREAS:
        rows = [c for c in checks if c.area == area]
        if not rows:
            continue
        lines.append(f"{heading}:")
        for c in rows:
            lines.append(f"  {MARK[c.status]:<7} {c.title}: {c.why}")
            if c.status != OK:
                lines.append(f"  {'':<7} fix: {c.fix}")
    counts = Counter(c.status for c in checks)
    verdict = {0: "the image meets every requirement", 1: "the image should provision; "
               "read the warnings", 2: "the image will not provision as it is"}
    code = exit_code(checks)
    lines.append(f"{counts.get(OK, 0)} ok, {counts.get(WARNING, 0)} warnings, "
                 f"{counts.get(ERROR, 0)} errors: {verdict[code]} (exit {code})")
    return "\n".join(lines) + "\n"
