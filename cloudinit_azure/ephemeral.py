"""Ephemeral DHCP on the primary NIC for cloud-init's init-local stage.

Before the OS network exists the datasource must reach IMDS and the
wireserver, so it brings the NIC up for a moment: one DHCP exchange, the
lease applied with ``ip``, and everything undone afterwards.

Why not cloud-init's own helper: with a DHCP server that answers at once,
dhclient binds in ~0.02 s and busybox udhcpc in ~0.09 s, but cloud-init runs
dhcpcd with its random 0.7-1.5 s RFC 2131 start delay. So this module runs
the image's client itself, preferring dhclient, then udhcpc, then dhcpcd
(with ``nodelay`` and ``noarp``: ~0.03 s); cloud-init's helper is only the
fallback (the datasource adapter passes it in) when none of them can be used.

The client never configures anything (dhclient ``-sf /bin/true``, a udhcpc
script that only records the lease, dhcpcd ``--noconfigure`` with a script
that only records it): this module adds the address and routes itself and
remembers each command that succeeded, so teardown removes exactly what was
added, also after a partial setup. The lease is never released (no
``dhclient -r``, no ``udhcpc -R``, no dhcpcd ``release``): the OS network
will want it. dhcpcd writes its lease database itself; that file is put
back as it was (see ``_DhcpcdFiles``).

Choosing the client, building command lines, parsing leases and turning a
lease into ``ip`` commands are pure functions; :class:`EphemeralDhcp` runs
them with an injected runner, root path, clock and kill function.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from cloudinit_azure.network import VF_DRIVERS, newest_dhclient_block, parse_classless_routes
from cloudinit_azure.report import DhcpError
from cloudinit_azure.runner import Runner, run
from cloudinit_azure.wireserver import parse_option_245

LOG = logging.getLogger(__name__)

FAST_CLIENTS = ("dhclient", "udhcpc", "dhcpcd")
DHCLIENT_PATHS = ("usr/sbin/dhclient", "sbin/dhclient")
UDHCPC_PATHS = ("usr/sbin/udhcpc", "sbin/udhcpc", "usr/bin/udhcpc")
BUSYBOX_PATHS = ("usr/bin/busybox", "bin/busybox")
DHCPCD_PATHS = ("usr/sbin/dhcpcd", "sbin/dhcpcd")
TIMEOUT_PATHS = ("usr/bin/timeout", "bin/timeout")
# dhcpcd state this module must leave as it found it (see _DhcpcdFiles).
DHCPCD_DB_DIRS = ("var/lib/dhcpcd", "var/db/dhcpcd")
DHCPCD_RUN_DIR = "run/dhcpcd"
# Verified against dhcpcd 9.4.1; the options used exist since 9.x.
DHCPCD_MIN_VERSION = (9, 4)
DHCPCD_KILL_AFTER = 2  # timeout(1) -k: SIGKILL if dhcpcd ignores SIGTERM
DHCPCD_EXIT_WAIT = 1.0  # for its privsep helpers to remove /run/dhcpcd/<nic>-4.*
DHCPCD_WIRESERVER = "azure_wireserver"
# dhclient only asks for options its config names, and prints an option it
# has no definition for as ``unknown-245 a8:3f:81:10``. Defining 245 as an
# ip-address makes it request the option and print it as a dotted quad.
WIRESERVER_OPTION = "azure-wireserver"
NOOP_SCRIPT = "/bin/true"
DEFAULT_TIMEOUT = 10.0
PID_WAIT = 1.0  # dhclient writes its pid file just after it daemonizes
STDERR_TAIL = 400
IFF_UP = 0x1
ON_LINK = "0.0.0.0"  # noqa: S104  (option 121 gateway: "on the link", not a bind)
_VIRTUAL_DEVTYPES = frozenset({"bridge", "bond", "vlan", "wlan", "wireguard"})

Command = tuple[str, ...]


# ------------------------------------------------------------- client ----


@dataclass(frozen=True)
class ClientProgram:
    """A DHCP client found in the image and how to invoke it."""

    name: str  # "dhclient", "udhcpc" or "dhcpcd"
    argv: tuple[str, ...]  # ("<root>/usr/sbin/dhclient",), ("<root>/bin/busybox", "udhcpc")
    # dhcpcd only: timeout(1), which bounds it (in the foreground dhcpcd
    # ignores its own timeout, and a SIGKILLed dhcpcd leaves its privsep
    # helpers running, so a SIGTERM must come first).
    timeout: Optional[str] = None

    @property
    def fast(self) -> bool:
        """This module can run it itself (no start delay, bounded in time)."""
        if self.name == "dhcpcd":
            return self.timeout is not None
        return self.name in FAST_CLIENTS


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _busybox_has_udhcpc(path: Path) -> bool:
    """busybox keeps its applet names as one NUL-separated string."""
    try:
        return b"\0udhcpc\0" in path.read_bytes()
    except OSError:
        return False


def find_client(root: Path) -> Optional[ClientProgram]:
    """The DHCP client under ``root`` to use: dhclient, udhcpc, then dhcpcd.

    All three bind at once the way this module runs them. dhcpcd also needs
    timeout(1); without it it is reported but not ``fast``, and
    :class:`EphemeralDhcp` hands it to the fallback (cloud-init's helper).
    """
    root = Path(root)
    for rel in DHCLIENT_PATHS:
        if _executable(root / rel):
            return ClientProgram("dhclient", (str(root / rel),))
    for rel in UDHCPC_PATHS:
        if _executable(root / rel):
            return ClientProgram("udhcpc", (str(root / rel),))
    for rel in BUSYBOX_PATHS:
        if _executable(root / rel) and _busybox_has_udhcpc(root / rel):
            return ClientProgram("udhcpc", (str(root / rel), "udhcpc"))
    for rel in DHCPCD_PATHS:
        if _executable(root / rel):
            timeout = next((str(root / t) for t in TIMEOUT_PATHS if _executable(root / t)),
                           None)
            return ClientProgram("dhcpcd", (str(root / rel),), timeout)
    return None


def choose_client(root: Path) -> Optional[str]:
    """Name of the client :func:`find_client` picks, or None."""
    client = find_client(root)
    return client.name if client else None


# ---------------------------------------------------------------- NIC ----


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _link_basename(path: Path) -> Optional[str]:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _mac_key(mac: str) -> str:
    return re.sub(r"[^0-9a-f]", "", mac.lower())


def _eligible(entry: Path) -> Optional[str]:
    """The NIC's MAC when it may carry the ephemeral lease, else None.

    Skips loopback, devices without a MAC, bridges/bonds/VLANs, enslaved
    devices, ``veth*`` names (not the veth driver: the simulator's eth0 is a
    veth) and accelerated-networking VFs (mlx4/mlx5/mana drivers).
    """
    name = entry.name
    if name == "lo" or name.startswith("veth"):
        return None
    mac = (_read(entry / "address") or "").lower()
    if not mac or _mac_key(mac).strip("0") == "":
        return None
    if (_read(entry / "type") or "1") != "1":  # ARPHRD_ETHER only
        return None
    if (entry / "bridge").exists() or (entry / "bonding").exists():
        return None
    uevent = _read(entry / "uevent") or ""
    devtype = re.search(r"^DEVTYPE=(\S+)", uevent, flags=re.MULTILINE)
    if devtype and devtype.group(1) in _VIRTUAL_DEVTYPES:
        return None
    if os.path.lexists(entry / "master"):
        return None
    if _link_basename(entry / "device" / "driver") in VF_DRIVERS:
        return None
    return mac


def primary_nic(sys_class_net: Path, preferred_mac: Optional[str] = None) -> Optional[str]:
    """The NIC for ephemeral DHCP: ``preferred_mac`` if eligible, else the first by name.

    A VF shares its MAC with the synthetic NIC, so the MAC is matched among
    eligible NICs only.
    """
    try:
        entries = sorted(Path(sys_class_net).iterdir(), key=lambda p: p.name)
    except OSError:
        return None
    candidates = [(e.name, mac) for e in entries if (mac := _eligible(e))]
    if preferred_mac:
        want = _mac_key(preferred_mac)
        for name, mac in candidates:
            if _mac_key(mac) == want:
                return name
    return candidates[0][0] if candidates else None


def link_is_up(sys_class_net: Path, nic: str) -> Optional[bool]:
    """Administrative state (IFF_UP in ``flags``); None when sysfs cannot say."""
    text = _read(Path(sys_class_net) / nic / "flags")
    try:
        return bool(int(text or "", 16) & IFF_UP)
    except ValueError:
        return None


# ------------------------------------------------------ command lines ----


def dhclient_config(timeout: float = DEFAULT_TIMEOUT) -> str:
    """A private dhclient.conf: options 121 and 245 requested, nothing else.

    A private file also keeps the image's ``send``/``supersede`` lines and
    hooks out of a lease that only lives for the datasource's requests.
    """
    return (
        "# cloudinit-azure ephemeral DHCP (init-local); removed after use\n"
        "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n"
        f"option {WIRESERVER_OPTION} code 245 = ip-address;\n"
        f"timeout {max(1, int(timeout))};\n"
        "initial-interval 1;\n"
        "request subnet-mask, broadcast-address, time-offset, routers,\n"
        "        domain-name, domain-name-servers, host-name, interface-mtu,\n"
        f"        rfc3442-classless-static-routes, {WIRESERVER_OPTION};\n"
    )


def dhclient_command(nic: str, lease_file: str, pid_file: str, config_file: str,
                     prog: Sequence[str] = ("dhclient",)) -> list[str]:
    """One try (``-1``), no script (``-sf /bin/true``): dhclient configures nothing."""
    return [*prog, "-1", "-v", "-cf", config_file, "-lf", lease_file, "-pf", pid_file,
            "-sf", NOOP_SCRIPT, nic]


def _lease_dump_script(out_file: str, fields: Sequence[str], event_var: str,
                       events: str) -> str:
    """A client script that records the lease fields on ``events`` and configures nothing."""
    lines = "\n".join(f"    printf '%s=%s\\n' {f} \"${f}\"" for f in fields)
    out = shlex.quote(out_file)
    return (
        "#!/bin/sh\n"
        "# cloudinit-azure ephemeral DHCP: record the lease, configure nothing.\n"
        f'case "${event_var}" in\n'
        f"{events})\n"
        "  {\n"
        f"{lines}\n"
        f"  }} > {out}.tmp && mv -f {out}.tmp {out}\n"
        "  ;;\n"
        "esac\n"
        "exit 0\n"
    )


UDHCPC_FIELDS = ("interface", "ip", "subnet", "mask", "broadcast", "router", "dns",
                 "staticroutes", "opt245", "lease")


def udhcpc_script(out_file: str) -> str:
    """A udhcpc script that records the lease on bound/renew and does nothing else.

    udhcpc calls it with ``deconfig`` first; that must not touch the NIC.
    """
    return _lease_dump_script(out_file, UDHCPC_FIELDS, "1", "bound|renew")


def udhcpc_command(nic: str, script: str, prog: Sequence[str] = ("udhcpc",)) -> list[str]:
    """Foreground, exit after the lease (``-q``) or on failure (``-n``), never release."""
    return [*prog, "-i", nic, "-n", "-q", "-f", "-t", "3", "-T", "1",
            "-O", "121", "-O", "245", "-s", script]


def dhcpcd_config() -> str:
    """A private dhcpcd.conf (``-f``); each line checked on dhcpcd 9.4.1 (netns + dnsmasq).

    ``nodelay``: no RFC 2131 random start delay (0.9-1.9 s measured).
    ``noarp``: no ARP probe of the offered address (0.9-5 s measured); it
    also disables IPv4LL, ``noipv4ll`` says so again. ``clientid``: client
    id 01:<MAC> like udhcpc, so no DUID file is created. ``nodev``: do not
    wait for udev (we name the NIC). ``nolink``: no wait for a carrier event
    (0.5 s measured; :meth:`EphemeralDhcp._wait_for_carrier` polls the carrier
    first). ``persistent``: never deconfigure on
    exit (with ``--noconfigure`` there is nothing to deconfigure anyway).
    Option 245 needs a ``define`` to be requested and exported; the script
    then gets ``new_azure_wireserver=168.63.129.16``. The image's
    /etc/dhcpcd.conf (``duid``, hooks, ``slaac``) is not read.
    """
    return (
        "# cloudinit-azure ephemeral DHCP (init-local); removed after use\n"
        "ipv4only\n"
        "nodelay\n"
        "noarp\n"
        "noipv4ll\n"
        "nodev\n"
        "nolink\n"
        "persistent\n"
        "clientid\n"
        f"define 245 ipaddress {DHCPCD_WIRESERVER}\n"
        "option subnet_mask, broadcast_address, routers, domain_name_servers\n"
        f"option classless_static_routes, {DHCPCD_WIRESERVER}\n"
    )


DHCPCD_FIELDS = ("interface", "reason", "new_ip_address", "new_subnet_cidr",
                 "new_subnet_mask", "new_broadcast_address", "new_routers",
                 "new_classless_static_routes", "new_domain_name_servers",
                 f"new_{DHCPCD_WIRESERVER}", "new_dhcp_lease_time",
                 "new_dhcp_server_identifier")


def dhcpcd_script(out_file: str) -> str:
    """A dhcpcd ``-c`` script that records a bound lease and does nothing else.

    dhcpcd clears the environment (all but PATH) before running it, so the
    output path is written into the script. With ``--noconfigure`` dhcpcd
    calls it with PREINIT, CARRIER, then BOUND (REBOOT after an old lease;
    STOP/STOPPED when stopped); only a lease is recorded.
    """
    return _lease_dump_script(out_file, DHCPCD_FIELDS, "reason", "BOUND|REBOOT|RENEW|REBIND")


def dhcpcd_command(nic: str, config_file: str, script: str,
                   prog: Sequence[str] = ("dhcpcd",), timeout_prog: str = "timeout",
                   timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """Foreground (``-B``), exit once bound (``-1``), IPv4 only, configure nothing.

    ``-T`` is not used: it stops at the OFFER (no REQUEST/ACK, so the server
    has not leased the address). In the foreground dhcpcd never times out
    by itself (``-t`` only bounds the wait before forking), so timeout(1)
    sends SIGTERM, on which it stops cleanly, and SIGKILL only as a last
    resort.
    """
    return [timeout_prog, "-k", str(DHCPCD_KILL_AFTER), str(max(1, int(timeout))),
            *prog, "-f", config_file, "-c", script, "-B", "-1", "-4", "--noconfigure", nic]


def dhcpcd_version(text: str) -> Optional[tuple[int, int]]:
    """``dhcpcd --version`` output (``dhcpcd 9.4.1``) -> (9, 4)."""
    match = re.search(r"dhcpcd[ -](\d+)\.(\d+)", text or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def dhcpcd_sockets(root: Path, nic: str) -> tuple[Path, ...]:
    """Control sockets of a running dhcpcd that ours would talk to instead of binding.

    Verified on 9.4.1: with one for the NIC present, a second dhcpcd only
    prints "sending commands to dhcpcd process" and hands its arguments to
    the running one. 9.x: ``/run/dhcpcd/{sock,<nic>.sock,<nic>-4.sock}``;
    8.x and older: ``/run/dhcpcd[-<nic>[-4]].sock``.
    """
    run_dir = Path(root) / DHCPCD_RUN_DIR
    return tuple(
        [run_dir / n for n in ("sock", f"{nic}.sock", f"{nic}-4.sock")]
        + [Path(root) / "run" / n for n in ("dhcpcd.sock", f"dhcpcd-{nic}.sock",
                                            f"dhcpcd-{nic}-4.sock")])


def dhcpcd_lease_files(root: Path, nic: str) -> tuple[Path, ...]:
    """Where dhcpcd keeps the NIC's IPv4 lease (9.4.1: /var/lib/dhcpcd/<nic>.lease)."""
    return tuple(Path(root) / d / f"{nic}.lease" for d in DHCPCD_DB_DIRS)


def dhcpcd_run_files(root: Path, nic: str) -> tuple[Path, ...]:
    """What dhcpcd -4 creates in /run/dhcpcd while it runs (it removes them on exit)."""
    run_dir = Path(root) / DHCPCD_RUN_DIR
    return tuple(run_dir / f"{nic}-4.{s}" for s in ("pid", "sock", "unpriv.sock"))


# --------------------------------------------------------------- lease ----


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


# ----------------------------------------------------- lease -> ip(8) ----


@dataclass(frozen=True)
class Step:
    """One change to the NIC and the command that undoes it (None: leave it)."""

    up: Command
    down: Optional[Command]


def link_steps(nic: str, was_up: Optional[bool]) -> tuple[Step, ...]:
    """Bring the link up if it was down; take it down again only if we did.

    Unknown state (None): bring it up but never take it down.
    """
    if was_up:
        return ()
    down = None if was_up is None else ("ip", "link", "set", "dev", nic, "down")
    return (Step(("ip", "link", "set", "dev", nic, "up"), down),)


def lease_steps(lease: Lease, nic: str) -> tuple[Step, ...]:
    """Address, then routes; option 121 replaces option 3 (RFC 3442).

    With option 121 exactly its routes are added, on-link (``0.0.0.0``
    gateway) ones first so the others can reach their gateways, and no
    default route beyond what 121 lists. Without it: a host route to the
    router when it lies outside the subnet, then the default route.
    """
    cidr = f"{lease.address}/{lease.prefix}"
    addr_up = ("ip", "-4", "addr", "add", cidr)
    if lease.broadcast:
        addr_up += ("broadcast", lease.broadcast)
    steps = [Step(addr_up + ("dev", nic), ("ip", "-4", "addr", "del", cidr, "dev", nic))]
    if lease.routes:
        ordered = sorted(lease.routes, key=lambda r: r[1] != ON_LINK)
        for dst, gw in ordered:
            via = ("dev", nic) if gw == ON_LINK else ("via", gw, "dev", nic)
            steps.append(Step(("ip", "-4", "route", "add", dst) + via,
                              ("ip", "-4", "route", "del", dst) + via))
    elif lease.router:
        network = ipaddress.IPv4Interface(cidr).network
        if ipaddress.IPv4Address(lease.router) not in network:
            host = f"{lease.router}/32"
            steps.append(Step(("ip", "-4", "route", "add", host, "dev", nic),
                              ("ip", "-4", "route", "del", host, "dev", nic)))
        via = ("via", lease.router, "dev", nic)
        steps.append(Step(("ip", "-4", "route", "add", "default") + via,
                          ("ip", "-4", "route", "del", "default") + via))
    return tuple(steps)


def lease_to_commands(lease: Lease, nic: str, was_up: Optional[bool] = True
                      ) -> tuple[list[list[str]], list[list[str]]]:
    """``(up, down)``: ``down`` undoes ``up`` in reverse order."""
    steps = link_steps(nic, was_up) + lease_steps(lease, nic)
    up = [list(s.up) for s in steps]
    down = [list(s.down) for s in reversed(steps) if s.down is not None]
    return up, down


# ------------------------------------------------------------ executor ----


def _tail(text: Optional[str], size: int = STDERR_TAIL) -> str:
    text = (text or "").strip()
    return text[-size:]


Fallback = Callable[[str], "AbstractContextManager[Any]"]

_FileCopy = tuple[bytes, int, int, int]  # content, mode, uid, gid


@dataclass
class _DhcpcdFiles:
    """dhcpcd's own files, set aside before it runs and put back as they were.

    dhcpcd 9.4.1 has no option for its lease database: it writes
    ``/var/lib/dhcpcd/<nic>.lease`` (creating the directory) and, while it
    runs, ``/run/dhcpcd/<nic>-4.{pid,sock,unpriv.sock}``. An old lease file
    is also harmful before the run: dhcpcd then asks for that address first
    and, if the server ignores it, waits 5 s (measured) before DISCOVER. So
    an existing lease file is taken away before the run and written back
    afterwards; what dhcpcd created is removed (directories only if empty).
    A lease file that cannot be taken away is left to dhcpcd.
    """

    saved: dict[Path, _FileCopy]
    kept: frozenset[Path]  # existing lease files we could not move aside
    lease_files: tuple[Path, ...]
    new_files: tuple[Path, ...]  # run files that did not exist before
    new_dirs: tuple[Path, ...]  # directories that did not exist before

    @classmethod
    def hide(cls, root: Path, nic: str, log: logging.Logger) -> _DhcpcdFiles:
        saved: dict[Path, _FileCopy] = {}
        kept = set()
        leases = dhcpcd_lease_files(root, nic)
        for path in leases:
            try:
                st = path.stat()
                copy = (path.read_bytes(), st.st_mode & 0o7777, st.st_uid, st.st_gid)
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                log.warning("cannot set aside dhcpcd lease %s: %s", path, err)
                kept.add(path)
                continue
            saved[path] = copy
        dirs = [Path(root) / d for d in (*DHCPCD_DB_DIRS, DHCPCD_RUN_DIR)]
        return cls(saved, frozenset(kept), leases,
                   tuple(f for f in dhcpcd_run_files(root, nic) if not os.path.lexists(f)),
                   tuple(d for d in dirs if not os.path.lexists(d)))

    def restore(self, log: logging.Logger) -> None:
        """Never raises: each step is logged and skipped on error."""
        for path in self.lease_files:
            if path in self.kept:
                continue
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as err:
                log.warning("cannot remove dhcpcd lease %s: %s", path, err)
        for path, (data, mode, uid, gid) in self.saved.items():
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                    os.fchmod(out.fileno(), mode)
                    os.fchown(out.fileno(), uid, gid)
            except OSError as err:
                log.warning("cannot restore dhcpcd lease %s: %s", path, err)
        for path in self.new_files:
            try:
                path.unlink()
                log.info("removed %s left by dhcpcd", path)
            except FileNotFoundError:
                pass
            except OSError as err:
                log.warning("cannot remove %s: %s", path, err)
        for path in self.new_dirs:
            try:
                path.rmdir()
            except OSError:
                pass  # absent, or not empty: then not only ours


class EphemeralDhcp:
    """``with EphemeralDhcp("eth0") as lease:`` the NIC has the lease; afterwards it is gone.

    ``fallback(nic)`` returns a context manager yielding cloud-init's lease
    dict; it is used when the image has no client this module can run
    (none, dhcpcd without timeout(1) or older than 9.4, or a dhcpcd
    daemon already running for the NIC).
    ``root`` locates the client binaries, ``proc``/``sys`` and the default
    private directory (``<root>/run/cloudinit-azure``).
    """

    def __init__(self, nic: str, *, root: Path = Path("/"), runner: Runner = run,
                 tmp_dir: Optional[Path] = None, fallback: Optional[Fallback] = None,
                 clock: Callable[[], float] = time.monotonic,
                 log: Optional[logging.Logger] = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep,
                 kill: Callable[[int, int], None] = os.kill) -> None:
        self.nic = nic
        self.root = Path(root)
        self.runner = runner
        self.tmp_parent = Path(tmp_dir) if tmp_dir else self.root / "run" / "cloudinit-azure"
        self.fallback = fallback
        self.clock = clock
        self.log = log or LOG
        self.timeout = timeout
        self.sleep = sleep
        self.kill = kill
        self.lease: Optional[Lease] = None
        self._undo: list[Command] = []
        self._work: Optional[Path] = None
        self._pid_file: Optional[Path] = None
        self._fallback_cm: Optional[AbstractContextManager[Any]] = None
        self._dhcpcd_files: Optional[_DhcpcdFiles] = None

    # -- context manager --------------------------------------------------

    def __enter__(self) -> Lease:
        start = self.clock()
        client = find_client(self.root)
        why = self._unusable(client)
        if why is not None:
            lease = self._enter_fallback(client, why)
        else:
            assert client is not None
            try:
                lease = self._enter_client(client)
            except BaseException:
                self._cleanup()
                raise
        self.lease = replace(lease, seconds=self.clock() - start)
        self.log.info("ephemeral DHCP on %s: %s/%s via %s in %.3f s (wireserver %s)",
                      self.nic, lease.address, lease.prefix, lease.client,
                      self.lease.seconds, lease.wireserver or "not in lease")
        return self.lease

    def __exit__(self, *exc_info: Any) -> None:
        if self._fallback_cm is not None:
            cm, self._fallback_cm = self._fallback_cm, None
            try:
                cm.__exit__(*exc_info)
            except Exception as err:  # teardown must not hide the real outcome
                self.log.warning("fallback DHCP teardown failed: %s", err)
        self._cleanup()

    # -- fast clients -----------------------------------------------------

    def _unusable(self, client: Optional[ClientProgram]) -> Optional[str]:
        """Why this module cannot run ``client`` itself, or None."""
        if client is None:
            return "no DHCP client found"
        if not client.fast:
            return f"{client.name} found but no timeout(1) to bound it"
        if client.name != "dhcpcd":
            return None
        busy = [str(p) for p in dhcpcd_sockets(self.root, self.nic) if os.path.lexists(p)]
        if busy:
            return f"a dhcpcd is already running ({busy[0]})"
        try:
            result = self.runner([*client.argv, "--version"], check=False, timeout=5)
            version = dhcpcd_version(result.stdout + result.stderr)
        except (OSError, subprocess.SubprocessError) as err:
            return f"cannot run dhcpcd --version: {err}"
        if version is None or version < DHCPCD_MIN_VERSION:
            want = ".".join(map(str, DHCPCD_MIN_VERSION))
            have = ".".join(map(str, version)) if version else "unknown"
            return f"dhcpcd {have} is older than {want}"
        return None

    def _enter_client(self, client: ClientProgram) -> Lease:
        self.tmp_parent.mkdir(parents=True, exist_ok=True)
        self._work = Path(tempfile.mkdtemp(prefix=f"dhcp-{self.nic}.", dir=self.tmp_parent))
        for step in link_steps(self.nic, link_is_up(self.root / "sys/class/net", self.nic)):
            self._apply(step, client.name)
        self._wait_for_carrier()
        if client.name == "dhclient":
            lease = self._run_dhclient(client)
        elif client.name == "dhcpcd":
            lease = self._run_dhcpcd(client)
        else:
            lease = self._run_udhcpc(client)
        for step in lease_steps(lease, self.nic):
            self._apply(step, client.name)
        return lease

    def _wait_for_carrier(self, limit: float = 5.0) -> None:
        """Poll the NIC's carrier (1 ms steps) so the client can skip its own wait.

        dhcpcd waits for a carrier netlink event with a coarse timer (~0.5 s
        measured); we wait here and run it with ``nolink``. No carrier after
        ``limit`` seconds: go on, the client retries as usual.
        """
        carrier = self.root / "sys/class/net" / self.nic / "carrier"
        deadline = self.clock() + limit
        while self.clock() < deadline:
            try:
                if carrier.read_text().strip() == "1":
                    return
            except OSError:
                return  # no carrier file (not a real NIC in a test): nothing to wait for
            self.sleep(0.001)
        self.log.info("no carrier on %s after %.0f s; asking for a lease anyway",
                      self.nic, limit)

    def _run_client(self, cmd: list[str], client: str, margin: float = 5,
                    timed_out: tuple[int, ...] = ()) -> None:
        """Run the client; ``timed_out``: exit codes that mean timeout(1) stopped it."""
        self.log.debug("running %s", " ".join(cmd))
        try:
            result = self.runner(cmd, check=False, timeout=self.timeout + margin)
        except subprocess.TimeoutExpired:
            raise DhcpError(detail="DHCP client timed out", client=client, nic=self.nic,
                            timeout=self.timeout + margin) from None
        except OSError as err:
            raise DhcpError(detail="cannot run DHCP client", client=client, nic=self.nic,
                            error=str(err)) from None
        if result.returncode in timed_out:
            raise DhcpError(detail="DHCP client timed out", client=client, nic=self.nic,
                            timeout=self.timeout, exit_code=result.returncode,
                            stderr=_tail(result.stderr))
        if result.returncode != 0:
            raise DhcpError(client=client, nic=self.nic, exit_code=result.returncode,
                            stderr=_tail(result.stderr))
        if result.stderr.strip():
            self.log.debug("%s said: %s", client, _tail(result.stderr))

    def _run_dhclient(self, client: ClientProgram) -> Lease:
        assert self._work is not None
        conf, lease_file = self._work / "dhclient.conf", self._work / "dhclient.leases"
        self._pid_file = self._work / "dhclient.pid"
        conf.write_text(dhclient_config(self.timeout), encoding="utf-8")
        lease_file.write_text("", encoding="utf-8")
        self._run_client(dhclient_command(self.nic, str(lease_file), str(self._pid_file),
                                          str(conf), client.argv), "dhclient")
        # dhclient forks into the background once bound; stop it now, before
        # anything else can fail, without releasing the lease (SIGTERM = -x).
        self._stop_dhclient(wait=True)
        return parse_dhclient_lease(lease_file.read_text(encoding="utf-8"), self.nic)

    def _run_udhcpc(self, client: ClientProgram) -> Lease:
        assert self._work is not None
        script, dump = self._work / "udhcpc.script", self._work / "udhcpc.lease"
        script.write_text(udhcpc_script(str(dump)), encoding="utf-8")
        os.chmod(script, 0o700)
        self._run_client(udhcpc_command(self.nic, str(script), client.argv), "udhcpc")
        try:
            text = dump.read_text(encoding="utf-8")
        except OSError:
            raise DhcpError(detail="udhcpc wrote no lease", client="udhcpc",
                            nic=self.nic) from None
        return parse_udhcpc_dump(text, self.nic)

    def _run_dhcpcd(self, client: ClientProgram) -> Lease:
        assert self._work is not None and client.timeout is not None
        conf, script = self._work / "dhcpcd.conf", self._work / "dhcpcd.script"
        dump = self._work / "dhcpcd.lease"
        conf.write_text(dhcpcd_config(), encoding="utf-8")
        script.write_text(dhcpcd_script(str(dump)), encoding="utf-8")
        os.chmod(script, 0o700)
        cmd = dhcpcd_command(self.nic, str(conf), str(script), client.argv, client.timeout,
                             self.timeout)
        self._dhcpcd_files = _DhcpcdFiles.hide(self.root, self.nic, self.log)
        try:
            # timeout(1) exits 124 after its SIGTERM, 137 after its SIGKILL.
            self._run_client(cmd, "dhcpcd", margin=DHCPCD_KILL_AFTER + 5,
                             timed_out=(124, 137))
        finally:
            self._await_dhcpcd_exit()
            self._restore_dhcpcd_files()
        try:
            text = dump.read_text(encoding="utf-8")
        except OSError:
            raise DhcpError(detail="dhcpcd wrote no lease", client="dhcpcd",
                            nic=self.nic) from None
        return parse_dhcpcd_dump(text, self.nic)

    def _await_dhcpcd_exit(self) -> None:
        """dhcpcd's helpers remove its pid file and sockets as they exit.

        Measured: gone by the time the main process has exited; a short
        wait covers a slow helper before they are removed for it.
        """
        files = self._dhcpcd_files
        if files is None:
            return
        deadline = self.clock() + DHCPCD_EXIT_WAIT
        while left := [str(f) for f in files.new_files if os.path.lexists(f)]:
            if self.clock() >= deadline:
                self.log.warning("dhcpcd left %s behind: removing", ", ".join(left))
                return
            self.sleep(0.01)

    def _restore_dhcpcd_files(self) -> None:
        files, self._dhcpcd_files = self._dhcpcd_files, None
        if files is not None:
            files.restore(self.log)

    def _ours(self, pid: int) -> bool:
        """The process runs with our private pid file path: not a reused pid."""
        assert self._pid_file is not None
        try:
            cmdline = (self.root / "proc" / str(pid) / "cmdline").read_bytes()
        except OSError:
            return False
        return str(self._pid_file).encode() in cmdline.split(b"\0")

    def _dhclient_pid(self, wait: bool) -> Optional[int]:
        assert self._pid_file is not None
        deadline = self.clock() + (PID_WAIT if wait else 0.0)
        while True:
            text = _read(self._pid_file)
            if text and text.isdigit():
                return int(text)
            if self.clock() >= deadline:
                break
            self.sleep(0.01)
        # No pid file: look for our dhclient by its private pid file path.
        for cmdline in (self.root / "proc").glob("[0-9]*/cmdline"):
            pid = int(cmdline.parent.name)
            if self._ours(pid):
                return pid
        return None

    def _stop_dhclient(self, wait: bool = False) -> None:
        if self._pid_file is None:
            return
        pid = self._dhclient_pid(wait)
        if pid is None:
            self.log.debug("no dhclient process left to stop")
            self._pid_file = None
            return
        if not self._ours(pid):
            self.log.warning("pid %s is not our dhclient: not killed", pid)
            self._pid_file = None
            return
        try:
            self.kill(pid, signal.SIGTERM)
            self.log.debug("stopped dhclient pid %s (lease kept)", pid)
        except ProcessLookupError:
            pass
        except OSError as err:
            self.log.warning("cannot stop dhclient pid %s: %s", pid, err)
        self._pid_file = None

    # -- ip(8) ------------------------------------------------------------

    def _apply(self, step: Step, client: str) -> None:
        """Run one change; remember its undo. 'File exists' = not ours: no undo."""
        try:
            result = self.runner(list(step.up), check=False, timeout=self.timeout)
        except (OSError, subprocess.SubprocessError) as err:
            raise DhcpError(detail=f"{' '.join(step.up)} failed", client=client,
                            nic=self.nic, error=str(err)) from None
        if result.returncode == 0:
            if step.down is not None:
                self._undo.append(step.down)
            return
        if "File exists" in (result.stderr or ""):
            self.log.info("%s: already present, left in place", " ".join(step.up))
            return
        raise DhcpError(detail=f"{' '.join(step.up)} failed", client=client, nic=self.nic,
                        exit_code=result.returncode, stderr=_tail(result.stderr))

    def _cleanup(self) -> None:
        """Undo in reverse, stop the daemon, remove the private dir; never raises."""
        while self._undo:
            cmd = self._undo.pop()
            try:
                result = self.runner(list(cmd), check=False, timeout=self.timeout)
                if result.returncode != 0:
                    self.log.warning("%s exited %s: %s", " ".join(cmd), result.returncode,
                                     _tail(result.stderr))
            except Exception as err:
                self.log.warning("%s failed: %s", " ".join(cmd), err)
        try:
            self._stop_dhclient()
        except Exception as err:
            self.log.warning("stopping dhclient failed: %s", err)
        self._restore_dhcpcd_files()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    # -- fallback ---------------------------------------------------------

    def _enter_fallback(self, client: Optional[ClientProgram], why: str) -> Lease:
        found = client.name if client else "none"
        if self.fallback is None:
            data = {"why": why} if client else {}
            raise DhcpError(detail="no usable DHCP client and no fallback",
                            client=found, nic=self.nic, **data)
        self.log.info("ephemeral DHCP on %s: %s, using the fallback", self.nic, why)
        cm = self.fallback(self.nic)
        try:
            value = cm.__enter__()
        except DhcpError:
            raise
        except Exception as err:
            raise DhcpError(detail="fallback DHCP failed", client=found, nic=self.nic,
                            error=f"{type(err).__name__}: {err}") from None
        self._fallback_cm = cm
        try:
            if not value:
                raise DhcpError(detail="fallback DHCP returned no lease", client=found,
                                nic=self.nic)
            return lease_from_dict(value, self.nic)
        except BaseException:
            self._fallback_cm = None
            cm.__exit__(None, None, None)
            raise
