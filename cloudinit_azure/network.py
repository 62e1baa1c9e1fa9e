"""Routes to the platform, stable NIC names, host name publishing.

The core of the ``azure_network`` config module. Parsers and config edits are
pure functions; everything that touches the machine takes ``root`` (every
path is joined to it) and a ``runner`` for programs, so tests and the
simulator point it elsewhere. Nothing here ever releases a DHCP lease or
takes a link down: publishing the host name must not cut the VM off the
network it was just provisioned on.

Run as ``python3 -m cloudinit_azure.network publish`` by the optional
host name watcher (a systemd path unit on /etc/hostname).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from cloudinit_azure import atomic
from cloudinit_azure.report import ProvisioningError
from cloudinit_azure.runner import Runner, run

LOG = logging.getLogger(__name__)

DEFAULT_WIRESERVER = "168.63.129.16"
IMDS_ADDRESS = "169.254.169.254"
SYNTHETIC_DRIVER = "hv_netvsc"
# Accelerated networking: the SR-IOV VF shares the synthetic NIC's MAC.
VF_DRIVERS = frozenset({"mlx4_core", "mlx4_en", "mlx5_core", "mana"})

# -------------------------------------------------------------- routes ----


@dataclass(frozen=True)
class Route:
    """A host route to a platform endpoint."""

    destination: str  # "168.63.129.16/32"
    gateway: str
    interface: Optional[str] = None

    def v2(self) -> dict[str, str]:
        """As a network config v2 ``routes:`` item (persisted by the renderer)."""
        return {"to": self.destination, "via": self.gateway}

    def command(self) -> list[str]:
        """``ip route replace``: idempotent, never touches the link."""
        cmd = ["ip", "route", "replace", self.destination, "via", self.gateway]
        if self.interface:
            cmd += ["dev", self.interface]
        return cmd


def _rfc3442(octets: Sequence[int]) -> list[tuple[str, str]]:
    """Decode option 121 bytes; stops at the first truncated or bad entry."""
    routes: list[tuple[str, str]] = []
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


def _split_statements(block: str) -> Iterable[tuple[str, str]]:
    for stmt in block.split(";"):
        stmt = " ".join(stmt.split())
        if not stmt:
            continue
        if stmt.startswith("option "):
            stmt = stmt[len("option "):]
        key, _, val = stmt.partition(" ")
        yield key, val


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
        blocks = [(b, dict(_split_statements(b)))
                  for b in re.findall(r"lease\s*\{(.*?)\}", text, flags=re.DOTALL)]
        if interface:
            blocks = [(b, x) for b, x in blocks
                      if x.get("interface", "").strip('"') in ("", interface)]
        if not blocks:
            return _normalize(interface, None, "", None, "")
        block, lease = blocks[-1]
        classless = lease.get("rfc3442-classless-static-routes") or lease.get(
            "unknown-121") or lease.get("classless-static-routes")
        return _normalize(
            lease.get("interface", "").strip('"') or interface,
            lease.get("fixed-address"), lease.get("routers", ""), classless, block,
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


def lease_gateway(lease: Mapping[str, Any]) -> Optional[str]:
    """The lease's router, or option 121's default route when option 3 is absent."""
    routers = lease.get("routers") or []
    if routers:
        return routers[0]
    for dst, gw in lease.get("classless_routes") or []:
        if dst == "0.0.0.0/0":
            return gw
    return None


def _covered(target: str, classless: Iterable[tuple[str, str]]) -> bool:
    """A specific (non-default) option 121 route reaches ``target``."""
    addr = ipaddress.IPv4Address(target)
    for dst, _gw in classless:
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0 and addr in net:
            return True
    return False


def platform_routes(lease: Mapping[str, Any], wireserver: str,
                    imds: str = IMDS_ADDRESS,
                    interface: Optional[str] = None) -> list[Route]:
    """Host routes to the wireserver and IMDS that the lease does not already give.

    Azure's DHCP sends option 121 routes for both; when they are missing (a
    client that ignores 121, a custom DHCP config) the platform is only
    reachable through the default route, which a VPN or a second NIC can
    steal. A default route in option 121 does not count as covering.
    """
    gateway = lease_gateway(lease)
    if not gateway:
        return []
    classless = list(lease.get("classless_routes") or [])
    dev = interface or lease.get("interface")
    out = []
    for target in dict.fromkeys([wireserver, imds]):
        if not _covered(target, classless):
            out.append(Route(f"{target}/32", gateway, dev))
    return out


def parse_default_gateway(ip_route_output: str) -> Optional[str]:
    """``ip -4 route show default`` -> the first ``via`` (for clients without lease files)."""
    match = re.search(r"^default\s+via\s+(\S+)", ip_route_output, flags=re.MULTILINE)
    return match.group(1) if match else None


def _try_run(runner: Runner, cmd: Sequence[str], log: logging.Logger) -> Optional[Any]:
    """Run without raising: a missing program is a log line, not a crash."""
    try:
        result = runner(list(cmd), check=False)
    except (OSError, ValueError) as err:
        log.warning("cannot run %s: %s", cmd[0], err)
        return None
    except Exception as err:  # timeouts and the like: never crash the boot
        log.warning("%s failed: %s", " ".join(cmd), err)
        return None
    if result.returncode != 0:
        log.warning("%s exited %s: %s", " ".join(cmd), result.returncode,
                    (result.stderr or "").strip())
    return result


def apply_routes(routes: Iterable[Route], runner: Runner,
                 log: logging.Logger = LOG) -> list[Route]:
    """Install ``routes`` now; returns the ones that succeeded."""
    done = []
    for route in routes:
        result = _try_run(runner, route.command(), log)
        if result is not None and result.returncode == 0:
            log.info("route %s via %s added", route.destination, route.gateway)
            done.append(route)
    return done


# ---------------------------------------------------------------- NICs ----


@dataclass(frozen=True)
class Nic:
    name: str
    mac: str
    driver: Optional[str]
    is_vf: bool
    master: Optional[str]
    ifindex: int = 0


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _link_name(path: Path) -> Optional[str]:
    """Basename of a sysfs symlink; works for dangling links in fake trees."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def classify_nics(sys_class_net: Path) -> list[Nic]:
    """Ethernet NICs under ``sys_class_net`` in ifindex order, VFs flagged.

    A VF is a non-synthetic NIC that shares its MAC with an ``hv_netvsc`` NIC
    or is enslaved to one; it must never get IP configuration. Loopback and
    devices without a MAC are left out; virtual devices (veth) have no
    ``device/driver`` and get driver None.
    """
    raw = []
    try:
        entries = sorted(p for p in Path(sys_class_net).iterdir())
    except OSError:
        return []
    for entry in entries:
        mac = (_read(entry / "address") or "").lower()
        if not mac or mac.strip("0:") == "":
            continue
        if (_read(entry / "type") or "1") != "1":  # ARPHRD_ETHER only
            continue
        ifindex = _read(entry / "ifindex")
        raw.append((
            int(ifindex) if ifindex and ifindex.isdigit() else 1 << 30,
            entry.name, mac, _link_name(entry / "device" / "driver"),
            _link_name(entry / "master"),
        ))
    raw.sort()
    synthetic = {(mac, name) for _i, name, mac, drv, _m in raw if drv == SYNTHETIC_DRIVER}
    synthetic_macs = {mac for mac, _n in synthetic}
    synthetic_names = {name for _m, name in synthetic}
    nics = []
    for ifindex, name, mac, driver, master in raw:
        is_vf = driver != SYNTHETIC_DRIVER and (
            mac in synthetic_macs or (master in synthetic_names)
        )
        nics.append(Nic(name, mac, driver, is_vf, master, ifindex))
    return nics


