"""Typed provisioning errors and the encoded provisioning report.

Every failure the plug-in can meet while provisioning is a
:class:`ProvisioningError` with a short ``reason`` and ``supporting_data``.
One function turns an error (or success) into the ``|``-delimited report that
goes to the wireserver health Description and to Hyper-V KVP, so the platform
and the user see the same words.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Optional

from cloudinit_azure import AGENT_NAME, __version__

DOCUMENTATION_URL = "https://aka.ms/linuxprovisioningerror"
# The wireserver keeps the Description short; Azure reads 1,024 chars of KVP.
MAX_DESCRIPTION = 512
MAX_REPORT = 1024
# No one value may crowd the others (and the documentation URL) out of a report.
MAX_VALUE = 200
MAX_VM_ID = 64
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


class ProvisioningError(Exception):
    """A failure that ends provisioning and is reported to the platform."""

    default_reason = "provisioning error"
    what_to_do = (
        "Read the reason and supporting data, then cloud-init's log on the VM "
        "(/var/log/cloud-init.log, or the serial console in boot diagnostics): the "
        "step that failed is logged just before the report."
    )

    def __init__(
        self, reason: Optional[str] = None, **supporting_data: Any
    ) -> None:
        self.reason = reason or self.default_reason
        self.supporting_data: dict[str, Any] = dict(supporting_data)
        super().__init__(self.reason)

    def __str__(self) -> str:
        if not self.supporting_data:
            return printable(self.reason)
        details = ", ".join(f"{printable(k)}={printable(v, MAX_VALUE)}"
                            for k, v in self.supporting_data.items())
        return f"{printable(self.reason)} ({details})"


class OvfError(ProvisioningError):
    """ovf-env.xml is missing, malformed or inconsistent."""

    default_reason = "error parsing ovf-env.xml"
    what_to_do = (
        "The platform writes ovf-env.xml from the VM create request: check the admin "
        "user name, host name, password and custom data you passed (custom data is "
        "base64 in the REST API). With valid inputs, deploy again; if it persists, open "
        "a support case with the report."
    )


class MediaError(ProvisioningError):
    """The provisioning media could not be found or read."""

    default_reason = "error reading provisioning media"
    what_to_do = (
        "The image could not find or read the provisioning DVD: keep the CD-ROM driver "
        "(sr_mod) and udev in the image, keep python3-pycdlib installed (it reads the "
        "DVD without the udf driver), and make sure nothing else (another agent, an "
        "automounter) ejects or holds it. 'cloudinit-azure doctor' checks the image."
    )


class ImdsError(ProvisioningError):
    """IMDS did not answer usefully before the deadline."""

    default_reason = "error communicating with IMDS"
    what_to_do = (
        "IMDS (169.254.169.254) did not answer in time: the image must reach it from "
        "init-local, so keep a DHCP client in the image ('cloudinit-azure doctor', check "
        "dhcp), no firewall rule or proxy for 169.254.169.254, no static network config "
        "that replaces DHCP. If the image is fine, redeploy: it may be the platform."
    )


class ImdsParseError(ImdsError):
    """IMDS answered with a body that is not the expected JSON."""

    default_reason = "error parsing IMDS metadata"
    what_to_do = (
        "IMDS answered, but not with the metadata expected: look for a proxy or "
        "transparent filter in the image that intercepts 169.254.169.254. Otherwise it "
        "is the platform: redeploy, and open a support case if it persists."
    )


class WireserverError(ProvisioningError):
    """The wireserver (goal state, health, certificates) failed."""

    default_reason = "error communicating with wireserver"
    what_to_do = (
        "The wireserver (168.63.129.16, or DHCP option 245's address) could not be "
        "reached or kept failing: the image must not block 168.63.129.16 port 80 "
        "(firewall rules baked into the image, nftables or iptables). If the image is "
        "fine, redeploy: the VM may have landed on an unhealthy host."
    )


class GoalStateError(WireserverError):
    """The wireserver's goal state is not what the protocol defines."""

    default_reason = "error parsing goal state"
    what_to_do = (
        "The goal state XML lacked a required element (incarnation, container id, "
        "instance id): a platform problem or something in the image answering for "
        "168.63.129.16. Redeploy; open a support case if it persists."
    )


