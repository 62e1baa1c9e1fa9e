"""IMDS: parse the instance metadata JSON and fetch it with the shared retry policy.

Parsing is a pure function from bytes to a frozen :class:`InstanceMetadata`;
every field is type-checked so a surprising document becomes an
:class:`ImdsParseError` naming the field rather than a crash later on.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import requests

from cloudinit_azure.http import HttpClient, RetryPolicy
from cloudinit_azure.report import ImdsError, ImdsParseError

IMDS_URL = "http://169.254.169.254"
INSTANCE_PATH = "/metadata/instance?api-version=2021-08-01&extended=true"
# Older hosts answer 400 to the newer API version (and to ``extended``).
FALLBACK_INSTANCE_PATH = "/metadata/instance?api-version=2019-06-01"
REPROVISION_PATH = "/metadata/reprovisiondata?api-version=2019-06-01"
IMDS_HEADERS = {"Metadata": "true"}
IMDS_POLICY = RetryPolicy(deadline_s=300.0, interval_s=1.0, timeout_s=2.0,
                          client_request_id=True)

_MAC = re.compile(r"[0-9a-fA-F]{12}")


@dataclass(frozen=True)
class NetworkInterface:
    """One NIC as IMDS describes it; ``mac`` is lower-case colon form.

    Addresses are checked (and normalised) by :mod:`ipaddress` for their
    family; subnets are ``(address, prefix)`` with the prefix in range.
    """

    mac: str
    ipv4_addresses: tuple[str, ...] = ()
    ipv4_subnets: tuple[tuple[str, int], ...] = ()
    ipv6_addresses: tuple[str, ...] = ()
    ipv6_subnets: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class InstanceMetadata:
    """The parts of IMDS instance metadata provisioning uses."""

    vm_id: Optional[str] = None
    computer_name: Optional[str] = None
    admin_username: Optional[str] = None
    disable_password_authentication: Optional[bool] = None
    public_keys: tuple[tuple[str, str], ...] = ()
    user_data: Optional[bytes] = field(default=None, repr=False)
    location: Optional[str] = None
    zone: Optional[str] = None
    platform_fault_domain: Optional[str] = None
    vm_size: Optional[str] = None
    pps_type: str = "None"
    has_custom_data: Optional[bool] = None
    interfaces: tuple[NetworkInterface, ...] = ()
    # Why the network section was unusable (then ``interfaces`` is empty and
    # the network config falls back to DHCP on the primary NIC), or None.
    network_problem: Optional[str] = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False,
                                hash=False)


def _fail(detail: str, **data: Any) -> ImdsParseError:
    return ImdsParseError(detail=detail, **data)


def _obj(value: Any, name: str, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"{name} is not an object")
    return value


def _list(value: Any, name: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(f"{name} is not a list")
    return value


def _str(value: Any, name: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fail(f"{name} is not a string")
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: "\ud800" is valid JSON
        raise _fail(f"{name} is not valid Unicode text") from None
    return text


def _bool(value: Any, name: str) -> Optional[bool]:
    """IMDS sends some booleans as the strings "true"/"false"."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _fail(f"{name} is not a boolean")


def _mac(value: Any, name: str) -> str:
    text = _str(value, name) or ""
    text = text.replace(":", "").replace("-", "")
    if not _MAC.fullmatch(text):
        raise _fail(f"{name} is not a MAC address")
    text = text.lower()
    return ":".join(text[i:i + 2] for i in range(0, 12, 2))


def _address(value: Any, version: int, name: str) -> str:
    text = _str(value, name)
    try:
        addr = ipaddress.ip_address(text or "")
    except ValueError:
        raise _fail(f"{name} is not an IP address") from None
    if addr.version != version:
        raise _fail(f"{name} is not an IPv{version} address")
    return str(addr)


def _prefix(value: Any, version: int, name: str) -> int:
    """A prefix length: an int or ASCII digits (not "²", "①", 5,000 digits, inf)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() \
            and len(value.strip()) <= 3:
        number = int(value.strip())
    else:
        raise _fail(f"{name} is not a prefix length")
    if not 0 <= number <= (32 if version == 4 else 128):
        raise _fail(f"{name} is out of range for IPv{version}")
    return number


def _addresses(family: dict[str, Any], version: int, name: str) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(_list(family.get("ipAddress"), f"{name}.ipAddress")):
        where = f"{name}.ipAddress[{i}]"
        item = _obj(item, where, required=True)
        if item.get("privateIpAddress") not in (None, ""):
            out.append(_address(item["privateIpAddress"], version,
                                f"{where}.privateIpAddress"))
    return tuple(out)


def parse_subnets(family: dict[str, Any], version: int,
                  name: str) -> tuple[tuple[str, int], ...]:
    """``(address, prefix)`` of a family's ``subnet`` list; incomplete entries skipped."""
    out = []
    for i, item in enumerate(_list(family.get("subnet"), f"{name}.subnet")):
        where = f"{name}.subnet[{i}]"
        item = _obj(item, where, required=True)
        if item.get("address") in (None, "") or item.get("prefix") in (None, ""):
            continue
        out.append((_address(item["address"], version, f"{where}.address"),
                    _prefix(item["prefix"], version, f"{where}.prefix")))
    return tuple(out)


