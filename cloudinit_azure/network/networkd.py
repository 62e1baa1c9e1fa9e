"""systemd-networkd: which ``.network`` file configures a link, read without
D-Bus, and the drop-ins the plug-in puts beside it.

cloud-init's network stage (``cloud-init-network.service`` in 25.1,
``cloud-init.service`` in 22.4) is ordered ``Before=sysinit.target``, so it
runs before ``dbus.socket``: ``networkctl status`` and ``networkctl renew``
cannot reach networkd then ("Failed to connect to system bus"). networkd
itself records the file it applied in ``/run/systemd/netif/links/<ifindex>``
(``NETWORK_FILE=``), the state ``networkctl`` and ``sd_network_link_get_network_file()``
read; that file is read here, and ``[Match]`` sections are scanned only when
networkd has not configured the link.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

from cloudinit_azure.network.nics import _link_name, _read

# networkd's search path, highest priority first: a file in /etc hides one of
# the same name in /run (netplan's and cloud-init's generated files) or /usr.
NETWORK_DIRS = ("etc/systemd/network", "run/systemd/network",
                "usr/local/lib/systemd/network", "usr/lib/systemd/network",
                "lib/systemd/network")

_MAC_KEYS = ("MACAddress", "PermanentMACAddress")  # netplan >= 0.107 writes the latter
_GLOB_KEYS = ("Name", "OriginalName", "Driver")
_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")


def parse_state(text: str) -> dict[str, str]:
    """networkd's link state file (``KEY=VALUE`` lines) -> a dict, quotes removed."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            out[key.strip()] = value.strip().strip('"')
    return out


def state_network_file(root: Path, ifindex: int) -> Optional[str]:
    """The ``.network`` file networkd applied to link ``ifindex``, from its state file."""
    text = _read(Path(root) / "run/systemd/netif/links" / str(ifindex))
    path = parse_state(text or "").get("NETWORK_FILE")
    return path if path and path != "n/a" else None


def match_conditions(text: str) -> list[tuple[str, list[str]]]:
    """Every ``key=value`` of the file's ``[Match]`` sections, values split on spaces."""
    out: list[tuple[str, list[str]]] = []
    section = None
    for line in text.splitlines():
        head = _SECTION.match(line)
        if head:
            section = head.group(1).strip()
            continue
        key, sep, value = line.partition("=")
        if section == "Match" and sep and not key.lstrip().startswith(("#", ";")):
            out.append((key.strip(), value.split()))
    return out


def _one(key: str, values: list[str], facts: Mapping[str, Optional[str]]) -> Optional[bool]:
    """One condition; None when it names something this module cannot check."""
    invert = bool(values) and values[0].startswith("!")
    if invert:
        values = [values[0][1:], *values[1:]]
    values = [v for v in values if v]
    if not values:
        return True  # an empty assignment resets the condition
    if key in _MAC_KEYS:
        mac = (facts.get("mac") or "").lower()
        hit = bool(mac) and mac in (v.lower() for v in values)
    elif key in _GLOB_KEYS:
        have = facts.get("driver" if key == "Driver" else "name")
        hit = have is not None and any(fnmatch.fnmatchcase(have, v) for v in values)
    elif key == "Type":
        hit = any(fnmatch.fnmatchcase("ether", v) for v in values)
    else:
        return None
    return hit != invert


def file_matches(text: str, name: str, mac: Optional[str],
                 driver: Optional[str]) -> Optional[bool]:
    """Whether the file's ``[Match]`` selects the link (every condition must hold).

    No condition at all matches every link, as in networkd. None: a
    condition this module cannot evaluate (``Path=``, ``Property=``...).
    """
    facts = {"name": name, "mac": mac, "driver": driver}
    unknown = False
    for key, values in match_conditions(text):
        hit = _one(key, values, facts)
        if hit is False:
            return False
        unknown = unknown or hit is None
    return None if unknown else True


def find_network_file(root: Path, nic: str, mac: Optional[str] = None,
                      driver: Optional[str] = None) -> Optional[str]:
    """The basename of the first ``.network`` file, in networkd's lexical order,
    whose ``[Match]`` selects ``nic`` (name globs, MAC, permanent MAC, driver).
    """
    files: dict[str, Path] = {}
    for d in NETWORK_DIRS:
        for path in sorted((Path(root) / d).glob("*.network")):
            files.setdefault(path.name, path)
    for name in sorted(files):
        if file_matches(_read(files[name]) or "", nic, mac, driver):
            return name
    return None


def network_file_for(root: Path, nic: str, mac: Optional[str] = None) -> Optional[str]:
    """The basename of the ``.network`` file for ``nic``: networkd's own record
    when it has configured the link, else the ``[Match]`` scan."""
    base = Path(root) / "sys/class/net" / nic
    ifindex = _read(base / "ifindex")
    if ifindex and ifindex.isdigit():
        path = state_network_file(root, int(ifindex))
        if path:
            return Path(path).name
    mac = mac or _read(base / "address")
    return find_network_file(root, nic, mac, _link_name(base / "device" / "driver"))


def dropin_path(root: Path, network_file: str, name: str) -> Path:
    """``/etc/systemd/network/<file>.d/<name>``: networkd reads a drop-in directory
    named for the file in any of its directories, so this one also applies to
    a file that netplan or cloud-init regenerates under /run at every boot."""
    return Path(root) / "etc/systemd/network" / f"{network_file}.d" / name
