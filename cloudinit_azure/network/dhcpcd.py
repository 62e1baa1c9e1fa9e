"""dhcpcd for the ephemeral run: its private config, lease script, command
line, and its own state files, set aside and put back as they were.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from cloudinit_azure.network.clients import (
    DEFAULT_TIMEOUT,
    _lease_dump_script,
)
from cloudinit_azure.network.leases import (
    DHCPCD_WIRESERVER,
    Lease,
    dhcp_packet_option,
    parse_dhcpcd_dump,
)
from cloudinit_azure.report import DhcpError
from cloudinit_azure.runner import Runner

LOG = logging.getLogger(__name__)


# dhcpcd state this module must leave as it found it (see _DhcpcdFiles).
DHCPCD_DB_DIRS = ("var/lib/dhcpcd", "var/db/dhcpcd")


DHCPCD_RUN_DIR = "run/dhcpcd"


# Verified against dhcpcd 9.4.1; the options used exist since 9.x.
DHCPCD_MIN_VERSION = (9, 4)


DHCPCD_KILL_AFTER = 2  # timeout(1) -k: SIGKILL if dhcpcd ignores SIGTERM


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


def _ipv4s(data: Optional[bytes]) -> str:
    data = data or b""
    return " ".join(".".join(map(str, data[i:i + 4])) for i in range(0, len(data) - 3, 4))


def parse_dhcpcd_lease_file(data: bytes, nic: str) -> Lease:
    """dhcpcd's binary lease file (the server's DHCPACK as received) -> :class:`Lease`.

    The same fields as the script's dump: ``yiaddr``, options 1, 3, 6, 28,
    121 (RFC 3442, as ``dst/len gw`` pairs) and 245.
    """
    fields = {}
    if len(data) >= 240 and data[236:240] == b"\x63\x82\x53\x63":
        fields["new_ip_address"] = _ipv4s(data[16:20])
    for code, name in ((1, "subnet_mask"), (3, "routers"), (6, "domain_name_servers"),
                       (28, "broadcast_address"), (245, DHCPCD_WIRESERVER)):
        if (value := dhcp_packet_option(data, code)) is not None:
            fields[f"new_{name}"] = _ipv4s(value)
    routes, raw = [], dhcp_packet_option(data, 121) or b""
    i = 0
    while i < len(raw) and raw[i] <= 32:
        width, octets = raw[i], (raw[i] + 7) // 8
        dst = bytes(raw[i + 1:i + 1 + octets]).ljust(4, b"\0")
        gateway = raw[i + 1 + octets:i + 5 + octets]
        if len(gateway) < 4:
            break
        routes.append(f"{_ipv4s(dst)}/{width} {_ipv4s(gateway)}")
        i += 5 + octets
    if routes:
        fields["new_classless_static_routes"] = " ".join(routes)
    return parse_dhcpcd_dump("".join(f"{k}={v}\n" for k, v in fields.items()), nic)


def read_dhcpcd_lease(dump: Path, root: Path, nic: str) -> Lease:
    """The lease our script recorded (dhcpcd 9.4), else dhcpcd's own lease file (10.x).

    dhcpcd 10 runs the script privilege-separated as the ``dhcpcd`` user and
    refuses ours (``script_runreason: Permission denied``, Debian 13's 10.1,
    also for a 0755 script in a 0755 directory), though it took the lease;
    its ``--dumplease`` then only asks a running dhcpcd ("dhcpcd is not
    running", measured). So the lease file it wrote is read before
    :class:`_DhcpcdFiles` puts the old one back.
    """
    try:
        return parse_dhcpcd_dump(dump.read_text(encoding="utf-8"), nic)
    except OSError:
        pass
    for path in dhcpcd_lease_files(root, nic):
        try:
            return parse_dhcpcd_lease_file(path.read_bytes(), nic)
        except OSError:
            continue
    raise DhcpError(detail="dhcpcd wrote no lease", client="dhcpcd", nic=nic)


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

    def await_exit(self, clock: Callable[[], float], sleep: Callable[[float], None],
                   log: logging.Logger) -> None:
        """dhcpcd's helpers remove its pid file and sockets as they exit.

        Measured: gone by the time the main process has exited; a short
        wait covers a slow helper before they are removed for it.
        """
        deadline = clock() + DHCPCD_EXIT_WAIT
        while left := [str(f) for f in self.new_files if os.path.lexists(f)]:
            if clock() >= deadline:
                log.warning("dhcpcd left %s behind: removing", ", ".join(left))
                return
            sleep(0.01)

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


DHCPCD_EXIT_WAIT = 1.0  # for its privsep helpers to remove /run/dhcpcd/<nic>-4.*


def dhcpcd_refusal(root: Path, nic: str, argv: Sequence[str], runner: Runner) -> Optional[str]:
    """Why the ephemeral run must not start this dhcpcd itself, or None.

    A dhcpcd already running for the NIC would take our arguments over its
    control socket instead of binding; one older than 9.4 lacks the options.
    """
    busy = [str(p) for p in dhcpcd_sockets(root, nic) if os.path.lexists(p)]
    if busy:
        return f"a dhcpcd is already running ({busy[0]})"
    try:
        result = runner([*argv, "--version"], check=False, timeout=5)
        version = dhcpcd_version(result.stdout + result.stderr)
    except (OSError, subprocess.SubprocessError) as err:
        return f"cannot run dhcpcd --version: {err}"
    if version is None or version < DHCPCD_MIN_VERSION:
        want = ".".join(map(str, DHCPCD_MIN_VERSION))
        have = ".".join(map(str, version)) if version else "unknown"
        return f"dhcpcd {have} is older than {want}"
    return None
