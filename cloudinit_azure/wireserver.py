"""The wireserver: endpoint discovery, goal state, health reports, certificates.

Parsing and rendering are pure functions over bytes/str; :class:`WireserverClient`
is the only part that talks HTTP, through the shared :class:`HttpClient`.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urlsplit

import requests

from cloudinit_azure import xmldoc
from cloudinit_azure.http import ANY_ERROR_STATUS, HttpClient, RetryPolicy
from cloudinit_azure.report import (
    MAX_DESCRIPTION,
    CertificateError,
    GoalStateError,
    HealthReportError,
    WireserverError,
)

if TYPE_CHECKING:  # parsing itself goes through defusedxml
    from xml.etree.ElementTree import Element

DEFAULT_WIRESERVER = "168.63.129.16"
WIRESERVER_HEADERS = {"x-ms-agent-name": "WALinuxAgent", "x-ms-version": "2012-11-30"}
GOAL_STATE_PATH = "/machine/?comp=goalstate"
HEALTH_PATH = "/machine?comp=health"
HEALTH_CONTENT_TYPE = "text/xml; charset=utf-8"
# The legacy SSH host key thumbprint report (azure_network's option).
ROLE_PROPERTIES_PATH = "/machine?comp=roleProperties"
CIPHER_NAME = "DES_EDE3_CBC"
HEALTH_STATES = ("Ready", "NotReady")
PROVISIONING_FAILED = "ProvisioningFailed"


# --- endpoint discovery (DHCP option 245) ------------------------------------

# The names DHCP clients give option 245: dhclient leases (``option
# unknown-245 a8:3f:81:10;``) and exit-hook env (``unknown_245=...``), dhcpcd
# (``unknown_245``/``option_245``), systemd-networkd leases
# (``OPTION_245=A83F8110``) and busybox udhcpc env (``opt245=a83f8110``).
_OPTION_245 = re.compile(
    r"""(?:^|[\s;])(?:new_)?(?:unknown[-_]245|option[-_]245|opt245)
        (?:\s*=\s*|\s+)
        (?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s;]+)""",
    re.IGNORECASE | re.VERBOSE | re.MULTILINE,
)
_HEX_PARTS = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){3}")
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_C_ESCAPE = re.compile(r"\\([0-7]{1,3}|.)", re.DOTALL)


def _unescape_c(text: str) -> bytes:
    """Undo dhclient's C-style quoting of a non-hex option value."""
    def sub(m: re.Match[str]) -> str:
        esc = m.group(1)
        return chr(int(esc, 8)) if esc[0] in "01234567" else esc
    return _C_ESCAPE.sub(sub, text).encode("latin-1")


def _decode_245(value: str) -> Optional[str]:
    """Turn one option-245 value, in any client's notation, into dotted quad.

    None for what cannot be the wireserver: an unterminated quote (its
    characters would become address octets), 0.0.0.0, broadcast, multicast.
    """
    quoted = value[:1] == '"'
    if value[:1] in "\"'":
        if len(value) < 2 or value[-1:] != value[:1]:
            return None  # an unterminated quote is no address
        value = value[1:-1]
    if _HEX_PARTS.fullmatch(value):
        raw = bytes(int(part, 16) for part in value.split(":"))
    elif _HEX8.fullmatch(value):
        raw = bytes.fromhex(value)
    else:
        try:
            raw = ipaddress.IPv4Address(value).packed
        except ValueError:
            if not quoted:
                return None
            try:
                raw = _unescape_c(value)
            except (UnicodeEncodeError, ValueError):
                return None
            if len(raw) != 4:
                return None
    address = ipaddress.IPv4Address(raw)
    if address.is_unspecified or address.is_multicast or \
            address == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return str(address)


def parse_option_245(lease_text: str) -> Optional[str]:
    """The wireserver address in a DHCP client's lease/dump text; last lease wins."""
    found = None
    for match in _OPTION_245.finditer(lease_text):
        address = _decode_245(match.group("value"))
        if address is not None:  # None: 0.0.0.0 and the like; the default applies
            found = address
    return found


