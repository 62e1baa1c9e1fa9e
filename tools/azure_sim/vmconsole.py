"""The VM's two serial ports, read on the host as QEMU writes them.

Port 1 is the console: every line is timestamped on arrival and classified
into boot stages (the stage only moves forward). Port 2 carries the guest's
reports (``vmreport.py``): base64 JSON between marker lines, one block per
boot, the guest's clock in the end line.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Optional

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BEGIN = "AZURE-SIM-REPORT-BEGIN"
END = "AZURE-SIM-REPORT-END"

# What the console shows, in boot order: (stage name, text that marks it).
# systemd cuts unit names to the console width, so cloud-init's own lines
# ("running 'init-local'") mark its stages. The stage only moves forward.
STAGE_MARKERS = [
    ("firmware", "SeaBIOS"),
    ("kernel", "Linux version"),
    ("initramfs", "Run /init"),
    ("systemd", "Welcome to"),
    ("init-local", "Starting cloud-init-local"),
    ("init-local", "running 'init-local'"),
    ("init", "running 'init'"),
    ("modules-config", "running 'modules:config'"),
    ("modules-final", "running 'modules:final'"),
    ("cloud-final-done", "finished at"),
    ("report", "azure-sim"),
    ("poweroff", "reboot: Power down"),
]
STAGE_ORDER = list(dict.fromkeys(stage for stage, _ in STAGE_MARKERS))
MILESTONES = {
    "init_local_start": "running 'init-local'",
    "cloud_final_done": "finished at",
}


class Console:
    """Reads the console file as QEMU writes it; timestamps and classifies lines."""

    def __init__(self, raw: Path, log: Path) -> None:
        self.raw = raw
        self.log = open(log, "a", encoding="utf-8")
        self.pos = 0
        self.partial = b""
        self.stage = "qemu started"
        self.stages: list[dict[str, Any]] = []
        self.milestones: dict[str, float] = {}

    def switch(self, raw: Path) -> None:
        """Follow the next boot's console file (a new QEMU process)."""
        if raw != self.raw:
            self.raw, self.pos, self.partial = raw, 0, b""
            self.stage = "qemu started"

    def take_stages(self) -> list[dict[str, Any]]:
        out, self.stages = self.stages, []
        return out

    def take_milestones(self) -> dict[str, float]:
        out, self.milestones = self.milestones, {}
        return out

    def _later(self, stage: str) -> bool:
        if self.stage not in STAGE_ORDER:
            return True
        return STAGE_ORDER.index(stage) > STAGE_ORDER.index(self.stage)

    def poll(self) -> None:
        try:
            with open(self.raw, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except OSError:
            return
        if not data:
            return
        self.pos += len(data)
        now = time.time()
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw_line in lines:
            line = ANSI.sub("", raw_line.decode("utf-8", "replace").replace("\r", ""))
            self.log.write(f"[{now:.3f}] {line}\n")
            for stage, marker in STAGE_MARKERS:
                if marker in line and self._later(stage):
                    self.stage = stage
                    self.stages.append({"t": now, "stage": stage})
                    break
            for name, marker in MILESTONES.items():
                if marker in line and name not in self.milestones:
                    self.milestones[name] = now
        self.log.flush()

    def close(self) -> None:
        self.log.close()


def reports(text: str) -> list[tuple[str, float]]:
    """Every complete report block: (base64 payload, guest time of its END line)."""
    out = []
    text = text.replace("\r", "")
    for block in text.split(BEGIN)[1:]:
        if END not in block:
            break
        payload, _, rest = block.partition(END)
        stamp = rest.split("\n", 1)[0].strip()
        try:
            guest_time = float(stamp or 0)
        except ValueError:
            guest_time = 0.0
        out.append(("".join(payload.split()), guest_time))
    return out


def read_report(raw: Path) -> Optional[tuple[str, float]]:
    """The first complete report on the port, once there is one."""
    try:
        found = reports(raw.read_text(errors="replace"))
    except OSError:
        return None
    return found[0] if found else None
