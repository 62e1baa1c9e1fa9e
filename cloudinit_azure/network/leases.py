"""DHCP leases: one parser per client (dhclient lease files, the dumps our
client scripts write, dhcpcd, networkd, cloud-init's lease dict) and the
option 121 / 245 decoders.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from cloudinit_azure.network.clients import (
    WIRESERVER_OPTION,
)
from cloudinit_azure.report import DhcpError
from cloudinit_azure.wireserver import parse_option_245

LOG = logging.getLogger(__name__)


def _rfc3442(octets: Sequence[int]) -> list[tuple[str, str]]:
    """Decode option 121 bytes; stops at the first truncated or bad entry."""
    routes: list[tuple[str, str]] = []
    if any(not 0 <= o <= 255 for o in octets):
        raise ValueError("option 121 octet out of range")
    i = 0
    while i < len(octets):
        width = octets[i]
        if width > 32:
            break
        need = (width + 7) // 8
        if i + 1 + need + 4 > len(octets):
            break
        dst = list(octets[i + 1:i + 1 + need]) + [0] * (4 - need)
        gw = octets[i + 1 + need:i + 5 + need]
        routes.append((f"{'.'.join(map(str, dst))}/{width}", ".".join(map(str, gw))))
        i += 5 + need
    return routes


def parse_classless_routes(value: str) -> list[tuple[str, str]]:
    """Option 121 in any client's spelling -> ``[(dst/len, gateway)]``.

    dhclient ``32,168,63,129,16,10,0,0,1`` (rfc3442-classless-static-routes),
    dhclient ``unknown-121`` hex ``20:a8:3f:81:10:a:0:0:1``, RHEL
    ``32.168.63.129.16 10.0.0.1,0 10.0.0.1``, dhcpcd
    ``168.63.129.16/32 10.0.0.1 ...`` and networkd ``168.63.129.16/32,10.0.0.1 ...``.
    """
    text = value.strip().strip(";").strip().strip('"')
    if not text:
        return []
    if not text.isascii() or re.search(r"[0-9]{4}", text):
        # int() accepts "²" and refuses 5,000 digits: neither is a route.
        LOG.warning("unparsable classless static routes: %r", value[:80])
        return []
    try:
        if "/" in text:
            tokens = re.split(r"[\s,]+", text)
            return [(d, g) for d, g in zip(tokens[::2], tokens[1::2])]
        if ":" in text:
            return _rfc3442([int(t, 16) for t in text.split(":") if t])
        if " " in text:  # RHEL: "width.dst-octets gw" entries, comma separated
            out = []
            for item in text.split(","):
                dst, _, gw = item.strip().partition(" ")
                parts = [int(p) for p in dst.split(".")]
                out += _rfc3442(parts + [int(p) for p in gw.split(".")])
            return out
        return _rfc3442([int(t) for t in text.split(",") if t.strip()])
    except ValueError:
        LOG.warning("unparsable classless static routes: %r", value)
        return []


def dhcp_packet_option(data: bytes, code: int) -> Optional[bytes]:
    """Option ``code`` from a raw DHCP message (dhcpcd's binary lease file).

    dhcpcd does not print unknown options such as 245 in ``--dumplease``.
    """
    i = 240  # BOOTP header (236) + magic cookie (4)
    while i < len(data):
        opt = data[i]
        if opt == 0:
            i += 1
            continue
        if opt == 255 or i + 1 >= len(data):
            break
        length = data[i + 1]
        if opt == code:
            return data[i + 2:i + 2 + length]
        i += 2 + length
    return None


_LEASE_OPEN = re.compile(r"\blease[ \t\r\n]*\{")


_BLOCK_SPECIAL = re.compile(r'[";}]')


_QUOTE_SPECIAL = re.compile(r'["\\]')


@dataclass(frozen=True)
class DhclientBlock:
    """One ``lease { ... }`` block of a dhclient lease file."""

    text: str  # the whole block, "lease {" to "}"
    values: Mapping[str, str]  # statement key ("fixed-address", "routers" ...) -> value


def dhclient_blocks(text: str) -> list[DhclientBlock]:
    """Every ``lease { }`` block of a dhclient lease file, in order.

    The one dhclient lease parser (the ephemeral run and the azure_network
    module both use it). One pass over the text, whatever it holds: quoted
    values may contain ``;`` and ``}``; an unterminated block or quote ends
    the scan (no backtracking over the rest of a hostile file).
    """
    blocks = []
    pos = 0
    while (opening := _LEASE_OPEN.search(text, pos)) is not None:
        values: dict[str, str] = {}
        start = i = opening.end()
        while True:
            special = _BLOCK_SPECIAL.search(text, i)
            if special is None:
                return blocks
            if special.group() == '"':
                i = special.end()
                while True:
                    quote = _QUOTE_SPECIAL.search(text, i)
                    if quote is None:
                        return blocks
                    i = quote.end() + (1 if quote.group() == "\\" else 0)
                    if quote.group() == '"':
                        break
                continue
            _statement(text[start:special.start()], values)
            start = i = special.end()
            if special.group() == "}":
                blocks.append(DhclientBlock(text[opening.start():special.end()], values))
                pos = special.end()
                break
    return blocks


def _statement(stmt: str, values: dict[str, str]) -> None:
    stmt = " ".join(stmt.split())
    if stmt.startswith("option "):
        stmt = stmt[len("option "):]
    key, _, val = stmt.partition(" ")
    if key:
        values[key] = val


def newest_dhclient_block(text: str, interface: Optional[str] = None
                          ) -> Optional[DhclientBlock]:
    """The last block (for ``interface``, or with no interface, when given)."""
    found = None
    for block in dhclient_blocks(text):
        iface = block.values.get("interface", "").strip('"')
        if not interface or iface in ("", interface):
            found = block
    return found


def _normalize(interface: Optional[str], address: Optional[str], routers: str,
               classless: Optional[str], lease_text: str) -> dict[str, Any]:
    # Option 245 in every client's notation: the wireserver module's parser.
    from cloudinit_azure.wireserver import parse_option_245

    return {
        "interface": interface or None,
        "address": address or None,
        "routers": [r for r in re.split(r"[\s,]+", routers or "") if r],
        "classless_routes": parse_classless_routes(classless) if classless else [],
        "wireserver": parse_option_245(lease_text) if lease_text else None,
    }


def parse_lease(text: str, kind: str, interface: Optional[str] = None) -> dict[str, Any]:
    """One client's lease -> ``{interface, address, routers, classless_routes, wireserver}``.

    ``kind``: ``dhclient`` (lease file; the newest block, for ``interface``
    when given), ``dhcpcd`` (``--dumplease`` output) or ``networkd`` (a file
    under /run/systemd/netif/leases, also NetworkManager's internal client).
    An empty or foreign text yields empty fields, never an exception.
    """
    if kind == "dhclient":
        block = newest_dhclient_block(text, interface)
        if block is None:
            return _normalize(interface, None, "", None, "")
        lease = block.values
        classless = lease.get("rfc3442-classless-static-routes") or lease.get(
            "unknown-121") or lease.get("classless-static-routes")
        return _normalize(
            lease.get("interface", "").strip('"') or interface,
            lease.get("fixed-address"), lease.get("routers", ""), classless, block.text,
        )
    if kind in ("dhcpcd", "networkd"):
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, val = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = val.strip().strip("'\"")
        if kind == "dhcpcd":
            return _normalize(
                values.get("interface") or interface, values.get("ip_address"),
                values.get("routers", ""), values.get("classless_static_routes"), text,
            )
        return _normalize(
            interface, values.get("ADDRESS"), values.get("ROUTER", ""),
            values.get("CLASSLESS_ROUTES"), text,
        )
    raise ValueError(f"unknown lease kind {kind!r}")


DHCPCD_WIRESERVER = "azure_wireserver"


@dataclass(frozen=True)
class Lease:
    """What the datasource needs from one DHCP lease."""

    interface: str
    address: str
    prefix: int
    router: Optional[str] = None
    broadcast: Optional[str] = None
    routes: tuple[tuple[str, str], ...] = ()  # option 121: (dst/len, gateway)
    wireserver: Optional[str] = None  # option 245 as a dotted quad
    dns: tuple[str, ...] = ()
    raw: str = ""  # the client's lease text (JSON for a fallback dict)
    client: str = ""  # "dhclient", "udhcpc", "dhcpcd" or "fallback"
    seconds: Optional[float] = None  # from __enter__ to a configured NIC


def _prefix(mask: Optional[str]) -> Optional[int]:
    if not mask:
        return None
    mask = mask.strip()
    if re.fullmatch(r"[0-9]+", mask):  # ASCII only: int() takes "²" and chokes on 5,000 digits
        return int(mask) if len(mask) <= 3 and int(mask) <= 32 else None
    if not mask.isascii():
        return None
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
    except ValueError:
        return None


def _ipv4(value: Optional[str]) -> Optional[str]:
    try:
        return str(ipaddress.IPv4Address((value or "").strip()))
    except ValueError:
        return None


def _addresses(value: Optional[str]) -> tuple[str, ...]:
    found = (_ipv4(v) for v in re.split(r"[\s,]+", value or ""))
    return tuple(a for a in found if a)


def _routes(value: Optional[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for dst, gw in parse_classless_routes(value) if value else []:
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            LOG.warning("ignoring bad classless route %s via %s", dst, gw)
            continue
        gateway = _ipv4(gw)
        if gateway is None:
            LOG.warning("ignoring classless route %s with bad gateway %r", dst, gw)
            continue
        out.append((str(net), gateway))
    return tuple(out)


def make_lease(interface: str, address: Optional[str], mask: Optional[str], *,
               router: Optional[str] = None, broadcast: Optional[str] = None,
               classless: Optional[str] = None, wireserver: Optional[str] = None,
               dns: Optional[str] = None, raw: str = "", client: str = "") -> Lease:
    """Validate one client's fields into a :class:`Lease`; DhcpError when unusable.

    A missing mask means a /32 (the router then gets a host route); a
    missing broadcast is computed.
    """
    addr = _ipv4(address)
    if addr is None:
        raise DhcpError(detail="lease has no valid address", client=client,
                        nic=interface, address=address)
    prefix = _prefix(mask)
    if prefix is None:
        LOG.warning("lease for %s has no usable subnet mask (%r): using /32", addr, mask)
        prefix = 32
    bcast = _ipv4(broadcast)
    if bcast is None and prefix <= 30:
        bcast = str(ipaddress.IPv4Interface(f"{addr}/{prefix}").network.broadcast_address)
    routers = _addresses(router)
    server = _ipv4(wireserver)
    if server is not None and ipaddress.IPv4Address(server).is_unspecified:
        server = None  # option 245 0.0.0.0: no wireserver named, the default applies
    return Lease(interface, addr, prefix, routers[0] if routers else None, bcast,
                 _routes(classless), server, _addresses(dns), raw, client)


def parse_dhclient_lease(text: str, nic: str) -> Lease:
    """dhclient's lease file (``-lf``) -> :class:`Lease`."""
    block = newest_dhclient_block(text)
    if block is None:
        raise DhcpError(detail="dhclient wrote no lease", client="dhclient", nic=nic)
    v = block.values
    wireserver = _ipv4(v.get(WIRESERVER_OPTION)) or parse_option_245(block.text)
    classless = (v.get("rfc3442-classless-static-routes") or v.get("unknown-121")
                 or v.get("classless-static-routes"))
    return make_lease(
        v.get("interface", "").strip('"') or nic, v.get("fixed-address"),
        v.get("subnet-mask"), router=v.get("routers"), broadcast=v.get("broadcast-address"),
        classless=classless, wireserver=wireserver, dns=v.get("domain-name-servers"),
        raw=text, client="dhclient",
    )


def _env_dump(text: str) -> dict[str, str]:
    """``key=value`` lines our client scripts write; the first value of a key wins."""
    v: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, val = line.partition("=")
        if sep and key not in v:
            v[key] = val.strip()
    return v


def parse_udhcpc_dump(text: str, nic: str) -> Lease:
    """The file :func:`udhcpc_script` writes -> :class:`Lease`."""
    v = _env_dump(text)
    if not v.get("ip"):
        raise DhcpError(detail="udhcpc wrote no lease", client="udhcpc", nic=nic)
    wireserver = parse_option_245(f"opt245={v['opt245']}") if v.get("opt245") else None
    return make_lease(
        v.get("interface") or nic, v.get("ip"), v.get("mask") or v.get("subnet"),
        router=v.get("router"), broadcast=v.get("broadcast"),
        classless=v.get("staticroutes"), wireserver=wireserver, dns=v.get("dns"),
        raw=text, client="udhcpc",
    )


def parse_dhcpcd_dump(text: str, nic: str) -> Lease:
    """The file :func:`dhcpcd_script` writes -> :class:`Lease`."""
    v = _env_dump(text)
    if not v.get("new_ip_address"):
        raise DhcpError(detail="dhcpcd wrote no lease", client="dhcpcd", nic=nic)
    return make_lease(
        v.get("interface") or nic, v.get("new_ip_address"),
        v.get("new_subnet_cidr") or v.get("new_subnet_mask"),
        router=v.get("new_routers"), broadcast=v.get("new_broadcast_address"),
        classless=v.get("new_classless_static_routes"),
        wireserver=_ipv4(v.get(f"new_{DHCPCD_WIRESERVER}")),
        dns=v.get("new_domain_name_servers"), raw=text, client="dhcpcd",
    )


def lease_from_dict(lease: Mapping[str, Any], nic: str) -> Lease:
    """cloud-init's lease dict (dhclient, dhcpcd or udhcpc flavour) -> :class:`Lease`."""
    def get(*keys: str) -> Optional[str]:
        for key in keys:
            value = lease.get(key)
            if value:
                return str(value).strip().strip(";").strip('"')
        return None

    opt245 = get("unknown-245", "unknown_245", WIRESERVER_OPTION)
    wireserver = _ipv4(opt245) or (parse_option_245(f"unknown-245 {opt245}")
                                   if opt245 else None)
    return make_lease(
        get("interface") or nic, get("fixed-address", "ip-address", "ip"),
        get("subnet-mask", "subnet-cidr", "subnet", "mask"),
        router=get("routers", "router"), broadcast=get("broadcast-address", "broadcast"),
        classless=get("rfc3442-classless-static-routes", "classless-static-routes",
                      "static_routes", "unknown-121"),
        wireserver=wireserver, dns=get("domain-name-servers", "dns"),
        raw=json.dumps(dict(lease), sort_keys=True, default=str), client="fallback",
    )