def _interface(item: Any, where: str) -> NetworkInterface:
    item = _obj(item, where, required=True)
    ipv4 = _obj(item.get("ipv4"), f"{where}.ipv4")
    ipv6 = _obj(item.get("ipv6"), f"{where}.ipv6")
    return NetworkInterface(
        mac=_mac(item.get("macAddress"), f"{where}.macAddress"),
        ipv4_addresses=_addresses(ipv4, 4, f"{where}.ipv4"),
        ipv4_subnets=parse_subnets(ipv4, 4, f"{where}.ipv4"),
        ipv6_addresses=_addresses(ipv6, 6, f"{where}.ipv6"),
        ipv6_subnets=parse_subnets(ipv6, 6, f"{where}.ipv6"),
    )


def parse_network(network: Any) -> tuple[NetworkInterface, ...]:
    """The IMDS ``network`` section -> typed interfaces, or ImdsParseError.

    The one parser of IMDS network data, with one rule: a malformed section
    (bad MAC, bad or wrong-family IP, bad prefix, duplicate MAC, wrong
    shapes) never fails provisioning. :func:`parse_instance_metadata` keeps
    the problem in ``network_problem`` and the network config falls back to
    DHCP on the primary NIC (:func:`cloudinit_azure.network.netconfig.network_config_or_fallback`).
    """
    section = _obj(network, "network")
    interfaces = []
    seen: set[str] = set()
    for i, item in enumerate(_list(section.get("interface"), "network.interface")):
        nic = _interface(item, f"network.interface[{i}]")
        if nic.mac in seen:
            raise _fail(f"network.interface[{i}] has a duplicate MAC address", mac=nic.mac)
        seen.add(nic.mac)
        interfaces.append(nic)
    return tuple(interfaces)


def _user_data(value: Any) -> Optional[bytes]:
    text = _str(value, "compute.userData")
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("compute.userData is not valid base64") from None


def parse_instance_metadata(body: bytes) -> InstanceMetadata:
    """Parse IMDS ``/metadata/instance`` JSON into :class:`InstanceMetadata`."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the interpreter's stack.
        raise _fail("invalid JSON", exception=type(exc).__name__) from None
    doc = _obj(doc, "document", required=True)
    compute = _obj(doc.get("compute"), "compute")
    os_profile = _obj(compute.get("osProfile"), "compute.osProfile")
    extended = _obj(_obj(doc.get("extended"), "extended").get("compute"), "extended.compute")

    keys = []
    for i, item in enumerate(_list(compute.get("publicKeys"), "compute.publicKeys")):
        where = f"compute.publicKeys[{i}]"
        item = _obj(item, where, required=True)
        key_data = _str(item.get("keyData"), f"{where}.keyData")
        if key_data:
            keys.append((key_data, _str(item.get("path"), f"{where}.path") or ""))

    network_problem = None
    try:
        interfaces = parse_network(doc.get("network"))
    except ImdsParseError as exc:
        interfaces, network_problem = (), str(exc)
    return InstanceMetadata(
        vm_id=_str(compute.get("vmId"), "compute.vmId"),
        computer_name=_str(os_profile.get("computerName"), "compute.osProfile.computerName"),
        admin_username=_str(os_profile.get("adminUsername"),
                            "compute.osProfile.adminUsername"),
        disable_password_authentication=_bool(
            os_profile.get("disablePasswordAuthentication"),
            "compute.osProfile.disablePasswordAuthentication"),
        public_keys=tuple(keys),
        user_data=_user_data(compute.get("userData")),
        location=_str(compute.get("location"), "compute.location"),
        zone=_str(compute.get("zone"), "compute.zone") or None,
        platform_fault_domain=_str(compute.get("platformFaultDomain"),
                                   "compute.platformFaultDomain"),
        vm_size=_str(compute.get("vmSize"), "compute.vmSize"),
        pps_type=_str(extended.get("ppsType"), "extended.compute.ppsType") or "None",
        has_custom_data=_bool(extended.get("hasCustomData"), "extended.compute.hasCustomData"),
        interfaces=interfaces,
        network_problem=network_problem,
        raw=doc,
    )


def imds_client(
    base_url: str = IMDS_URL,
    *,
    policy: RetryPolicy = IMDS_POLICY,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    session: Optional[requests.Session] = None,
) -> HttpClient:
    """An :class:`HttpClient` for IMDS: ``Metadata: true``, ImdsError on give-up."""
    return HttpClient(base_url, headers=IMDS_HEADERS, policy=policy, error=ImdsError,
                      clock=clock, sleep=sleep, session=session)


def _client(client_or_base_url: Union[HttpClient, str], **kwargs: Any) -> HttpClient:
    if isinstance(client_or_base_url, HttpClient):
        return client_or_base_url
    return imds_client(client_or_base_url, **kwargs)


def fetch_instance_metadata(
    client_or_base_url: Union[HttpClient, str] = IMDS_URL, **client_kwargs: Any
) -> InstanceMetadata:
    """GET instance metadata, falling back to api-version 2019-06-01 on HTTP 400.

    ``client_kwargs`` (policy, clock, sleep, session) build the client when a
    base URL is given. The fallback shares the first request's deadline.
    """
    client = _client(client_or_base_url, **client_kwargs)
    start = client.clock()
    resp = client.get(INSTANCE_PATH, return_statuses={400})
    if resp.status == 400:
        left = client.policy.deadline_s - (client.clock() - start)
        resp = client.get(FALLBACK_INSTANCE_PATH, deadline_s=max(left, 0.0))
    return parse_instance_metadata(resp.body)


def fetch_reprovision_data(
    client_or_base_url: Union[HttpClient, str] = IMDS_URL, **client_kwargs: Any
) -> bytes:
    """GET the customer's ovf-env.xml for a preprovisioned VM (raw bytes)."""
    client = _client(client_or_base_url, **client_kwargs)
    return client.get(REPROVISION_PATH).body