def names_by_mac(sys_class_net: Path) -> dict[str, str]:
    """``{mac: current name}`` of the NICs that may carry IP config (no VFs)."""
    out: dict[str, str] = {}
    for nic in classify_nics(sys_class_net):
        if not nic.is_vf:
            out.setdefault(nic.mac, nic.name)
    return out


def primary_nic(nics: Iterable[Nic], mac: Optional[str] = None) -> Optional[Nic]:
    """The NIC with ``mac`` (IMDS's first interface), else the first non-VF NIC."""
    candidates = [n for n in nics if not n.is_vf]
    if mac:
        want = re.sub(r"[^0-9a-f]", "", mac.lower())
        for nic in candidates:
            if nic.mac.replace(":", "") == want:
                return nic
    return candidates[0] if candidates else None


PERSISTENT_NET_GENERATOR = "etc/udev/rules.d/75-persistent-net-generator.rules"


def mask_persistent_net_rules(root: Path, log: logging.Logger = LOG) -> bool:
    """Mask udev's persistent-net generator; True when it is masked on return.

    Old distros pin ``eth0`` to the first MAC they see; on Azure the MAC
    changes on resize/redeploy and the NIC comes up as ``eth1`` with no
    config. Masking (a ``/dev/null`` link) never deletes a distro file: a
    real file already there is the image author's choice and stays.
    """
    path = Path(root) / PERSISTENT_NET_GENERATOR
    if path.is_symlink():
        if os.readlink(path) == "/dev/null":
            return True
        log.info("%s is a link to %s: left alone", path, os.readlink(path))
        return False
    if path.exists():
        log.info("%s exists: left alone", path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/null")
    log.info("masked %s", path)
    return True


# ----------------------------------------------------------- host name ----

DHCP_CLIENTS = ("networkmanager", "networkd", "dhcpcd", "dhclient", "udhcpc")
_PROCESS_NAMES = {
    "NetworkManager": "networkmanager",
    "systemd-network": "networkd",  # comm is truncated to 15 characters
    "systemd-networkd": "networkd",
    "dhcpcd": "dhcpcd",
    "dhclient": "dhclient",
    "udhcpc": "udhcpc",
}
_LEASE_EVIDENCE = (
    ("networkmanager", "var/lib/NetworkManager/*.lease"),
    ("networkd", "run/systemd/netif/leases/*"),
    ("dhcpcd", "var/lib/dhcpcd/*.lease"),
    ("dhclient", "var/lib/dhcp/dhclient*.leases"),
    ("dhclient", "var/lib/dhclient/*.lease*"),
)
_BINARIES = (
    ("dhclient", ("sbin/dhclient", "usr/sbin/dhclient")),
    ("dhcpcd", ("sbin/dhcpcd", "usr/sbin/dhcpcd")),
)


def running_clients(root: Path) -> set[str]:
    """DHCP clients with a live process, from ``<root>/proc/*/comm``."""
    found = set()
    for comm in Path(root).glob("proc/[0-9]*/comm"):
        kind = _PROCESS_NAMES.get(_read(comm) or "")
        if kind:
            found.add(kind)
    return found


def detect_dhcp_client(root: Path) -> Optional[str]:
    """Which DHCP client manages the NICs: a running one, else lease files, else binaries.

    NetworkManager first because it may run dhclient as its own helper.
    """
    root = Path(root)
    running = running_clients(root)
    for kind in DHCP_CLIENTS:
        if kind in running:
            return kind
    for kind, pattern in _LEASE_EVIDENCE:
        if any(root.glob(pattern)):
            return kind
    for kind, paths in _BINARIES:
        if any((root / p).exists() for p in paths):
            return kind
    return None


_SEND_HOSTNAME = re.compile(r"^([ \t]*)send[ \t]+host-name\b[^;\n]*;[ \t]*$", re.MULTILINE)


def ensure_dhclient_hostname(text: str, hostname: Optional[str] = None) -> str:
    """dhclient.conf that sends the host name (``gethostname()`` unless given).

    Existing ``send host-name`` statements are rewritten in place; none
    means one line is appended. Applying it twice changes nothing.
    """
    value = f'"{hostname}"' if hostname else "= gethostname()"
    line = f"send host-name {value};"
    if _SEND_HOSTNAME.search(text):
        return _SEND_HOSTNAME.sub(lambda m: m.group(1) + line, text)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "# cloudinit-azure: publish the host name to Azure DNS\n" + line + "\n"


_DHCPCD_HOSTNAME = re.compile(r"^([ \t]*)hostname([ \t][^\n#]*)?$", re.MULTILINE)


def ensure_dhcpcd_hostname(text: str, hostname: Optional[str] = None) -> str:
    """dhcpcd.conf with a ``hostname`` option (bare = the current host name)."""
    line = f"hostname {hostname}" if hostname else "hostname"
    if _DHCPCD_HOSTNAME.search(text):
        return _DHCPCD_HOSTNAME.sub(lambda m: m.group(1) + line, text)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + "# cloudinit-azure: publish the host name to Azure DNS\n" + line + "\n"


def networkd_dropin(hostname: Optional[str]) -> str:
    """Drop-in for the NIC's .network file: send the host name with DHCPv4."""
    text = "# cloudinit-azure: publish the host name to Azure DNS\n[DHCPv4]\nSendHostname=yes\n"
    if hostname:
        text += f"Hostname={hostname}\n"
    return text


NETWORKD_DROPIN = "50-azure-hostname.conf"
_NETWORK_DIRS = ("etc/systemd/network", "run/systemd/network", "usr/lib/systemd/network",
                 "lib/systemd/network")


def parse_network_file(networkctl_status: str) -> Optional[str]:
    """``networkctl status <nic>`` -> the path after ``Network File:``."""
    match = re.search(r"Network File:\s*(\S+)", networkctl_status)
    return match.group(1) if match and match.group(1) != "n/a" else None


def find_network_file(root: Path, nic: str, mac: Optional[str] = None) -> Optional[str]:
    """The basename of the .network file whose [Match] names ``nic`` or its MAC.

    A fallback for when networkctl cannot say; first in systemd's lexical order.
    """
    files: dict[str, Path] = {}
    for d in _NETWORK_DIRS:
        for path in sorted((Path(root) / d).glob("*.network")):
            files.setdefault(path.name, path)
    for name in sorted(files):
        text = _read(files[name]) or ""
        for key, val in re.findall(r"^\s*(Name|MACAddress)\s*=\s*(.+?)\s*$", text, re.M):
            values = val.lower().split()
            if (key == "Name" and nic.lower() in values) or (
                    key == "MACAddress" and mac and mac.lower() in values):
                return name
    return None


def write_if_changed(path: Path, text: str, mode: Optional[int] = None) -> bool:
    """Idempotent atomic write: True when the file was created or changed.

    An existing file keeps its mode; a new one gets ``mode`` (default 0644).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_file(path, text, mode=mode, if_changed=True)


def _read_raw(path: Path) -> Optional[str]:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def hostname_from(value: Any) -> Optional[str]:
    """Short host name from cloud-init's ``get_hostname()`` result or a string."""
    if value is None:
        return None
    name = getattr(value, "hostname", None)
    if name is None and isinstance(value, (tuple, list)):
        name = value[0] if value else None
    if name is None:
        name = value
    if not isinstance(name, str) or not name.strip():
        return None
    return name.strip().split(".")[0]


def configured_hostname(cfg: Mapping[str, Any],
                        get_hostname: Optional[Callable[[], Any]] = None) -> Optional[str]:
    """The host name cloud-init set: ``hostname``/``fqdn`` in config, else the datasource's."""
    if cfg.get("hostname") or cfg.get("fqdn"):
        return hostname_from(cfg.get("hostname") or cfg.get("fqdn"))
    if get_hostname is None:
        return None
    try:
        return hostname_from(get_hostname())
    except Exception:  # a datasource without a host name: the live one is sent
        LOG.debug("datasource gave no host name", exc_info=True)
        return None


def check_hostname(name: str) -> str:
    """The RFC 1123 check of the account module: keeps quotes, spaces and
    newlines out of the config files and DHCP option 12 we write."""
    from cloudinit_azure.account import validate_hostname

    return validate_hostname(name)


@dataclass(frozen=True)
class PublishResult:
    client: Optional[str]
    files_changed: tuple[str, ...] = ()
    renewed: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


def _dhclient_oneshot(root: Path, nic: str, conf: Path, runner: Runner,
                      log: logging.Logger) -> bool:
    """Send one DHCPREQUEST carrying the host name without touching the NIC.

    A second dhclient with its own pid and lease files and ``-sf /bin/true``
    (no script: the address, routes and DNS stay as they are) asks for the
    current address (INIT-REBOOT from a copy of the current lease), then is
    stopped with ``-x`` (stop without release). ``dhclient -r`` would
    release the lease: never used.
    """
    work = Path(root) / "run" / "cloudinit-azure"
    work.mkdir(parents=True, exist_ok=True)
    lease_file, pid_file = work / f"dhclient.{nic}.leases", work / f"dhclient.{nic}.pid"
    current = _newest_dhclient_lease_text(root, nic)
    lease_file.write_text(current or "", encoding="utf-8")
    base = ["dhclient", "-pf", str(pid_file), "-lf", str(lease_file), "-sf", "/bin/true"]
    if conf.exists():
        base[1:1] = ["-cf", str(conf)]
    result = _try_run(runner, [*base[:1], "-1", "-v", *base[1:], nic], log)
    if not _stop_own_dhclient(root, pid_file, log):
        # `dhclient -x` also stops it without a release, but polls for a second.
        _try_run(runner, [*base[:1], "-x", *base[1:]], log)
    return bool(result is not None and result.returncode == 0)


_kill = os.kill  # the one process we may signal: our own one-shot dhclient


def _stop_own_dhclient(root: Path, pid_file: Path, log: logging.Logger) -> bool:
    """SIGTERM (no release) the one-shot dhclient, if its pid file names it.

    Only a process whose command line carries our private pid file is
    signalled, so a reused pid is never hit.
    """
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = (Path(root) / "proc" / str(pid) / "cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    if str(pid_file).encode() not in cmdline.split(b"\0"):
        return False
    try:
        _kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    log.debug("stopped the one-shot dhclient (pid %d) without a release", pid)
    return True


def _lease_files(root: Path) -> list[Path]:
    patterns = ("var/lib/dhcp/dhclient*.leases", "var/lib/dhclient/*.lease*",
                "var/lib/NetworkManager/dhclient-*.lease")
    files = [p for pat in patterns for p in Path(root).glob(pat) if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime, str(p)))


def _newest_dhclient_lease_text(root: Path, nic: str) -> Optional[str]:
    best = None
    for path in _lease_files(root):
        text = _read_raw(path) or ""
        for block in re.findall(r"lease\s*\{.*?\}", text, flags=re.DOTALL):
            iface = re.search(r'interface\s+"([^"]+)"', block)
            if (iface and iface.group(1) == nic) or (not iface and nic in path.name):
                best = block
    return best + "\n" if best else None


def publish_hostname(root: Path, nic: str, hostname: Optional[str], runner: Runner,
                     log: logging.Logger = LOG, client: Optional[str] = None,
                     mac: Optional[str] = None) -> PublishResult:
    """Make the OS DHCP client send ``hostname`` and renew without dropping the address.

    An unknown client is a warning; a missing program is a log line.
    """
    root = Path(root)
    client = client or detect_dhcp_client(root)
    changed: list[str] = []
    notes: list[str] = []
    renewed = False
    if client is None:
        # A missing client is a fact of the image, not a fault: a log line.
        log.info("no known DHCP client found: host name not published to Azure DNS")
        return PublishResult(None, notes=("no DHCP client",))
    if client == "dhclient":
        conf = root / "etc" / "dhcp" / "dhclient.conf"
        if write_if_changed(conf, ensure_dhclient_hostname(_read_raw(conf) or "")):
            changed.append(str(conf))
        renewed = _dhclient_oneshot(root, nic, conf, runner, log)
    elif client == "dhcpcd":
        conf = root / "etc" / "dhcpcd.conf"
        if write_if_changed(conf, ensure_dhcpcd_hostname(_read_raw(conf) or "")):
            changed.append(str(conf))
        if "dhcpcd" in running_clients(root):
            # --rebind: re-read the config and REQUEST the same address.
            result = _try_run(runner, ["dhcpcd", "--rebind", nic], log)
            renewed = bool(result is not None and result.returncode == 0)
        else:
            notes.append("dhcpcd not running: takes effect at its next start")
    elif client == "networkd":
        status = _try_run(runner, ["networkctl", "--no-pager", "status", nic], log)
        path = parse_network_file(status.stdout) if status is not None else None
        name = os.path.basename(path) if path else find_network_file(root, nic, mac)
        if name is None:
            notes.append(f"no .network file for {nic}")
            log.warning("no systemd-networkd .network file matches %s", nic)
        else:
            dropin = root / "etc/systemd/network" / f"{name}.d" / NETWORKD_DROPIN
            if write_if_changed(dropin, networkd_dropin(hostname)):
                changed.append(str(dropin))
            # No `networkctl reload`: a changed file makes networkd reconfigure
            # the link, which stops its DHCP client (SendRelease=yes by
            # default). The drop-in applies from the next boot; the running
            # client already sends the live host name, so renew now.
            result = _try_run(runner, ["networkctl", "renew", nic], log)
            renewed = bool(result is not None and result.returncode == 0)
    elif client == "networkmanager":
        con = _try_run(runner, ["nmcli", "-g", "GENERAL.CONNECTION", "device", "show", nic], log)
        con_name = con.stdout.strip() if con is not None and con.returncode == 0 else ""
        if con_name:
            _try_run(runner, ["nmcli", "connection", "modify", con_name,
                              "ipv4.dhcp-send-hostname", "yes",
                              "ipv4.dhcp-hostname", hostname or ""], log)
            changed.append(f"nm:{con_name}")
        # `nmcli device reapply` is not documented to keep the lease: skip.
        notes.append("NetworkManager: not renewed now, sent at the next DHCP request")
        log.info("NetworkManager: host name set on %r; lease not renewed now", con_name)
    else:  # udhcpc takes the host name on its command line (-x hostname:NAME)
        notes.append(f"{client}: host name not configurable here")
        log.warning("%s: host name publishing not supported", client)
    return PublishResult(client, tuple(changed), renewed, tuple(notes))


# --------------------------------------------------- host name watcher ----

WATCH_UNIT = "azure-hostname-publish"


def watcher_units(python: str) -> dict[str, str]:
    """The systemd path unit on /etc/hostname and the oneshot it starts."""
    return {
        f"{WATCH_UNIT}.path": (
            "[Unit]\nDescription=Watch /etc/hostname to publish it to Azure DNS\n\n"
            "[Path]\nPathChanged=/etc/hostname\n"
            f"Unit={WATCH_UNIT}.service\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
        f"{WATCH_UNIT}.service": (
            "[Unit]\nDescription=Publish the host name to Azure DNS\n"
            "After=network-online.target\n\n"
            "[Service]\nType=oneshot\n"
            f"ExecStart={python} -m cloudinit_azure.network publish\n"
        ),
    }


def install_watcher(root: Path, python: Optional[str] = None) -> bool:
    """Write and enable (by link, no systemctl) the watcher units; True if changed."""
    unit_dir = Path(root) / "etc/systemd/system"
    changed = False
    for name, text in watcher_units(python or sys.executable or "/usr/bin/python3").items():
        changed |= write_if_changed(unit_dir / name, text)
    wants = unit_dir / "multi-user.target.wants" / f"{WATCH_UNIT}.path"
    if not wants.is_symlink():
        wants.parent.mkdir(parents=True, exist_ok=True)
        wants.symlink_to(f"/etc/systemd/system/{WATCH_UNIT}.path")
        changed = True
    return changed


# ------------------------------------------------ host key fingerprints ----


def host_key_thumbprint(public_key: str, algorithm: str = "sha1") -> str:
    """Hex digest of an OpenSSH public key's decoded blob (``type base64 [comment]``)."""
    parts = public_key.split()
    if len(parts) < 2:
        raise ValueError("not an OpenSSH public key")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise ValueError("public key is not valid base64") from None
    return hashlib.new(algorithm, blob, usedforsecurity=False).hexdigest().upper()


def render_role_properties(container_id: str, instance_id: str, thumbprint: str) -> bytes:
    """The legacy ``POST /machine?comp=roleProperties`` body."""
    text = (
        '<?xml version="1.0" encoding="utf-8"?>'
        "<RoleProperties><Container>"
        f"<ContainerId>{xml_escape(container_id)}</ContainerId>"
        "<RoleInstances><RoleInstance>"
        f"<Id>{xml_escape(instance_id)}</Id>"
        "<Properties>"
        f'<Property name="CertificateThumbprint" value={quoteattr(thumbprint)} />'
        "</Properties></RoleInstance></RoleInstances></Container></RoleProperties>"
    )
    return text.encode("utf-8")


HOST_KEY_PREFERENCE = ("rsa", "ecdsa", "ed25519")


def report_host_key(root: Path, post: Callable[[str, bytes], Any], container_id: str,
                    instance_id: str, key_type: Optional[str] = None,
                    log: logging.Logger = LOG) -> bool:
    """Send one host key's thumbprint with ``post(path, body)``; False if no key.

    ``key_type`` None takes the first host key present in the Azure Linux
    Agent's order of preference (rsa, then ecdsa, then ed25519): images that
    generate only some key types still report one.
    """
    for kind in (key_type,) if key_type else HOST_KEY_PREFERENCE:
        key = Path(root) / "etc/ssh" / f"ssh_host_{kind}_key.pub"
        text = _read(key)
        if text:
            body = render_role_properties(container_id, instance_id,
                                          host_key_thumbprint(text))
            post("/machine?comp=roleProperties", body)
            log.info("reported the %s host key's thumbprint to the wireserver", kind)
            return True
    log.info("no SSH host key (%s) found: host key fingerprint not reported",
             key_type or ", ".join(HOST_KEY_PREFERENCE))
    return False


def wireserver_role_properties(address: str, client: Any = None,
                               budget_s: float = 30.0) -> tuple[Callable[[str, bytes], Any],
                                                                str, str]:
    """``post`` over the project's wireserver client, and the goal state's ids."""
    from cloudinit_azure import wireserver as ws

    client = client or ws.WireserverClient(ws.wireserver_url(address), budget_s=budget_s)
    goal = client.goal_state()
    headers = {**ws.WIRESERVER_HEADERS, "Content-Type": ws.HEALTH_CONTENT_TYPE}

    def post(path: str, body: bytes) -> Any:
        return client.http.post(path, body, headers=headers)

    return post, goal.container_id, goal.instance_id


# ------------------------------------------------------- orchestration ----


@dataclass(frozen=True)
class Outcome:
    """What one run of the module did (for the log and the tests)."""

    masked: Optional[bool] = None
    routes: tuple[Route, ...] = ()
    published: Optional[PublishResult] = None
    watcher_changed: Optional[bool] = None
    key_reported: Optional[bool] = None


def find_lease(root: Path, client: Optional[str], nic: Nic, runner: Runner,
               log: logging.Logger = LOG) -> dict[str, Any]:
    """The current lease of ``nic`` from whatever client holds it."""
    root = Path(root)
    if client == "dhcpcd":
        dump = _try_run(runner, ["dhcpcd", "--dumplease", "--ipv4only", nic.name], log)
        lease = parse_lease(dump.stdout if dump is not None else "", "dhcpcd", nic.name)
        raw = root / "var/lib/dhcpcd" / f"{nic.name}.lease"
        if raw.is_file() and not lease["wireserver"]:
            opt = dhcp_packet_option(raw.read_bytes(), 245)
            if opt and len(opt) == 4:
                lease["wireserver"] = socket.inet_ntoa(opt)
        return lease
    if client in ("networkd", "networkmanager"):
        candidates = [root / "run/systemd/netif/leases" / str(nic.ifindex)]
        candidates += sorted(root.glob(f"var/lib/NetworkManager/internal-*-{nic.name}.lease"))
        for path in candidates:
            if path.is_file():
                return parse_lease(_read_raw(path) or "", "networkd", nic.name)
    text = _newest_dhclient_lease_text(root, nic.name)
    return parse_lease(text or "", "dhclient", nic.name)


def configure(settings: Mapping[str, Any], *, root: Path, runner: Runner,
              hostname: Optional[str] = None, wireserver: Optional[str] = None,
              primary_mac: Optional[str] = None,
              post: Optional[Callable[[str, bytes], Any]] = None,
              container_id: Optional[str] = None, instance_id: Optional[str] = None,
              python: Optional[str] = None,
              log: logging.Logger = LOG) -> Outcome:
    """Everything the ``azure_network`` module does, driven by its settings."""
    root = Path(root)
    masked = routes = published = watcher = reported = None
    if settings.get("mask_persistent_net_rules", True):
        masked = mask_persistent_net_rules(root, log)
    nic = primary_nic(classify_nics(root / "sys/class/net"), primary_mac)
    client = detect_dhcp_client(root)
    if nic is None:
        log.warning("no network interface found: routes and host name skipped")
    elif settings.get("platform_routes", {}).get("enabled", True):
        lease = find_lease(root, client, nic, runner, log)
        target = wireserver or lease.get("wireserver") or DEFAULT_WIRESERVER
        if not lease_gateway(lease):
            shown = _try_run(runner, ["ip", "-4", "route", "show", "default", "dev", nic.name],
                             log)
            gateway = parse_default_gateway(shown.stdout) if shown is not None else None
            lease = {**lease, "routers": [gateway] if gateway else []}
        wanted = platform_routes(lease, target, interface=nic.name)
        routes = tuple(apply_routes(wanted, runner, log))
    pub = settings.get("publish_hostname", {})
    if nic is not None and pub.get("enabled", True):
        name = None
        if hostname:
            try:
                name = check_hostname(hostname)
            except ProvisioningError as err:
                log.warning("%s: publishing the live host name instead", err)
        published = publish_hostname(root, nic.name, name, runner, log, client, nic.mac)
        if pub.get("watch", False):
            watcher = install_watcher(root, python)
            if watcher:
                _try_run(runner, ["systemctl", "daemon-reload"], log)
                _try_run(runner, ["systemctl", "start", "--no-block",
                                  f"{WATCH_UNIT}.path"], log)
    if settings.get("report_host_key_fingerprints", False):
        reported = False
        try:
            if post is None or not container_id or not instance_id:
                post, container_id, instance_id = wireserver_role_properties(
                    wireserver or DEFAULT_WIRESERVER)
            reported = report_host_key(root, post, container_id, instance_id,
                                       key_type=settings.get("host_key_type") or None,
                                       log=log)
        except ProvisioningError as err:  # optional feature: never fails the boot
            log.warning("host key fingerprint not reported: %s", err)
    return Outcome(masked, routes or (), published, watcher, reported)


def main(argv: Optional[Sequence[str]] = None, runner: Runner = run) -> int:
    """``python3 -m cloudinit_azure.network publish [--root DIR]``: the watcher's job."""
    parser = argparse.ArgumentParser(prog="python3 -m cloudinit_azure.network")
    parser.add_argument("command", choices=["publish"])
    parser.add_argument("--root", default="/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    root = Path(args.root)
    lines = (_read(root / "etc/hostname") or "").splitlines()
    name = hostname_from(lines[0] if lines else None)
    nic = primary_nic(classify_nics(root / "sys/class/net"))
    if nic is None:
        LOG.warning("no network interface found")
        return 1
    try:
        name = check_hostname(name) if name else None
    except ProvisioningError as err:
        LOG.warning("%s: publishing the live host name instead", err)
        name = None
    result = publish_hostname(root, nic.name, name, runner, LOG, mac=nic.mac)
    return 0 if result.client else 1


if __name__ == "__main__":
    sys.exit(main())
