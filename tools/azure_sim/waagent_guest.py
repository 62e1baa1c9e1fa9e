"""azure-sim (test only, runs INSIDE the VM): what the Azure Linux Agent did (``waagent: true``).

Called by ``vmreport.py`` before it reports. waagent starts after
multi-user.target, beside cloud-final, so the report first waits (bounded) until
the agent's log shows where it settles: its extension loop (the first goal state
processed, then a few more goal-state periods so that status uploads happen), or
its cloud-init handler still waiting for ``ovf-env.xml`` (after a failure). Then
it reads the agent's directory and log. Debian's python3 standard library only.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional

LOG = "var/log/waagent.log"
LIB = "var/lib/waagent"
# waagent 2.7.3: "ProcessExtensionsInGoalState completed"; 2.12: "ProcessExtensionsGoalState"
LOOP = re.compile(r"ProcessExtensions(In)?GoalState completed")
WAITING = "Waiting for cloud-init to copy ovf-env.xml"
SKIPPED = "Provisioning already completed, skipping"
LEVEL = re.compile(r"^\S+ (ERROR|WARNING) (.*)$")
CUSTOM_DATA_RUNS = "var/tmp/custom-data-runs"


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def settled(log: str) -> Optional[str]:
    """Where the agent is, from its log: 'loop', 'waiting' (for ovf-env.xml) or None."""
    if LOOP.search(log):
        return "loop"
    if WAITING in log:
        return "waiting"
    return None


def wait(root: Path, limit_s: float, settle_s: float,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> tuple[Optional[str], float]:
    """Poll the agent's log until it settles (then ``settle_s`` more in the loop)."""
    start = clock()
    where = None
    while clock() - start < limit_s:
        where = settled(_read(root / LOG) or "")
        if where:
            break
        sleep(1.0)
    if where == "loop":
        sleep(settle_s)
    return where, round(clock() - start, 1)


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _file(path: Path) -> Optional[dict[str, Any]]:
    if not path.exists():
        return None
    return {"mode": oct(stat.S_IMODE(path.stat().st_mode)), "text": _read(path)}


def observe(plan: dict[str, Any], root: Path = Path("/")) -> Optional[dict[str, Any]]:
    """The agent's state after the boot, or None when the scenario has no agent."""
    if not plan.get("waagent"):
        return None
    where, waited = wait(root, float(plan.get("waagent_wait_s", 240)),
                         float(plan.get("waagent_settle_s", 15)))
    log = _read(root / LOG) or ""
    lines = log.splitlines()
    levels = [m.groups() for m in map(LEVEL.match, lines) if m]
    lib = root / LIB
    runs = _read(root / CUSTOM_DATA_RUNS)
    copy = lib / "ovf-env.xml"
    return {
        "version": _run("dpkg-query", "-W", "-f=${Version}", "waagent"),
        "service": _run("systemctl", "show", "-p", "ActiveState", "-p", "SubState",
                        "-p", "ConditionResult", "walinuxagent.service").split("\n"),
        "settled": where, "waited_s": waited,
        "provisioning_skipped": SKIPPED in log,
        "provisioned": _file(lib / "provisioned"),
        "disable_agent": (lib / "disable_agent").exists(),
        "ovf_copy": None if not copy.exists() else {
            "mode": oct(stat.S_IMODE(copy.stat().st_mode)),
            "dir_mode": oct(stat.S_IMODE(lib.stat().st_mode)),
            "redacted": "UserPassword" not in (_read(copy) or "")
            or "REDACTED" in (_read(copy) or "")},
        "product_uuid": _read(root / "sys/class/dmi/id/product_uuid"),
        "errors": [text for level, text in levels if level == "ERROR"][:40],
        "warnings": [text for level, text in levels if level == "WARNING"][:40],
        "log_tail": lines[-60:],
        "custom_data_runs": len(runs.splitlines()) if runs is not None else None,
        "lib_files": sorted(os.listdir(lib)) if lib.is_dir() else [],
    }
