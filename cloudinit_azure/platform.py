"""The flow's :class:`~cloudinit_azure.flow.Platform` seam against the real platform.

Media, ephemeral DHCP, IMDS, the wireserver, KVP and the report outbox, each
through the module that owns it. No cloud-init import: the datasource adapter
passes in what only cloud-init can do (a mount, its own DHCP helper).
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional

from cloudinit_azure import health, kvp, media, waagent
from cloudinit_azure.flow import Link, Media
from cloudinit_azure.health import Outcome
from cloudinit_azure.host import RUN_DIR, STATE_DIR, Host
from cloudinit_azure.report import MediaError, NoNicError

if TYPE_CHECKING:
    from cloudinit_azure.certificates import CertificateKeys
    from cloudinit_azure.imds import InstanceMetadata

LOG = logging.getLogger(__name__)


class LivePlatform:
    """Everything the flow asks of Azure, configured by the ``datasource: Azure:`` settings."""

    def __init__(self, settings: Mapping[str, Any], *, host: Host,
                 mount: Optional[media.Mount] = None,
                 dhcp_fallback: Optional[Callable[[str], Any]] = None,
                 outbox: Optional[health.Outbox] = None) -> None:
        self.settings = settings
        self.host = host
        self.root = host.root
        self.mount = mount
        self.dhcp_fallback = dhcp_fallback
        self.runner = host.runner
        self.outbox = outbox or health.Outbox(str(host.path(STATE_DIR)), str(host.path(RUN_DIR)))
        self._dhcp: Any = None  # the flow's ephemeral lease (renewed by preprovisioning)
        self._dhcp_ifindex: Optional[str] = None

    def truncate_stale_kvp(self) -> None:
        """Records of an earlier boot would be read as this boot's: once per boot."""
        boot = kvp.boot_time(self.root / "proc")
        if boot is not None:
            try:
                kvp.truncate_if_stale(self.settings["kvp_pool"], boot)
            except OSError as exc:
                LOG.debug("KVP pool not truncated: %s", exc)

    def read_media(self) -> Optional[Media]:
        """Seed, then /dev/sr0; only when neither has it, probe (blkid) for other DVDs."""
        def where(blkid: Mapping[str, str]) -> list[media.Candidate]:
            return media.candidates(self.root, blkid, seed_dir=self.settings["seed_dir"],
                                    data_dir=self.settings["data_dir"])

        quick = [c for c in where({}) if c.kind != "cache"]
        if quick:
            try:
                candidate, data = media.first_ovf(quick, mount=self.mount)
                return Media(candidate.kind, candidate.path, data)
            except MediaError:
                LOG.debug("no ovf-env.xml in %s: probing for other media",
                          [c.path for c in quick])
        found = where(media.probe_block_types(self.runner))
        if not found:
            return None
        candidate, data = media.first_ovf(found, mount=self.mount)
        return Media(candidate.kind, candidate.path, data)

    def cache_ovf(self, redacted: bytes) -> None:
        media.write_cached_copy(self.root, redacted, data_dir=self.settings["data_dir"])

    def hand_off(self, handoff: waagent.Handoff) -> None:
        """What the Azure Linux Agent finds in ``data_dir``; never fails provisioning."""
        try:
            waagent.apply(handoff, self.root / self.settings["data_dir"].lstrip("/"))
        except OSError as exc:
            LOG.error("Azure Linux Agent hand-off %s failed: %s", handoff, exc)

    @contextmanager
    def network(self) -> Iterator[Link]:
        from cloudinit_azure import ephemeral

        sys_net = self.root / "sys/class/net"
        nic = ephemeral.primary_nic(sys_net)
        if nic is None:
            raise NoNicError()
        mac = (sys_net / nic / "address").read_text().strip()
        driver = sys_net / nic / "device/driver"
        self._dhcp = ephemeral.EphemeralDhcp(nic, root=self.root, runner=self.runner,
                                             kill=self.host.kill, fallback=self.dhcp_fallback,
                                             log=LOG)
        self._dhcp_ifindex = _ifindex(sys_net, nic)
        with self._dhcp as lease:
            yield Link(mac, driver.resolve().name if driver.exists() else None,
                       lease.wireserver if lease else None)

    def instance_metadata(self) -> InstanceMetadata:
        from cloudinit_azure.imds import IMDS_POLICY, fetch_instance_metadata, imds_client

        policy = dataclasses.replace(IMDS_POLICY,
                                     deadline_s=float(self.settings["imds_deadline_s"]))
        return fetch_instance_metadata(imds_client(self.settings["imds_url"], policy=policy))

    def certificate_keys(self, wireserver: str, private: bool) -> CertificateKeys:
        from cloudinit_azure.certificates import fetch_certificate_keys
        from cloudinit_azure.wireserver import WireserverClient, wireserver_url

        client = WireserverClient(wireserver_url(wireserver),
                                  budget_s=float(self.settings["failure_report_budget_s"]))
        return fetch_certificate_keys(client, client.goal_state(), runner=self.runner,
                                      private=private)

    def report_health(self, wireserver: str, description: Optional[str],
                      budget_s: float) -> None:
        health.send(wireserver, description, budget_s)

    def kvp(self, key: str, value: str) -> None:
        if key == kvp.REPORT_KEY:
            kvp.report_to_kvp(self.settings["kvp_pool"], value)
        else:
            kvp.diagnostic(self.settings["kvp_pool"], key, value)

    def outcome(self, instance_id: str) -> Optional[Outcome]:
        return self.outbox.get(instance_id)

    def remember(self, instance_id: str, outcome: Outcome) -> None:
        try:
            self.outbox.put(instance_id, outcome)
        except OSError as exc:  # the report itself matters more than its marker
            LOG.error("could not record the %s outcome of %s: %s", outcome.state,
                      instance_id, exc)

    def attempted_this_boot(self, instance_id: str) -> bool:
        return self.outbox.attempted(instance_id)

    def eject(self, device: str) -> None:
        media.eject(device, self.runner)

    # -- preprovisioning (cloudinit_azure.pps) ----------------------------------
    def write_back(self) -> None:
        self.outbox.write_back()

    def pool_marker(self) -> Optional[str]:
        from cloudinit_azure.reuse import marker_path, read_marker

        return read_marker(marker_path(self.settings["data_dir"], self.root))

    def reuse(self, wireserver: str) -> Any:
        from cloudinit_azure.reuse import LiveReuse, marker_path

        budget = float(self.settings["failure_report_budget_s"])
        return LiveReuse(root=self.root, imds_url=self.settings["imds_url"],
                         marker=marker_path(self.settings["data_dir"], self.root),
                         report_ready=lambda: health.send(wireserver, None, budget),
                         renew=self._renew_lease)

    def _renew_lease(self) -> None:
        """A new lease inside the flow's: after a vnet switch, or on a hot-plugged NIC."""
        from cloudinit_azure import ephemeral
        from cloudinit_azure.reuse import forget_unplugged, renew_in_place

        sys_net = self.root / "sys/class/net"
        dhcp = self._dhcp
        gone = _ifindex(sys_net, dhcp.nic) != self._dhcp_ifindex
        if not gone and ephemeral.primary_nic(sys_net) == dhcp.nic:
            renew_in_place(dhcp)  # a vnet switch: the NIC kept its configuration
            return
        eph_log = dhcp.log  # the lease's own logger
        level = eph_log.level
        if gone:  # its addresses and routes went with it: nothing to remove
            LOG.info("%s was unplugged: its old lease is dropped without clean-up", dhcp.nic)
            forget_unplugged(dhcp)
            eph_log.setLevel(logging.ERROR)  # the fallback's own teardown fails, as expected
        failed: Optional[Exception] = None
        try:
            dhcp.__exit__(None, None, None)
        except Exception as exc:
            failed = exc
        finally:
            eph_log.setLevel(level)
        if failed is not None:
            LOG.info("old ephemeral lease not released (%s)", failed)
        nic = ephemeral.primary_nic(sys_net)
        if nic is None:
            raise NoNicError()
        dhcp.nic = nic
        self._dhcp_ifindex = _ifindex(sys_net, nic)
        dhcp.__enter__()


def _ifindex(sys_net: Path, nic: str) -> Optional[str]:
    try:
        return (sys_net / nic / "ifindex").read_text().strip()
    except OSError:
        return None
