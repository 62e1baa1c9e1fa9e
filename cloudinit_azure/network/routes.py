"""Routes: host routes to the platform that a lease lacks, and a lease turned
into ip(8) commands with their undo.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from cloudinit_azure.network.leases import (
    Lease,
)
from cloudinit_azure.runner import Runner

LOG = logging.getLogger(__name__)


DEFAULT_WIRESERVER = "168.63.129.16"


IMDS_ADDRESS = "169.254.169.254"


ON_LINK = "0.0.0.0"  # noqa: S104  (option 121 gateway: "on the link", not a bind)


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


NETWORKD_ROUTES_DROPIN = "50-azure-platform-routes.conf"


def networkd_routes_dropin(routes: Iterable[Route]) -> str:
    """Drop-in for the NIC's .network file with the routes, as the rendered config has them.

    networkd installs these at every configuration of the link; a route
    added with ip(8) is foreign to it and gone at the next boot (and at a
    networkd restart, which removes foreign routes: ``ManageForeignRoutes=yes``).
    """
    text = "# cloudinit-azure: host routes to the platform (the lease has no option 121 route)\n"
    for route in routes:
        text += f"\n[Route]\nDestination={route.destination}\nGateway={route.gateway}\n"
    return text


Command = tuple[str, ...]


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
