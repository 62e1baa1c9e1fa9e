"""Fault scripts: per-endpoint responses consumed in order, then normal service."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Union

Status = Union[int, str]  # an HTTP status, "reset" or "timeout"


@dataclass(frozen=True)
class Fault:
    status: Status
    delay_s: float = 0.0
    retry_after: Optional[int] = None


class FaultScript:
    """Thread-safe queue of faults per endpoint, consumed one request at a time."""

    def __init__(self, faults: Iterable[Mapping[str, Any]] = ()) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, list[Fault]] = {}
        for item in faults:
            fault = Fault(item["status"], float(item.get("delay_s", 0)),
                          item.get("retry_after"))
            self._queues.setdefault(item["endpoint"], []).extend(
                [fault] * int(item.get("count", 1)))

    def next(self, endpoint: str) -> Optional[Fault]:
        """The fault for this request to ``endpoint``, or None for normal service."""
        with self._lock:
            queue = self._queues.get(endpoint)
            if queue:
                return queue.pop(0)
            return None

    def remaining(self, endpoint: str) -> int:
        with self._lock:
            return len(self._queues.get(endpoint, []))
