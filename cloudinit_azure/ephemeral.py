"""Ephemeral DHCP on the primary NIC for cloud-init's init-local stage.

Before the OS network exists the datasource must reach IMDS and the
wireserver, so it brings the NIC up for a moment: one DHCP exchange, the
lease applied with ``ip``, and everything undone afterwards.

Why not cloud-init's own helper: with a DHCP server that answers at once,
dhclient binds in ~0.02 s and busybox udhcpc in ~0.09 s, but dhcpcd waits a
random 0.7-1.5 s (RFC 2131 start delay) that cloud-init does not turn off.
So the fast client the image has is used, and cloud-init's helper only as a
fallback (the datasource adapter passes it in).

The client never configures anything (dhclient ``-sf /bin/true``, a udhcpc
script that only records the lease): this module adds the address and routes
itself and remembers each command that succeeded, so teardown removes
exactly what was added, also after a partial setup. The lease is never
released (no ``dhclient -r``, no ``udhcpc -R``): the OS network will want it.

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

from cloudinit_azure.network import VF_DRIVERS, parse_classless_routes
from cloudinit_azure.report import DhcpError
from cloudinit_azure.runner import Runner, run
from cloudinit_azure.wireserver import parse_option_245

LOG = logging.getLogger(__name__)

FAST_CLIENTS = ("dhclient", "udhcpc")
DHCLIENT_PATHS = ("usr/sbin/dhclient", "sbin/dhclient")
UDHCPC_PATHS = ("usr/sbin/udhcpc", "sbin/udhcpc", "usr/bin/udhcpc")
BUSYBOX_PATHS = ("usr/bin/busybox", "bin/busybox")
DHCPCD_PATHS = ("usr/sbin/dhcpcd", "sbin/dhcpcd")
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

    @property
    def fast(self) -> bool:
        """Binds without a start delay, so this module runs it itself."""
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
    """The fastest DHCP client under ``root``: dhclient, udhcpc, then dhcpcd.

    dhcpcd is reported but not fast: :class:`EphemeralDhcp` hands it to the
    fallback (cloud-init's helper) rather than run it itself.
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
            return ClientProgram("dhcpcd", (str(root / rel),))
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


def udhcpc_script(out_file: str) -> str:
    """A udhcpc script that records the lease on bound/renew and does nothing else.

    udhcpc calls it with ``deconfig`` first; that must not touch the NIC.
    """
    fields = ("interface", "ip", "subnet", "mask", "broadcast", "router", "dns",
              "staticroutes", "opt245", "lease")
    lines = "\n".join(f"    printf '%s=%s\\n' {f} \"${f}\"" for f in fields)
    out = shlex.quote(out_file)
    return (
        "#!/bin/sh\n"
        "# cloudinit-azure ephemeral DHCP: record the lease, configure nothing.\n"
        'case "$1" in\n'
        "bound|renew)\n"
        "  {\n"
        f"{lines}\n"
        f"  }} > {out}.tmp && mv -f {out}.tmp {out}\n"
        "  ;;\n"
        "esac\n"
        "exit 0\n"
    )


def udhcpc_command(nic: str, script: str, prog: Sequence[str] = ("udhcpc",)) -> list[str]:
    """Foreground, exit after the lease (``-q``) or on failure (``-n``), never release."""
    return [*prog, "-i", nic, "-n", "-q", "-f", "-t", "3", "-T", "1",
            "-O", "121", "-O", "245", "-s", script]


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
    client: str = ""  # "dhclient", "udhcpc" or "fallback"
    seconds: Optional[float] = None  # from __enter__ to a configured NIC


def _prefix(mask: Optional[str]) -> Optional[int]:
    if not mask:
        return None
    mask = mask.strip()
    if mask.isdigit():
        value = int(mask)
        return value if 0 <= value <= 32 else None
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
    return Lease(interface, addr, prefix, routers[0] if routers else None, bcast,
                 _routes(classless), wireserver, _addresses(dns), raw, client)


def _dhclient_block(text: str) -> tuple[str, dict[str, str]]:
    """The newest ``lease { }`` block and its statements (one per line)."""
    blocks = re.findall(r"lease\s*\{(.*?)\n\s*\}", text, flags=re.DOTALL)
    if not blocks:
        return "", {}
    block = blocks[-1]
    values: dict[str, str] = {}
    for line in block.splitlines():
        line = line.strip().rstrip(";").strip()
        if line.startswith("option "):
            line = line[len("option "):]
        key, _, val = line.partition(" ")
        if key:
            values[key] = val.strip()
    return block, values


def parse_dhclient_lease(text: str, nic: str) -> Lease:
    """dhclient's lease file (``-lf``) -> :class:`Lease`."""
    block, v = _dhclient_block(text)
    if not block:
        raise DhcpError(detail="dhclient wrote no lease", client="dhclient", nic=nic)
    wireserver = _ipv4(v.get(WIRESERVER_OPTION)) or parse_option_245(block)
    classless = (v.get("rfc3442-classless-static-routes") or v.get("unknown-121")
                 or v.get("classless-static-routes"))
    return make_lease(
        v.get("interface", "").strip('"') or nic, v.get("fixed-address"),
        v.get("subnet-mask"), router=v.get("routers"), broadcast=v.get("broadcast-address"),
        classless=classless, wireserver=wireserver, dns=v.get("domain-name-servers"),
        raw=text, client="dhclient",
    )


def parse_udhcpc_dump(text: str, nic: str) -> Lease:
    """The file :func:`udhcpc_script` writes -> :class:`Lease`."""
    v: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, val = line.partition("=")
        if sep and key not in v:
            v[key] = val.strip()
    if not v.get("ip"):
        raise DhcpError(detail="udhcpc wrote no lease", client="udhcpc", nic=nic)
    wireserver = parse_option_245(f"opt245={v['opt245']}") if v.get("opt245") else None
    return make_lease(
        v.get("interface") or nic, v.get("ip"), v.get("mask") or v.get("subnet"),
        router=v.get("router"), broadcast=v.get("broadcast"),
        classless=v.get("staticroutes"), wireserver=wireserver, dns=v.get("dns"),
        raw=text, client="udhcpc",
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


class EphemeralDhcp:
    """``with EphemeralDhcp("eth0") as lease:`` the NIC has the lease; afterwards it is gone.

    ``fallback(nic)`` returns a context manager yielding cloud-init's lease
    dict; it is used when the image has neither dhclient nor udhcpc.
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

    # -- context manager --------------------------------------------------

    def __enter__(self) -> Lease:
        start = self.clock()
        client = find_client(self.root)
        if client is None or not client.fast:
            lease = self._enter_fallback(client)
        else:
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

    def _enter_client(self, client: ClientProgram) -> Lease:
        self.tmp_parent.mkdir(parents=True, exist_ok=True)
        self._work = Path(tempfile.mkdtemp(prefix=f"dhcp-{self.nic}.", dir=self.tmp_parent))
        for step in link_steps(self.nic, link_is_up(self.root / "sys/class/net", self.nic)):
            self._apply(step, client.name)
        if client.name == "dhclient":
            lease = self._run_dhclient(client)
        else:
            lease = self._run_udhcpc(client)
        for step in lease_steps(lease, self.nic):
            self._apply(step, client.name)
        return lease

    def _run_client(self, cmd: list[str], client: str) -> None:
        self.log.debug("running %s", " ".join(cmd))
        try:
            result = self.runner(cmd, check=False, timeout=self.timeout + 5)
        except subprocess.TimeoutExpired:
            raise DhcpError(detail="DHCP client timed out", client=client, nic=self.nic,
                            timeout=self.timeout + 5) from None
        except OSError as err:
            raise DhcpError(detail="cannot run DHCP client", client=client, nic=self.nic,
                            error=str(err)) from None
        if result.returncode != 0:
            raise DhcpError(client=client, nic=self.nic, exit_code=result.returncode,
                            stderr=_tail(result.stderr))

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
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    # -- fallback ---------------------------------------------------------

    def _enter_fallback(self, client: Optional[ClientProgram]) -> Lease:
        found = client.name if client else "none"
        if self.fallback is None:
            raise DhcpError(detail="no usable DHCP client and no fallback",
                            client=found, nic=self.nic)
        self.log.info("ephemeral DHCP on %s: %s, using the fallback", self.nic,
                      "no DHCP client found" if client is None
                      else f"{client.name} has a start delay")
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
