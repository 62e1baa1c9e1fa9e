"""The encoded provisioning report: one ``|``-delimited line for every channel.

One function turns an error (the report package's hierarchy) or a success into the
report that goes to the wireserver health Description and to Hyper-V KVP, so
the platform and the user see the same words. Its format and limits are fixed
here; what the reasons are is the error classes'.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Mapping, Optional

from cloudinit_azure import AGENT_NAME, __version__

if TYPE_CHECKING:
    from cloudinit_azure.report.base import ProvisioningError

DOCUMENTATION_URL = "https://aka.ms/linuxprovisioningerror"
# The wireserver keeps the Description short; Azure reads 1,024 chars of KVP.
MAX_DESCRIPTION = 512
MAX_REPORT = 1024
# No one value may crowd the others (and the documentation URL) out of a report.
MAX_VALUE = 200
MAX_VM_ID = 64
# The report's own keys: no supporting data may use them.
FIELDS = frozenset({"result", "reason", "agent", "vm_id", "timestamp", "documentation_url"})
# C0 controls but TAB, LF, CR (those three are quoted), DEL and C1 controls.
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def printable(value: Any, limit: Optional[int] = None) -> str:
    """``value`` as text any report channel can carry.

    Platform documents can hold lone surrogates (``"x\\ud800y"`` is valid
    JSON) and control characters: UTF-8 cannot encode the first, KVP's NUL
    padding and XML lose the second. Both become backslash escapes, so a
    report can always be encoded and sent. ``limit`` clips the result.
    """
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a broken __str__ must not cost the report
        text = f"<{type(value).__name__}>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    text = _CONTROLS.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
    if limit is not None and len(text) > limit:
        text = text[:max(limit - 3, 0)] + "..."
    return text


def _timestamp(now: Optional[datetime] = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )


def _quote(field_text: str) -> str:
    """CSV-quote one field with ``'`` when it holds the delimiter, quote or a line break."""
    if not any(c in field_text for c in "|'\r\n"):
        return field_text
    # csv's own minimal quoting ignores line breaks once lineterminator is "".
    return "'" + field_text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Report:
    """One provisioning outcome, ready to encode."""

    result: str  # "success" or "error"
    reason: Optional[str] = None
    supporting_data: Mapping[str, Any] = field(default_factory=dict)
    vm_id: Optional[str] = None
    timestamp: Optional[str] = None

    @classmethod
    def from_error(
        cls, error: ProvisioningError, vm_id: Optional[str] = None,
        now: Optional[datetime] = None,
    ) -> Report:
        return cls("error", error.reason, dict(error.supporting_data), vm_id,
                   _timestamp(now))

    @classmethod
    def success(cls, vm_id: Optional[str] = None,
                now: Optional[datetime] = None, **data: Any) -> Report:
        return cls("success", None, data, vm_id, _timestamp(now))

    def encode(self, max_len: Optional[int] = MAX_REPORT) -> str:
        """Render the ``|``-delimited report, trimmed to ``max_len`` (None: whole).

        The default is what Azure reads of a KVP value, so a report sent there
        never loses its end.

        Every value is made :func:`printable` and clipped, so the text always
        encodes. When trimming, supporting data is dropped from the end first;
        the result, reason, agent, vm_id, timestamp and documentation URL
        always survive (the documentation URL whole, last).
        """
        head = [f"result={printable(self.result, MAX_VALUE)}"]
        if self.reason:
            head.append(f"reason={printable(self.reason, MAX_VALUE)}")
        head.append(f"agent={AGENT_NAME}/{__version__}")
        data = [f"{printable(k, MAX_VALUE)}={printable(v, MAX_VALUE)}"
                for k, v in self.supporting_data.items()]
        tail = []
        if self.vm_id:
            tail.append(f"vm_id={printable(self.vm_id, MAX_VM_ID)}")
        tail.append(f"timestamp={printable(self.timestamp or _timestamp(), MAX_VALUE)}")
        url = f"documentation_url={DOCUMENTATION_URL}"

        def render(items: list[str]) -> str:
            return "|".join(_quote(i) for i in items + [url])

        text = render(head + data + tail)
        while max_len is not None and len(text) > max_len and data:
            data.pop()
            text = render(head + data + tail)
        if max_len is not None and len(text) > max_len:
            # Only a max_len below ~300 gets here: keep the URL, cut before it.
            text = text[:max(max_len - len(url) - 1, 0)] + "|" + url
        return text


def decode_report(text: str) -> dict[str, str]:
    """Parse an encoded report back into a dict (used by tests and the simulator)."""
    rows = list(csv.reader([text], delimiter="|", quotechar="'"))
    out: dict[str, str] = {}
    for item in rows[0] if rows else []:
        key, _, value = item.partition("=")
        out[key] = value
    return out