class CertificateError(WireserverError):
    """The certificates behind key fingerprints could not be fetched or decrypted."""

    default_reason = "error obtaining certificates"
    what_to_do = (
        "SSH keys given as certificate thumbprints could not be fetched or decrypted: "
        "the image needs openssl 1.0+ ('cloudinit-azure doctor', check openssl). Or "
        "pass the keys as OpenSSH public key data instead of certificates."
    )


class DhcpError(ProvisioningError):
    """No DHCP lease was obtained on the primary NIC."""

    default_reason = "error obtaining DHCP lease"
    what_to_do = (
        "No DHCP lease on the primary NIC: keep a supported DHCP client (dhclient, "
        "dhcpcd or udhcpc) and the NIC driver (hv_netvsc, or mlx drivers with "
        "accelerated networking) in the image, and no firewall that drops DHCP."
    )


class UserConfigError(ProvisioningError):
    """The requested user, password, keys or host name cannot be applied."""

    default_reason = "invalid user configuration"
    what_to_do = (
        "Fix the VM create request: the admin user name must be valid and not reserved "
        "(root, admin, daemon ...), the password short enough and without control "
        "characters, every SSH key an OpenSSH public key, the host name a valid name. "
        "The reason names which one."
    )


class ConfigError(ProvisioningError):
    """An image author's configuration does not validate.

    ``key`` (the dotted path of the offending key) and ``problem`` travel as
    supporting data; the text names the key first, for the log reader.
    """

    default_reason = "invalid cloudinit-azure configuration"
    what_to_do = (
        "The image's own configuration (datasource: Azure:, azure_* keys in "
        "/etc/cloud/cloud.cfg.d) does not validate: the reason names the key; "
        "'cloudinit-azure doctor' shows it before you upload the image, and "
        "docs/configuration.md lists every key."
    )

    def __str__(self) -> str:
        key = self.supporting_data.get("key")
        if key is None:
            return super().__str__()
        problem = self.supporting_data.get("problem", "")
        return f"invalid config at {printable(key)}: {printable(problem)}"


class ApplyError(ProvisioningError):
    """A step that changes the machine in init-local failed (creating the user, sshd's
    password setting, the OVF key pairs, host keys, host name); the reason names the
    step (``error applying provisioning: user``) and the user is removed again."""

    default_reason = "error applying provisioning"
    what_to_do = (
        "Read the supporting data (step, exception, detail) and the cloud-init log: "
        "the image's useradd, sudoers, sshd_config or ssh-keygen failed. Check the "
        "image with 'cloudinit-azure doctor'; a read-only or full root file system "
        "and a missing ssh-keygen are the usual causes."
    )

    def __init__(self, step: str, exc: BaseException) -> None:
        super().__init__(f"{self.default_reason}: {step}", step=step,
                         exception=type(exc).__name__, detail=str(exc)[:160])


class MissingCustomDataError(ProvisioningError):
    """IMDS says the VM has customData, but no provisioning media was found to read it
    from: provisioning fails rather than boot without the customer's custom data."""

    default_reason = "customData was provided but no provisioning media was found"
    what_to_do = (
        "Custom data travels only on the provisioning DVD: keep the CD-ROM driver "
        "(sr_mod), udev and python3-pycdlib in the image and nothing that ejects or "
        "holds the DVD early; 'cloudinit-azure doctor' checks the image. Then redeploy."
    )


class ResourceDiskError(ProvisioningError):
    """The resource disk could not be set up; nothing was destroyed by us
    unless the message says the format had already begun."""

    default_reason = "error setting up the resource disk"
    what_to_do = (
        "Only the azure_resource_disk module failed (the VM is provisioned): read the "
        "reason and cloud-init's log. A configured device or mount point that is missing "
        "or taken is fixed under azure_resource_disk: (docs/resource-disk.md); a failed "
        "mkfs, sfdisk or mount needs its tool in the image ('cloudinit-azure doctor')."
    )


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
