"""The simulated VM's power: end its processes, and obey the platform's power requests.

A reboot between boots, and a pool VM that the platform powers off, on or
restarts (preprovisioning), both end every process of the VM, never the
sandbox's own nor the platform's. The platform writes its requests to a file
(one per line: ``off``, ``on``, ``restart``); :class:`PowerWatch`, in the
sandbox, carries them out.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional


class PowerWatch:
    """The sandbox's end of the power requests the platform writes (one per line).

    ``off`` and ``restart`` end the VM's processes at once (the stage being
    run returns); ``on`` lets the next boot start, with the customer's DVD
    when the plan has one.
    """

    def __init__(self, cfg: dict[str, Any], root: Path, kill: Callable[[], None]) -> None:
        self.path = Path(cfg["power_file"])
        self.dvd = cfg.get("dvd")
        self.root = root
        self.kill = kill
        self.cut = threading.Event()
        self.on = threading.Event()
        self.off = False
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    @classmethod
    def for_plan(cls, plan: dict[str, Any], root: Path,
                 kill: Callable[[], None]) -> Optional[PowerWatch]:
        """A started watch for a pool VM's plan; None for any other VM."""
        if not plan.get("pps"):
            return None
        watch = cls(plan["pps"], root, kill)
        watch.thread.start()
        return watch

    def stop(self) -> dict[str, Any]:
        """Stop watching; what the platform asked for, for raw.json."""
        self._stop.set()
        return {"power_requests": self.requests}

    def _watch(self) -> None:
        seen = 0
        while not self._stop.is_set():
            lines = self.path.read_text().split() if self.path.exists() else []
            for what in lines[seen:]:
                self.requests.append({"wall": time.time(), "what": what})
                if what in ("off", "restart"):
                    self.off = what == "off"
                    self.cut.set()
                    self.kill()
                elif what == "on":
                    self.on.set()
            # An append-only log: a read that races a rewrite (an empty or
            # shorter file) must not make old requests count again.
            seen = max(seen, len(lines))
            time.sleep(0.01)

    def stage_was_cut(self, timeout: float = 600) -> bool:
        """After a stage: True if a power request ended it (then wait for power-on)."""
        if not self.cut.is_set():
            return False
        self.cut.clear()
        if self.off:
            if not self.on.wait(timeout):
                raise RuntimeError("the platform never powered the VM on again")
            if self.dvd:
                self._swap_dvd()
        return True

    def _swap_dvd(self) -> None:
        node = self.root / "dev/sr0"
        node.unlink(missing_ok=True)
        os.mknod(node, 0o660 | 0o060000, os.makedev(self.dvd["major"], self.dvd["minor"]))
