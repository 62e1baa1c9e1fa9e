"""The DHCP client programs of the image: finding them and their command lines,
shared by the ephemeral run (init-local) and host name publishing.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

LOG = logging.getLogger(__name__)


FAST_CLIENTS = ("dhclient", "udhcpc", "dhcpcd")


DHCLIENT_PATHS = ("usr/sbin/dhclient", "sbin/dhclient")


UDHCPC_PATHS = ("usr/sbin/udhcpc", "sbin/udhcpc", "usr/bin/udhcpc")


BUSYBOX_PATHS = ("usr/bin/busybox", "bin/busybox")


DHCPCD_PATHS = ("usr/sbin/dhcpcd", "sbin/dhcpcd")


TIMEOUT_PATHS = ("usr/bin/timeout", "bin/timeout")


# dhclient only asks for options its config names, and prints an option it
# has no definition for as ``unknown-245 a8:3f:81:10``. Defining 245 as an
# ip-address makes it request the option and print it as a dotted quad.
WIRESERVER_OPTION = "azure-wireserver"


NOOP_SCRIPT = "/bin/true"


DEFAULT_TIMEOUT = 10.0


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


def udhcpc_program(root: Path) -> Optional[tuple[str, ...]]:
    """udhcpc's argv under ``root``: its own binary or busybox's applet."""
    root = Path(root)
    for rel in UDHCPC_PATHS:
        if _executable(root / rel):
            return (str(root / rel),)
    for rel in BUSYBOX_PATHS:
        if _executable(root / rel) and _busybox_has_udhcpc(root / rel):
            return (str(root / rel), "udhcpc")
    return None


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


def udhcpc_publish_command(prog: Sequence[str], nic: str, address: str,
                   hostname: str) -> list[str]:
    """One REQUEST for the current address carrying the host name, configuring nothing.

    ``-r``: ask for the address the NIC has; ``-x hostname:``: option 12;
    ``-s /bin/true``: the script, which alone configures anything in
    udhcpc, does nothing; ``-q``: exit once bound; no ``-R``: no release.
    """
    return [*prog, "-i", nic, "-n", "-q", "-f", "-t", "3", "-T", "1", "-r", address,
            "-x", f"hostname:{hostname}", "-s", "/bin/true"]


def runs_with_pid_file(root: Path, pid: int, pid_file: Path) -> bool:
    """Process ``pid`` has our private ``pid_file`` on its command line.

    The only dhclient this package ever signals is one it started with its
    own pid file: a reused pid is never hit.
    """
    try:
        cmdline = (Path(root) / "proc" / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return str(pid_file).encode() in cmdline.split(b"\0")
