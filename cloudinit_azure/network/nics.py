"""NIC discovery and classification, with one rule for the primary NIC, and
stable NIC names (udev's persistent-net rules).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cloudinit_azure.host import STATE_DIR, read_text

LOG = logging.getLogger(__name__)


SYNTHETIC_DRIVER = "hv_netvsc"


# Accelerated networking: the SR-IOV VF shares the synthetic NIC's MAC.
VF_DRIVERS = frozenset({"mlx4_core", "mlx4_en", "mlx5_core", "mana"})


_VIRTUAL_DEVTYPES = frozenset({"bridge", "bond", "vlan", "wlan", "wireguard"})


IFF_UP = 0x1


@dataclass(frozen=True)
class Nic:
    name: str
    mac: str
    driver: Optional[str]
    is_vf: bool
    master: Optional[str]
    ifindex: int = 0
    virtual: bool = False  # a bridge, bond, VLAN, WLAN or WireGuard device

    @property
    def may_be_primary(self) -> bool:
        """The one rule for "primary" candidates (ephemeral DHCP, routes, host name).

        Not a VF (by MAC/master, or by its mlx4/mlx5/mana driver, which also
        holds before the VF is enslaved), not a bridge/bond/VLAN, not enslaved
        to anything, not a host-side ``veth*`` (containers); the simulator's
        NIC is a veth named eth0 and qualifies.
        """
        return not (self.is_vf or self.driver in VF_DRIVERS or self.virtual
                    or self.master or self.name.startswith("veth"))


def _read(path: Path) -> Optional[str]:
    text = read_text(path)
    return None if text is None else text.strip()


def _link_name(path: Path) -> Optional[str]:
    """Basename of a sysfs symlink; works for dangling links in fake trees."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _mac_key(mac: str) -> str:
    return re.sub(r"[^0-9a-f]", "", mac.lower())


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
            _link_name(entry / "master") if os.path.lexists(entry / "master") else None,
            _is_virtual(entry),
        ))
    raw.sort()
    synthetic = {(mac, name) for _i, name, mac, drv, _m, _v in raw if drv == SYNTHETIC_DRIVER}
    synthetic_macs = {mac for mac, _n in synthetic}
    synthetic_names = {name for _m, name in synthetic}
    nics = []
    for ifindex, name, mac, driver, master, virtual in raw:
        is_vf = driver != SYNTHETIC_DRIVER and (
            mac in synthetic_macs or (master in synthetic_names)
        )
        nics.append(Nic(name, mac, driver, is_vf, master, ifindex, virtual))
    return nics


def _is_virtual(entry: Path) -> bool:
    if (entry / "bridge").exists() or (entry / "bonding").exists():
        return True
    devtype = re.search(r"^DEVTYPE=(\S+)", _read(entry / "uevent") or "", flags=re.MULTILINE)
    return bool(devtype and devtype.group(1) in _VIRTUAL_DEVTYPES)


def names_by_mac(sys_class_net: Path) -> dict[str, str]:
    """``{mac: current name}`` of the NICs that may carry IP config (no VFs)."""
    out: dict[str, str] = {}
    for nic in classify_nics(sys_class_net):
        if not nic.is_vf:
            out.setdefault(nic.mac, nic.name)
    return out


def primary_nic(nics: Iterable[Nic], mac: Optional[str] = None) -> Optional[Nic]:
    """The primary NIC: the candidate with ``mac`` (IMDS's first interface), else
    the first candidate in ifindex order (kernel order; name order when sysfs
    has no ifindex). Candidates follow :attr:`Nic.may_be_primary`; a VF shares
    its MAC with the synthetic NIC, so the MAC is matched among candidates only.
    """
    candidates = [n for n in nics if n.may_be_primary]
    if mac:
        want = _mac_key(mac)
        for nic in candidates:
            if _mac_key(nic.mac) == want:
                return nic
    return candidates[0] if candidates else None


def primary_nic_name(sys_class_net: Path, preferred_mac: Optional[str] = None
                     ) -> Optional[str]:
    """The name of :func:`primary_nic` among the NICs under ``sys_class_net``."""
    nic = primary_nic(classify_nics(sys_class_net), preferred_mac)
    return nic.name if nic else None


def link_is_up(sys_class_net: Path, nic: str) -> Optional[bool]:
    """Administrative state (IFF_UP in ``flags``); None when sysfs cannot say."""
    text = _read(Path(sys_class_net) / nic / "flags")
    try:
        return bool(int(text or "", 16) & IFF_UP)
    except ValueError:
        return None


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


PERSISTENT_NET_RULES = "etc/udev/rules.d/70-persistent-net.rules"


STALE_RULES_DIR = STATE_DIR.lstrip("/")


def remove_stale_net_rules(root: Path, log: logging.Logger = LOG) -> Optional[Path]:
    """Move a ``70-persistent-net.rules`` left in the image out of udev's way.

    The generator (masked above) wrote it on the image's build VM: it pins
    ``eth0`` to that VM's MAC, so on a new instance the NIC would come up as
    ``eth1`` with no config. Called on a new instance only (the module is
    once per instance). The file is moved to
    ``/var/lib/cloudinit-azure/70-persistent-net.rules.stale``, never
    deleted; a symlink (an image author's own mask) is left alone.
    Returns where it was moved, or None.
    """
    path = Path(root) / PERSISTENT_NET_RULES
    if path.is_symlink() or not path.is_file():
        return None
    dest = Path(root) / STALE_RULES_DIR / (path.name + ".stale")
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dest)
    log.info("moved the stale %s (MAC-pinned NIC names of the image's build VM) to %s",
             "/" + PERSISTENT_NET_RULES, "/" + str(dest.relative_to(root)))
    return dest