def wireserver_address(candidates: Iterable[Optional[str]],
                       default: str = DEFAULT_WIRESERVER) -> str:
    """The first usable candidate (dotted quad or an option-245 value), else default."""
    for candidate in candidates:
        if not candidate:
            continue
        address = _decode_245(candidate.strip())
        if address is not None and not ipaddress.IPv4Address(address).is_unspecified:
            return address
    return default


def wireserver_url(address: str) -> str:
    return f"http://{address}"


# --- XML helpers ---------------------------------------------------------------

def _parse_xml(xml: bytes, error: type[WireserverError], what: str) -> Element:
    return xmldoc.parse(xml, lambda problem, details: error(detail=f"{what} {problem}",
                                                            **details))


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _find(node: Element, path: str) -> Optional[Element]:
    """Find by local names, so a default namespace on the document is harmless."""
    for name in path.split("/"):
        node = next((c for c in node if _local(c.tag) == name), None)
        if node is None:
            return None
    return node


def _text(node: Element, path: str) -> Optional[str]:
    found = _find(node, path)
    if found is None:
        return None
    return (found.text or "").strip()


# --- goal state ----------------------------------------------------------------

@dataclass(frozen=True)
class GoalState:
    """What a health report must echo back, and where the certificates are."""

    incarnation: str
    container_id: str
    instance_id: str
    certificates_url: Optional[str] = None


def parse_goal_state(xml: bytes) -> GoalState:
    """Parse ``GET /machine/?comp=goalstate``; missing required parts raise."""
    root = _parse_xml(xml, GoalStateError, "goal state")
    if _local(root.tag) != "GoalState":
        raise GoalStateError(detail=f"unexpected root element {_local(root.tag)}")
    role = "Container/RoleInstanceList/RoleInstance"
    required = {"Incarnation": "Incarnation", "Container/ContainerId": "ContainerId",
                f"{role}/InstanceId": "InstanceId"}
    values = {}
    for path, name in required.items():
        value = _text(root, path)
        if not value:
            raise GoalStateError(detail=f"missing {path}")
        values[name] = value
    return GoalState(
        incarnation=values["Incarnation"],
        container_id=values["ContainerId"],
        instance_id=values["InstanceId"],
        certificates_url=_text(root, f"{role}/Configuration/Certificates") or None,
    )


# --- health --------------------------------------------------------------------

# Characters XML 1.0 cannot carry at all, even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _escape(value: str) -> str:
    # Lone surrogates (from a platform document) would make the body unencodable.
    value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    value = _XML_INVALID.sub("", value)
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&apos;"))


def render_health(goal_state: GoalState, state: str, substatus: Optional[str] = None,
                  description: Optional[str] = None) -> bytes:
    """The body of ``POST /machine?comp=health`` (Details only when given)."""
    if state not in HEALTH_STATES:
        raise ValueError(f"health state must be one of {HEALTH_STATES}, not {state!r}")
    details = ""
    if substatus is not None or description is not None:
        details = "\n          <Details>"
        if substatus is not None:
            details += f"\n            <SubStatus>{_escape(substatus)}</SubStatus>"
        if description is not None:
            text = _escape(description[:MAX_DESCRIPTION])
            details += f"\n            <Description>{text}</Description>"
        details += "\n          </Details>"
    doc = f"""<?xml version="1.0" encoding="utf-8"?>
<Health xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xmlns:xsd="http://www.w3.org/2001/XMLSchema">
  <GoalStateIncarnation>{_escape(goal_state.incarnation)}</GoalStateIncarnation>
  <Container>
    <ContainerId>{_escape(goal_state.container_id)}</ContainerId>
    <RoleInstanceList>
      <Role>
        <InstanceId>{_escape(goal_state.instance_id)}</InstanceId>
        <Health>
          <State>{_escape(state)}</State>{details}
        </Health>
      </Role>
    </RoleInstanceList>
  </Container>
</Health>
"""
    return doc.encode("utf-8")


