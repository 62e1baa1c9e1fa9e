"""Typed provisioning errors and the encoded provisioning report.

Every failure the plug-in can meet while provisioning is a
:class:`ProvisioningError` with a short ``reason`` and ``supporting_data``.
One function turns an error (or success) into the ``|``-delimited report that
goes to the wireserver health Description and to Hyper-V KVP, so the platform
and the user see the same words.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from cloudinit_azure import AGENT_NAME, __version__

DOCUMENTATION_URL = "https://aka.ms/linuxprovisioningerror"
# The wireserver keeps the Description short; Azure reads 1,024 chars of KVP.
MAX_DESCRIPTION = 512


class ProvisioningError(Exception):
    """A failure that ends provisioning and is reported to the platform."""

    default_reason = "provisioning error"

    def __init__(
        self, reason: Optional[str] = None, **supporting_data: Any
    ) -> None:
        self.reason = reason or self.default_reason
        self.supporting_data: dict[str, Any] = dict(supporting_data)
        super().__init__(self.reason)

    def __str__(self) -> str:
        if not self.supporting_data:
            return self.reason
        details = ", ".join(f"{k}={v}" for k, v in self.supporting_data.items())
        return f"{self.reason} ({details})"


class OvfError(ProvisioningError):
    """ovf-env.xml is missing, malformed or inconsistent."""

    default_reason = "error parsing ovf-env.xml"


class MediaError(ProvisioningError):
    """The provisioning media could not be found or read."""

    default_reason = "error reading provisioning media"


class ImdsError(ProvisioningError):
    """IMDS did not answer usefully before the deadline."""

    default_reason = "error communicating with IMDS"


class ImdsParseError(ImdsError):
    default_reason = "error parsing IMDS metadata"


class WireserverError(ProvisioningError):
    """The wireserver (goal state, health, certificates) failed."""

    default_reason = "error communicating with wireserver"


class GoalStateError(WireserverError):
    default_reason = "error parsing goal state"


class CertificateError(WireserverError):
    default_reason = "error obtaining certificates"


class DhcpError(ProvisioningError):
    default_reason = "error obtaining DHCP lease"


class UserConfigError(ProvisioningError):
    """The requested user, password, keys or host name cannot be applied."""

    default_reason = "invalid user configuration"


class ConfigError(ProvisioningError):
    """An image author's configuration does not validate.

    ``key`` (the dotted path of the offending key) and ``problem`` travel as
    supporting data; the text names the key first, for the log reader.
    """

    default_reason = "invalid cloudinit-azure configuration"

    def __str__(self) -> str:
        key = self.supporting_data.get("key")
        if key is None:
            return super().__str__()
        return f"invalid config at {key}: {self.supporting_data.get('problem', '')}"


def _timestamp(now: Optional[datetime] = None) -> str:
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )


def _quote(field_text: str) -> str:
    """CSV-quote one field with ``'`` when it holds the delimiter or quote."""
    if "|" not in field_text and "'" not in field_text:
        return field_text
    buf = io.StringIO()
    csv.writer(buf, delimiter="|", quotechar="'", quoting=csv.QUOTE_MINIMAL,
               lineterminator="").writerow([field_text])
    return buf.getvalue()


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

    def encode(self, max_len: Optional[int] = None) -> str:
        """Render the ``|``-delimited report, optionally trimmed to ``max_len``.

        When trimming, supporting data is dropped from the end first so the
        result, reason, agent and documentation URL always survive.
        """
        head = [f"result={self.result}"]
        if self.reason:
            head.append(f"reason={self.reason}")
        head.append(f"agent={AGENT_NAME}/{__version__}")
        data = [f"{k}={v}" for k, v in self.supporting_data.items()]
        tail = []
        if self.vm_id:
            tail.append(f"vm_id={self.vm_id}")
        tail.append(f"timestamp={self.timestamp or _timestamp()}")
        tail.append(f"documentation_url={DOCUMENTATION_URL}")

        def render(items: list[str]) -> str:
            return "|".join(_quote(i) for i in items)

        text = render(head + data + tail)
        while max_len is not None and len(text) > max_len and data:
            data.pop()
            text = render(head + data + tail)
        if max_len is not None and len(text) > max_len:
            text = text[:max_len]
        return text


def decode_report(text: str) -> dict[str, str]:
    """Parse an encoded report back into a dict (used by tests and the simulator)."""
    rows = list(csv.reader([text], delimiter="|", quotechar="'"))
    out: dict[str, str] = {}
    for item in rows[0] if rows else []:
        key, _, value = item.partition("=")
        out[key] = value
    return out
