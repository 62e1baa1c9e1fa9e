"""The preprovisioning wait's seam against the real machine (:class:`pps.Reuse`).

Link events from a netlink socket (RTMGRP_LINK), reprovisiondata through the
one HTTP client, the pool marker in the data directory. What only the flow's
platform can do (report the pool's Ready, renew the ephemeral lease) comes in
as callables. No cloud-init import.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import select
import shutil
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from cloudinit_azure import pps
from cloudinit_azure.http import HttpClient
from cloudinit_azure.imds import IMDS_POLICY, REPROVISION_PATH, imds_client
from cloudinit_azure.report import ProvisioningError

LOG = logging.getLogger(__name__)
RTMGRP_LINK = 1
MARKER = "azure_pps_pool"
# Every status comes back to the wait, which decides (pps.poll_next); a lost
# connection is retried for at most 2 s here, then the wait renews the lease.
FETCH_POLICY = dataclasses.replace(IMDS_POLICY, deadline_s=2.0, retry_statuses=frozenset())
ALL_ERRORS = range(400, 600)


def renew_in_place(dhcp: Any) -> Any:
    """A new lease on the NIC that kept its old one (a vnet switch), the old applied meanwhile.

    ``dhcp``: the flow's :class:`cloudinit_azure.network.ephemeral.EphemeralDhcp`.
    The client runs while the old address and routes stay; a lease needing
    the same ``ip`` commands keeps them as they are (the old lease's clean-up
    and the new one's set-up, ~8 ``ip`` runs, are what the built-in pays
    here), any other replaces them. The fallback (cloud-init's DHCP) or no
    lease yet: a teardown and a new lease, as before.
    """
    from cloudinit_azure.network.clients import find_client
    from cloudinit_azure.network.nics import link_is_up
    from cloudinit_azure.network.routes import lease_steps, link_steps

    old, client = dhcp.lease, find_client(dhcp.root)
    if old is None or dhcp._work is None or client is None or dhcp._unusable(client):
        dhcp.__exit__(None, None, None)
        return dhcp.__enter__()
    start = dhcp.clock()
    # A fresh private directory: the first run's pid file names a dhclient long gone.
    shutil.rmtree(dhcp._work, ignore_errors=True)
    dhcp._work = Path(tempfile.mkdtemp(prefix=f"dhcp-{dhcp.nic}.", dir=dhcp.tmp_parent))
    try:
        dhcp._wait_for_carrier()
        lease = dhcp._obtain(client)
        kept = lease_steps(lease, dhcp.nic) == lease_steps(old, dhcp.nic)
        if not kept:
            dhcp._undo_all()
            up = link_is_up(dhcp.root / "sys/class/net", dhcp.nic)
            for step in link_steps(dhcp.nic, up) + lease_steps(lease, dhcp.nic):
                dhcp._apply(step, client.name)
    except BaseException:
        dhcp._cleanup()
        raise
    dhcp.lease = replace(lease, seconds=dhcp.clock() - start)
    LOG.info("ephemeral DHCP on %s renewed: %s/%s in %.3f s (%s)", dhcp.nic, lease.address,
             lease.prefix, dhcp.lease.seconds,
             "the same lease: its configuration kept" if kept else "the new lease applied")
    return dhcp.lease


def forget_unplugged(dhcp: Any) -> None:
    """A lease whose NIC was unplugged: its address and routes went with the NIC.

    Nothing is undone (every ``ip`` run would fail, ~4 of them, on the way to
    the new NIC's lease); the client and the private files are still cleaned
    up by the lease's own teardown.
    """
    dhcp._undo.clear()


def marker_path(data_dir: str, root: Path) -> Path:
    return root / data_dir.lstrip("/") / MARKER


def read_marker(path: Path) -> Optional[str]:
    """The pool kind whose Ready went out on an earlier boot, if any."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class LiveReuse:
    """:class:`pps.Reuse` on this machine."""

    def __init__(self, *, root: Path, imds_url: str, marker: Path,
                 report_ready: Callable[[], None], renew: Callable[[], None],
                 client: Optional[HttpClient] = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.root = Path(root)
        self.marker = marker
        self._report_ready = report_ready
        self._renew = renew
        self.client = client or imds_client(imds_url, policy=FETCH_POLICY)
        self.sleep = sleep
        self.sock: Optional[socket.socket] = None
        self.tracker = pps.LinkTracker()

    # -- link events ---------------------------------------------------------
    def open_watch(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        sock.bind((0, RTMGRP_LINK))
        sock.setblocking(False)
        self.sock = sock
        self.tracker = pps.LinkTracker(known=self._ifindexes())

    def _ifindexes(self) -> list[int]:
        out = []
        for entry in (self.root / "sys/class/net").glob("*/ifindex"):
            try:
                out.append(int(entry.read_text().strip()))
            except (OSError, ValueError):
                continue
        return out

    def close_watch(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def wait_link(self, what: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.tracker.happened(what):
            left = deadline - time.monotonic()
            if left <= 0 or self.sock is None:
                return False
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                continue
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                continue
            events = pps.parse_link_messages(data)
            for e in events:
                LOG.debug("link event: %s", e)
            self.tracker.feed(events)
        return True

    # -- platform --------------------------------------------------------------
    def renew_lease(self) -> None:
        self._renew()

    def fetch(self) -> tuple[Optional[int], bytes]:
        try:
            resp = self.client.get(REPROVISION_PATH, return_statuses=ALL_ERRORS)
        except ProvisioningError as exc:
            LOG.debug("reprovisiondata: no answer (%s)", exc)
            return None, b""
        return resp.status, resp.body

    def report_pool_ready(self) -> None:
        self._report_ready()

    def remember_pool(self, kind: str) -> None:
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.marker.with_suffix(".tmp")
        tmp.write_text(kind + "\n")
        os.replace(tmp, self.marker)

    def forget_pool(self) -> None:
        try:
            self.marker.unlink()
        except FileNotFoundError:
            pass
