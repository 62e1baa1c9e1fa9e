"""IMDS ``network`` data -> cloud-init network config version 2.

Why not cloud-init's own generator: it names NICs ``eth0, eth1 ...`` by IMDS
order and renames them with ``set-name``, which fights udev/predictable names
and swaps interfaces when IMDS order differs from kernel order. Here every NIC
is matched by MAC address (and by the synthetic NIC's driver, because an
accelerated-networking VF carries the same MAC) and keeps the name the kernel
or udev gave it: no ``set-name`` is ever emitted. When the caller knows the
current names (``names``, from :func:`cloudinit_azure.network.names_by_mac`),
they become the config ids so the rendered files are named after the real
devices.

Pure: takes the raw IMDS ``network`` dict (the JSON shape), returns a dict.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from cloudinit_azure import imds
from cloudinit_azure.network.nics import names_by_mac
from cloudinit_azure.network.routes import DEFAULT_WIRESERVER, IMDS_ADDRESS
from cloudinit_azure.report import ImdsParseError

__all__ = [
    "DEFAULT_NIC_DRIVER",
    "fallback_config",
    "names_by_mac",
    "network_config",
    "normalize_mac",
]

DEFAULT_NIC_DRIVER = "hv_netvsc"
_HEX_MAC = re.compile(r"^[0-9a-fA-F]{12}$")


def normalize_mac(value: Any, field: str = "macAddress") -> str:
    """``000D3A123456`` / ``00-0D-3A-12-34-56`` -> ``00:0d:3a:12:34:56``.

    netplan and cloud-init compare MACs in lower-case colon form.
    """
    if not isinstance(value, str):
        raise ImdsParseError(field=field, value=repr(value))
    digits = value.replace(":", "").replace("-", "")
    if not _HEX_MAC.match(digits):
        raise ImdsParseError(field=field, value=value)
    digits = digits.lower()
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def _prefix(subnets: tuple[tuple[str, int], ...], version: int) -> int:
    """Prefix of the NIC's first subnet: what secondary addresses live in."""
    if subnets:
        return subnets[0][1]
    return 24 if version == 4 else 128


def _gateway(subnets: tuple[tuple[str, int], ...]) -> Optional[str]:
    """Azure's gateway of the first IPv4 subnet: its first host address."""
    if not subnets:
        return None
    net = ipaddress.ip_network(f"{subnets[0][0]}/{subnets[0][1]}", strict=False)
    if net.num_addresses < 4:
        return None
    return str(net.network_address + 1)


def azure_gateway(family: Mapping[str, Any]) -> Optional[str]:
    """The default gateway Azure gives a subnet: its first host address.

    Azure reserves ``x.x.x.1`` of every subnet for the gateway, so the IMDS
    ``ipv4.subnet[0]`` (address and prefix) names it; None when absent or
    malformed (then no route to the platform is rendered).
    """
    subnets = family.get("subnet") if isinstance(family, Mapping) else None
    if not isinstance(subnets, list) or not subnets or not isinstance(subnets[0], Mapping):
        return None
    try:
        return _gateway(imds.parse_subnets(dict(family), 4, "ipv4")[:1])
    except ImdsParseError:
        return None


def _match(mac: str, nic_driver: Optional[str]) -> dict[str, str]:
    match = {"macaddress": mac}
    if nic_driver:
        match["driver"] = nic_driver
    return match


