"""ifupdown (Debian 12): the platform routes at every ``ifup``, without net-tools.

cloud-init 22.4's ENI renderer writes the network config's routes as
``post-up route add ... || true``; Debian 12 images ship no net-tools ``route``,
so those lines fail silently and the routes to the wireserver and IMDS are gone
after a reboot when DHCP has no option 121 (VM tier, Debian 12). An
``if-up.d`` hook with ``ip route replace`` does what the rendered lines meant.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from cloudinit_azure.network.routes import Route
from cloudinit_azure.network.watcher import write_if_changed

IFUP_HOOK = "etc/network/if-up.d/azure-platform-routes"
_SAFE = re.compile(r"^[0-9A-Za-z./:_-]+$")  # addresses and NIC names, nothing a shell reads


def uses_ifupdown(root: Path) -> bool:
    """ifupdown configures the NICs: its configuration and its ``ifup`` are there."""
    root = Path(root)
    return (root / "etc/network/interfaces").is_file() and any(
        (root / p).exists() for p in ("sbin/ifup", "usr/sbin/ifup"))


def hook_text(nic: str, routes: Sequence[Route]) -> str:
    """The hook: for ``nic`` only, each route with ``ip route replace`` (idempotent)."""
    for value in (nic, *(v for r in routes for v in (r.destination, r.gateway))):
        if not _SAFE.match(value):
            raise ValueError(f"unsafe value for a shell hook: {value!r}")
    lines = ["#!/bin/sh",
             "# cloudinit-azure (azure_network): routes to the Azure platform at every",
             "# ifup; cloud-init's rendered 'post-up route' lines need net-tools.",
             f'[ "$IFACE" = "{nic}" ] || exit 0']
    lines += [f"ip route replace {r.destination} via {r.gateway} dev {nic} || true"
              for r in routes]
    return "\n".join(lines + ["exit 0", ""])


def persist_routes(root: Path, nic: str, routes: Sequence[Route],
                   log: logging.Logger) -> Optional[Path]:
    """Write the hook when ifupdown runs the NICs; return it (None when not ifupdown)."""
    if not routes or not uses_ifupdown(root):
        return None
    path = Path(root) / IFUP_HOOK
    changed = write_if_changed(path, hook_text(nic, routes), mode=0o755)
    log.info("routes to the platform kept for ifupdown in /%s (%s)", IFUP_HOOK,
             "written" if changed else "unchanged")
    return path
