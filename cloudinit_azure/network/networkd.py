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
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Optional

from cloudinit_azure.network.nics import Nic, _link_name, _read
from cloudinit_azure.network.routes import NETWORKD_ROUTES_DROPIN, Route, networkd_routes_dropin
from cloudinit_azure.network.watcher import write_if_changed

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


def _items(text: str, wanted: str) -> Iterator[tuple[str, str]]:
    """``(key, value)`` of every assignment in the file's ``[wanted]`` sections."""
    section = None
    for line in text.splitlines():
        head = _SECTION.match(line)
        if head:
            section = head.group(1).strip()
            continue
        key, sep, value = line.partition("=")
        if section == wanted and sep and not key.lstrip().startswith(("#", ";")):
            yield key.strip(), value.strip()


def match_conditions(text: str) -> list[tuple[str, list[str]]]:
    """Every condition of the file's ``[Match]`` sections, values split on spaces."""
    return [(key, value.split()) for key, value in _items(text, "Match")]


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


def network_files(root: Path) -> dict[str, Path]:
    """``{basename: path}`` as networkd sees them: one file per name, the
    highest-priority directory's."""
    files: dict[str, Path] = {}
    for d in NETWORK_DIRS:
        for path in sorted((Path(root) / d).glob("*.network")):
            files.setdefault(path.name, path)
    return files


def find_network_file(root: Path, nic: str, mac: Optional[str] = None,
                      driver: Optional[str] = None) -> Optional[str]:
    """The basename of the first ``.network`` file, in networkd's lexical order,
    whose ``[Match]`` selects ``nic`` (name globs, MAC, permanent MAC, driver).
    """
    files = network_files(root)
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


def sharing_nics(root: Path, network_file: str, nic: str, others: Iterable[Nic]) -> list[str]:
    """The other NICs networkd configures with the same file (its first match
    in lexical order is theirs too): a setting put there applies to them all."""
    return [o.name for o in others if o.name != nic
            and find_network_file(root, o.name, o.mac, o.driver) == network_file]


def routes_in(text: str) -> set[str]:
    """The ``Destination=`` of every ``[Route]`` the file already has."""
    return {value for key, value in _items(text, "Route") if key == "Destination"}


def file_text(root: Path, network_file: str) -> str:
    """The text networkd reads for ``network_file`` (its drop-ins not included)."""
    path = network_files(root).get(network_file)
    return (_read(path) or "") if path else ""


def persist_routes(root: Path, nic: Nic, nics: Iterable[Nic], routes: Sequence[Route],
                   log: logging.Logger) -> Optional[Path]:
    """Make networkd itself install ``routes`` on ``nic`` from the next boot on.

    Nothing to do when the file networkd applies already has them (the
    rendered network config). Debian 13's netplan default (``Name=eth*``)
    sorts before cloud-init's file and hides it; a drop-in for that file is
    written only when it configures no other NIC, as its routes would go
    there too. Returns the drop-in written or already in place.
    """
    name = network_file_for(root, nic.name, nic.mac)
    if name is None:
        log.info("no systemd-networkd .network file matches %s: routes not persisted",
                 nic.name)
        return None
    have = routes_in(file_text(root, name))
    missing = [r for r in routes if r.destination not in have]
    if not missing:
        return None
    shared = sharing_nics(root, name, nic.name, nics)
    if shared:
        log.warning("routes to the platform are in place on %s until the next boot only: "
                    "%s, the .network file networkd applies to it, also configures %s",
                    nic.name, name, ", ".join(shared))
        return None
    path = dropin_path(root, name, NETWORKD_ROUTES_DROPIN)
    changed = write_if_changed(path, networkd_routes_dropin(missing))
    log.info("routes to the platform kept for networkd in %s (%s)", path,
             "written" if changed else "unchanged")
    return path
