"""Publishing the host name to Azure DNS through the OS DHCP client, without
ever releasing the lease or taking a link down.
"""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from cloudinit_azure.network.clients import (
    DHCLIENT_PATHS,
    DHCPCD_PATHS,
    runs_with_pid_file,
    udhcpc_program,
    udhcpc_publish_command,
)
from cloudinit_azure.network.leases import (
    dhclient_blocks,
)
from cloudinit_azure.network.networkd import dropin_path, network_file_for
from cloudinit_azure.network.nics import (
    _read,
)
from cloudinit_azure.network.routes import (
    _try_run,
)
from cloudinit_azure.network.watcher import _read_raw, write_if_changed
from cloudinit_azure.runner import Runner

LOG = logging.getLogger(__name__)

# The one process signalled: our own one-shot dhclient (os.kill from the adapter).
Kill = Callable[[int, int], None]


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


_BINARIES = (("dhclient", DHCLIENT_PATHS), ("dhcpcd", DHCPCD_PATHS))


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
    if udhcpc_program(root) is not None:
        return "udhcpc"
    return None


def parse_ipv4_address(ip_addr_output: str) -> Optional[str]:
    """``ip -4 -o addr show dev <nic>`` -> the first address (no prefix)."""
    match = re.search(r"\binet\s+(\d+\.\d+\.\d+\.\d+)/", ip_addr_output)
    return match.group(1) if match else None


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


def _dhclient_oneshot(root: Path, nic: str, conf: Path, runner: Runner, kill: Kill,
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
    if not _stop_own_dhclient(root, pid_file, kill, log):
        # `dhclient -x` also stops it without a release, but polls for a second.
        _try_run(runner, [*base[:1], "-x", *base[1:]], log)
    return bool(result is not None and result.returncode == 0)


def _stop_own_dhclient(root: Path, pid_file: Path, kill: Kill, log: logging.Logger) -> bool:
    """SIGTERM (no release) the one-shot dhclient, if its pid file names it.

    Only a process whose command line carries our private pid file is
    signalled, so a reused pid is never hit.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return False
    if not runs_with_pid_file(root, pid, pid_file):
        return False
    try:
        kill(pid, signal.SIGTERM)
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
        for block in dhclient_blocks(_read_raw(path) or ""):
            iface = block.values.get("interface", "").strip('"')
            if iface == nic or (not iface and nic in path.name):
                best = block.text
    return best + "\n" if best else None


def publish_hostname(root: Path, nic: str, hostname: Optional[str], runner: Runner,
                     log: logging.Logger = LOG, client: Optional[str] = None,
                     mac: Optional[str] = None, *, kill: Kill) -> PublishResult:
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
        renewed = _dhclient_oneshot(root, nic, conf, runner, kill, log)
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
        name = network_file_for(root, nic, mac)
        if name is None:
            # networkd runs but configures no DHCP for the primary NIC: a real
            # misconfiguration of the image, not a moment to wait for.
            notes.append(f"no .network file for {nic}")
            log.warning("systemd-networkd runs but no .network file matches %s: host name "
                        "not published to Azure DNS", nic)
        else:
            dropin = dropin_path(root, name, NETWORKD_DROPIN)
            if write_if_changed(dropin, networkd_dropin(hostname)):
                changed.append(str(dropin))
            # networkd reads the host name when it configures the link and its
            # DHCP client sends that name in every request and renewal;
            # cloud-init sets it in init-local, before networkd starts. A
            # renewal (`networkctl renew`, over D-Bus, which is not up yet in
            # cloud-init's network stage) would resend the same name; a reload
            # or reconfigure restarts the client, which sends a RELEASE. So
            # nothing is renewed: the drop-in holds from the link's next
            # configuration (the next boot).
            notes.append(f"networkd: {name} sends the host name it had when it configured "
                         f"{nic}; the drop-in holds from its next configuration")
            log.info("networkd: host name drop-in for %s is in place (%s)", name,
                     "written" if changed else "unchanged")
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
    elif client == "udhcpc":
        renewed = _udhcpc_oneshot(root, nic, hostname, runner, log)
        # udhcpc has no config file: a running udhcpc's own renewals send
        # what its command line says (ifupdown: a `hostname` line in
        # /etc/network/interfaces adds -x hostname:...). Documented.
        notes.append("udhcpc: sent now; later renewals follow udhcpc's own command line")
    else:
        notes.append(f"{client}: host name publishing not supported")
        log.warning("%s: host name publishing not supported", client)
    return PublishResult(client, tuple(changed), renewed, tuple(notes))


def _udhcpc_oneshot(root: Path, nic: str, hostname: Optional[str], runner: Runner,
                    log: logging.Logger) -> bool:
    """Send the host name once with a second udhcpc that touches nothing."""
    prog = udhcpc_program(root)
    name = hostname or (_read(Path(root) / "proc/sys/kernel/hostname") or "").strip()
    shown = _try_run(runner, ["ip", "-4", "-o", "addr", "show", "dev", nic], log)
    address = parse_ipv4_address(shown.stdout) if shown is not None else None
    if prog is None or not name or address is None:
        why = "no udhcpc" if prog is None else "no host name" if not name else \
            f"no IPv4 address on {nic}"
        log.info("udhcpc: host name not published now (%s)", why)
        return False
    result = _try_run(runner, udhcpc_publish_command(prog, nic, address, name), log)
    return bool(result is not None and result.returncode == 0)