def parse_health(xml: bytes) -> dict[str, Optional[str]]:
    """Read a health report back (the simulator parses what agents POST)."""
    root = _parse_xml(xml, HealthReportError, "health report")
    if _local(root.tag) != "Health":
        raise HealthReportError(detail=f"unexpected root element {_local(root.tag)}")
    role = "Container/RoleInstanceList/Role"
    found = {
        "incarnation": _text(root, "GoalStateIncarnation"),
        "container_id": _text(root, "Container/ContainerId"),
        "instance_id": _text(root, f"{role}/InstanceId"),
        "state": _text(root, f"{role}/Health/State"),
        "substatus": _text(root, f"{role}/Health/Details/SubStatus"),
        "description": _text(root, f"{role}/Health/Details/Description"),
    }
    if not found["state"]:
        raise HealthReportError(detail=f"missing {role}/Health/State")
    return found


# --- client --------------------------------------------------------------------

def wireserver_policy(budget_s: float = 1200.0, interval_s: float = 1.0,
                      timeout_s: float = 10.0) -> RetryPolicy:
    """Retry any failure ``interval_s`` apart for ``budget_s``; unreachable ends it."""
    return RetryPolicy(retry_statuses=ANY_ERROR_STATUS, interval_s=interval_s,
                       deadline_s=budget_s, timeout_s=timeout_s,
                       retry_on_connection_errors=True, give_up_on_unreachable=True,
                       honour_retry_after=False)


def _path_of(url: str) -> str:
    """Path and query of ``url``: the wireserver's own URLs are sent to our endpoint.

    The goal state names the certificates by an absolute URL on the
    wireserver; sending it to the endpoint this client was given is the same
    request on Azure and keeps tests and the simulator on their own address.
    """
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


class WireserverClient:
    """Goal state, health and certificates against one wireserver endpoint."""

    def __init__(
        self,
        base_url: str = wireserver_url(DEFAULT_WIRESERVER),
        *,
        http: Optional[HttpClient] = None,
        budget_s: float = 1200.0,
        interval_s: float = 1.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        session: Optional[requests.Session] = None,
    ) -> None:
        if http is None:
            http = HttpClient(base_url, headers=WIRESERVER_HEADERS,
                              policy=wireserver_policy(budget_s, interval_s, timeout_s),
                              error=WireserverError, clock=clock, sleep=sleep,
                              session=session)
        self.http = http

    def goal_state(self) -> GoalState:
        resp = self.http.get(GOAL_STATE_PATH, headers=WIRESERVER_HEADERS)
        return parse_goal_state(resp.body)

    def report_health(self, goal_state: GoalState, state: str,
                      substatus: Optional[str] = None,
                      description: Optional[str] = None) -> None:
        self._post_xml(HEALTH_PATH, render_health(goal_state, state, substatus, description))

    def report_role_properties(self, body: bytes) -> None:
        """POST a roleProperties document (:func:`network.hostkey.render_role_properties`)."""
        self._post_xml(ROLE_PROPERTIES_PATH, body)

    def _post_xml(self, path: str, body: bytes) -> None:
        headers = {**WIRESERVER_HEADERS, "Content-Type": HEALTH_CONTENT_TYPE}
        self.http.post(path, body, headers=headers)

    def report_ready(self, goal_state: GoalState) -> None:
        self.report_health(goal_state, "Ready")

    def report_failure(self, goal_state: GoalState, description: str) -> None:
        """NotReady/ProvisioningFailed with ``description`` (an encoded report)."""
        self.report_health(goal_state, "NotReady", PROVISIONING_FAILED, description)

    def certificates(self, goal_state: GoalState, transport_cert_b64: str) -> bytes:
        """The certificates XML, its Data enveloped to ``transport_cert_b64``."""
        if not goal_state.certificates_url:
            raise CertificateError(detail="goal state has no certificates URL")
        headers = {**WIRESERVER_HEADERS, "x-ms-cipher-name": CIPHER_NAME,
                   "x-ms-guest-agent-public-x509-cert": transport_cert_b64}
        resp = self.http.get(_path_of(goal_state.certificates_url), headers=headers,
                             error=CertificateError)
        return resp.body