def _platform_routes(
    wireserver: Optional[str], routes_to_platform: bool, gateway: Optional[str],
    routes: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if routes_to_platform and gateway:
        for dst in (wireserver or DEFAULT_WIRESERVER, IMDS_ADDRESS):
            out.append({"to": f"{dst}/32", "via": gateway})
    for route in routes:
        item = dict(route)
        if item not in out:
            out.append(item)
    return out


def network_config_or_fallback(
    imds_network: Optional[Mapping[str, Any]], *, primary_mac: Optional[str] = None,
    nic_driver: Optional[str] = DEFAULT_NIC_DRIVER, **kwargs: Any,
) -> tuple[dict[str, Any], Optional[str]]:
    """:func:`network_config`, or DHCP on the primary NIC when IMDS's data is unusable.

    Returns ``(config, problem)``: a malformed IMDS network section must not
    leave the VM without a network, so the problem is reported, not raised.
    """
    try:
        return network_config(imds_network, primary_mac=primary_mac, nic_driver=nic_driver,
                              **kwargs), None
    except ImdsParseError as exc:
        try:
            return fallback_config(mac=primary_mac, nic_driver=nic_driver), str(exc)
        except ImdsParseError:  # not even our own NIC's MAC reads: match nothing
            return fallback_config(nic_driver=nic_driver), str(exc)


def fallback_config(
    *, mac: Optional[str] = None, name: Optional[str] = None,
    nic_driver: Optional[str] = DEFAULT_NIC_DRIVER,
    routes: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One NIC on DHCPv4: what to do when IMDS gave no network data.

    Matched by ``mac`` when known, otherwise the config names ``name``
    (default ``eth0``) without a match so no device is renamed.
    """
    dev: dict[str, Any] = {"dhcp4": True}
    if mac:
        dev["match"] = _match(normalize_mac(mac, "mac"), nic_driver)
    route_list = list(routes)
    if route_list:
        dev["routes"] = [dict(r) for r in route_list]
    return {"version": 2, "ethernets": {name or "eth0": dev}}


def network_config(
    imds_network: Optional[Mapping[str, Any]],
    *,
    nic_driver: Optional[str] = DEFAULT_NIC_DRIVER,
    apply_secondary_ips: bool = True,
    names: Optional[Mapping[str, str]] = None,
    primary_mac: Optional[str] = None,
    wireserver: Optional[str] = None,
    routes_to_platform: bool = True,
    gateway: Optional[str] = None,
    routes: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Build the v2 config for every IMDS interface.

    ``nic_driver``: the synthetic NIC's driver to match on besides the MAC
    (``hv_netvsc`` on Azure; the datasource passes what it sees, e.g. ``veth``
    in the simulator; None matches by MAC only). ``names``: current
    ``{mac: name}``, used as ids. The first IMDS interface is the primary:
    lowest route metric, the only one whose DHCP DNS servers are used, and the
    one that carries routes to the platform (``routes_to_platform``, on by
    default, via ``gateway`` or else the subnet's Azure gateway from IMDS,
    plus any ``routes`` as ``{"to", "via"}`` dicts). They are rendered into
    the OS network config so they survive reboots even when the DHCP server
    sends no option 121 (the azure_network module only adds them to the
    running system, once per instance).
    Without interfaces, falls back to one DHCP NIC (``primary_mac``, else the
    first of ``names``). Raises :class:`ImdsParseError` on a malformed shape.
    """
    names = dict(names or {})
    platform = _platform_routes(wireserver, routes_to_platform, gateway, routes)
    interfaces = imds.parse_network(imds_network) if imds_network is not None else ()
    if not interfaces:
        mac = primary_mac or next(iter(names), None)
        name = names.get(normalize_mac(mac, "mac")) if mac else None
        return fallback_config(mac=mac, name=name, nic_driver=nic_driver, routes=platform)

    ethernets: dict[str, Any] = {}
    for idx, nic in enumerate(interfaces):
        v4_addrs, v6_addrs = nic.ipv4_addresses, nic.ipv6_addresses
        if not v4_addrs and not v6_addrs:
            continue  # nothing assigned: leave the NIC to the OS, as cloud-init does

        overrides: dict[str, Any] = {"route-metric": 100 * (idx + 1)}
        if idx > 0:
            overrides["use-dns"] = False
        dev: dict[str, Any] = {
            "match": _match(nic.mac, nic_driver),
            "dhcp4": True,
            "dhcp4-overrides": dict(overrides),
            "dhcp6": bool(v6_addrs),
        }
        if v6_addrs:
            dev["dhcp6-overrides"] = dict(overrides)
        if apply_secondary_ips:
            statics = [f"{a}/{_prefix(nic.ipv4_subnets, 4)}" for a in v4_addrs[1:]]
            statics += [f"{a}/{_prefix(nic.ipv6_subnets, 6)}" for a in v6_addrs[1:]]
            if statics:
                dev["addresses"] = statics
        if not ethernets:  # first NIC configured: the primary
            if gateway is None and routes_to_platform:
                platform = _platform_routes(wireserver, True, _gateway(nic.ipv4_subnets),
                                            routes)
            if platform:
                dev["routes"] = [dict(r) for r in platform]
        dev_id = names.get(nic.mac) or "nic-" + nic.mac.replace(":", "")
        ethernets[dev_id] = dev
    return {"version": 2, "ethernets": ethernets}
