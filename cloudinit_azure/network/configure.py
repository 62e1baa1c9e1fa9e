"""Everything the ``azure_network`` config module does, driven by its settings.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from cloudinit_azure.network import ifupdown
from cloudinit_azure.network.hostkey import (
    report_host_key,
    wireserver_role_properties,
)
from cloudinit_azure.network.hostname import (
    Kill,
    PublishResult,
    _newest_dhclient_lease_text,
    check_hostname,
    detect_dhcp_client,
    publish_hostname,
)
from cloudinit_azure.network.leases import (
    dhcp_packet_option,
    parse_lease,
)
from cloudinit_azure.network.networkd import persist_routes
from cloudinit_azure.network.nics import (
    Nic,
    classify_nics,
    mask_persistent_net_rules,
    primary_nic,
    remove_stale_net_rules,
)
from cloudinit_azure.network.routes import (
    DEFAULT_WIRESERVER,
    Route,
    _try_run,
    apply_routes,
    lease_gateway,
    parse_default_gateway,
    platform_routes,
)
from cloudinit_azure.network.watcher import (
    WATCH_UNIT,
    _read_raw,
    install_watcher,
)
from cloudinit_azure.report import ProvisioningError
from cloudinit_azure.runner import Runner
from cloudinit_azure.settings import with_defaults

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What one run of the module did (for the log and the tests)."""

    masked: Optional[bool] = None
    stale_rules_moved: Optional[Path] = None
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
              post: Optional[Callable[[bytes], Any]] = None,
              container_id: Optional[str] = None, instance_id: Optional[str] = None,
              python: Optional[str] = None,
              log: logging.Logger = LOG, kill: Kill) -> Outcome:
    """Everything the ``azure_network`` module does, driven by its settings.

    ``runner`` and ``kill`` (which only ever stops our own one-shot dhclient)
    come from the adapter: the core has no default to the real machine.
    """
    root = Path(root)
    settings = with_defaults("azure_network", settings)
    masked = routes = published = watcher = reported = moved = None
    if settings["mask_persistent_net_rules"]:
        masked = mask_persistent_net_rules(root, log)
        moved = remove_stale_net_rules(root, log)
    nics = classify_nics(root / "sys/class/net")
    nic = primary_nic(nics, primary_mac)
    client = detect_dhcp_client(root)
    if nic is None:
        log.warning("no network interface found: routes and host name skipped")
    elif settings["platform_routes"]["enabled"]:
        lease = find_lease(root, client, nic, runner, log)
        target = wireserver or lease.get("wireserver") or DEFAULT_WIRESERVER
        if not lease_gateway(lease):
            shown = _try_run(runner, ["ip", "-4", "route", "show", "default", "dev", nic.name],
                             log)
            gateway = parse_default_gateway(shown.stdout) if shown is not None else None
            lease = {**lease, "routers": [gateway] if gateway else []}
        wanted = platform_routes(lease, target, interface=nic.name)
        routes = tuple(apply_routes(wanted, runner, log))
        if client == "networkd" and wanted:
            persist_routes(root, nic, nics, wanted, log)
        elif wanted:
            ifupdown.persist_routes(root, nic.name, wanted, log)
    pub = settings["publish_hostname"]
    if nic is not None and pub["enabled"]:
        name = None
        if hostname:
            try:
                name = check_hostname(hostname)
            except ProvisioningError as err:
                log.warning("%s: publishing the live host name instead", err)
        published = publish_hostname(root, nic.name, name, runner, log, client, nic.mac,
                                     kill=kill)
        if pub["watch"]:
            watcher = install_watcher(root, python)
            if watcher:
                _try_run(runner, ["systemctl", "daemon-reload"], log)
                _try_run(runner, ["systemctl", "start", "--no-block",
                                  f"{WATCH_UNIT}.path"], log)
    if settings["report_host_key_fingerprints"]:
        reported = False
        try:
            if post is None or not container_id or not instance_id:
                post, container_id, instance_id = wireserver_role_properties(
                    wireserver or DEFAULT_WIRESERVER)
            reported = report_host_key(root, post, container_id, instance_id,
                                       key_type=settings["host_key_type"] or None,
                                       log=log)
        except ProvisioningError as err:  # optional feature: never fails the boot
            log.warning("host key fingerprint not reported: %s", err)
    return Outcome(masked, moved, routes or (), published, watcher, reported)
