"""cloud-init datasource ``Azure``: a thin adapter over cloudinit_azure's core.

Found by cloud-init through ``datasource_pkg_list: [cloudinit_azure.sources]``
(it shadows the built-in datasource of the same name). Runs in init-local:
reads ovf-env.xml from the provisioning media, brings up a short-lived DHCP
lease on the primary NIC, asks IMDS (and the wireserver only for
certificates), and hands cloud-init metadata, user-data and config. A
failure is reported to the platform at once; Ready is sent later by the
``azure_ready`` config module, when the user can actually log in.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from cloudinit import sources

# Only what every stage needs is imported here: cloud-init unpickles this
# datasource in every stage, and most never crawl. The rest loads on use.
from cloudinit_azure import identity, settings
from cloudinit_azure.report import DhcpError, ProvisioningError

LOG = logging.getLogger(__name__)
DS_NAME = "Azure"
AZURE_CHASSIS_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"


def _read_dmi(key: str) -> Optional[str]:
    from cloudinit import dmi

    value = dmi.read_dmi_data(key)
    return value.strip() if value else None


def on_azure(seed_dir: str) -> bool:
    """Milliseconds and no network: the chassis asset tag, or a seed file."""
    if os.path.exists(os.path.join(seed_dir, "ovf-env.xml")):
        return True
    return _read_dmi("chassis-asset-tag") == AZURE_CHASSIS_ASSET_TAG


def _mount_reader(device: str) -> Optional[bytes]:
    """Mount the DVD read-only where the kernel can; None where it cannot."""
    try:
        with open("/proc/filesystems", encoding="ascii") as fh:
            known = fh.read()
    except OSError:
        return None
    if "udf" not in known and "iso9660" not in known:
        return None  # no driver loaded: read the image directly instead
    from cloudinit import util

    def read(mountpoint: str) -> bytes:
        return Path(mountpoint, "ovf-env.xml").read_bytes()

    try:
        return util.mount_cb(device, read, mtype=["udf", "iso9660"])
    except Exception as exc:  # cloud-init raises MountFailedError and OSErrors
        LOG.debug("mounting %s failed (%s); reading the image directly", device, exc)
        return None


class DataSourceAzure(sources.DataSource):
    dsname = DS_NAME

    def __init__(self, sys_cfg: Any, distro: Any, paths: Any, ud_proc: Any = None) -> None:
        super().__init__(sys_cfg, distro, paths, ud_proc)
        self._init_state()

    def _init_state(self) -> None:
        self.settings: dict[str, Any] = {}
        self._detected: Optional[bool] = None
        self.wireserver_address: Optional[str] = None
        self.primary_mac: Optional[str] = None
        self.media_device: Optional[str] = None
        self.media_kind: Optional[str] = None
        self.provisioned = False
        self.vm_id: Optional[str] = None
        self._imds_network: Optional[dict] = None
        self._nic_driver: Optional[str] = None
        self._network_cfg: Optional[dict] = None
        self._config: dict[str, Any] = {}
        self.key_pairs: list = []

    def _unpickle(self, ci_pkl_version: int) -> None:
        """Objects pickled by an older plug-in gain the attributes added since."""
        super()._unpickle(ci_pkl_version)
        fresh = DataSourceAzure.__new__(DataSourceAzure)
        DataSourceAzure._init_state(fresh)
        for key, value in vars(fresh).items():
            if not hasattr(self, key):
                setattr(self, key, value)

    # -- detection --------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        """The validated ``datasource: Azure:`` settings, loaded once per object."""
        if not self.settings:
            ds_cfg = (self.sys_cfg.get("datasource") or {}).get(DS_NAME) or {}
            self.settings = settings.load("datasource_azure", {"datasource_azure": ds_cfg})
        return self.settings

    def _on_azure(self) -> bool:
        """Detection, done once: 23.2+ asks ds_detect() and then _get_data()."""
        if self._detected is None:
            started = time.monotonic()
            self._detected = on_azure(self._settings()["seed_dir"])
            if not self._detected:
                LOG.debug("not on Azure (no chassis asset tag, no seed): %.1f ms",
                          (time.monotonic() - started) * 1000)
        return self._detected

    def ds_detect(self) -> bool:  # cloud-init 23.2+
        return self._on_azure()

    def _get_subplatform(self) -> str:
        if self.media_kind == "seed":
            return f"seed-dir ({self.media_device})"
        if self.media_kind == "device":
            return f"config-disk ({self.media_device})"
        if self.media_kind == "cache":
            return f"cached ({self.media_device})"
        return "imds"

    # -- the crawl --------------------------------------------------------
    def _get_data(self) -> bool:
        try:
            return self._provision()
        except Exception as exc:  # a bug of ours must still end in a report
            LOG.exception("cloudinit-azure: unexpected error while provisioning")
            error = ProvisioningError("unexpected error in the datasource",
                                      exception=type(exc).__name__, detail=str(exc)[:200])
            if self.settings:
                self._report_failure(error, _read_dmi("system-uuid") or "",
                                     self._previous_instance_id())
            return False

    def _provision(self) -> bool:
        from cloudinit_azure import kvp

        started = time.monotonic()
        try:
            cfg = self._settings()
        except ProvisioningError as exc:
            LOG.error("%s", exc)
            return False
        if not self._on_azure():
            return False
        boot = kvp.boot_time()
        if boot is not None:
            try:
                kvp.truncate_if_stale(cfg["kvp_pool"], boot)
            except OSError as exc:
                LOG.debug("KVP pool not truncated: %s", exc)
        system_uuid = _read_dmi("system-uuid") or ""
        previous = self._previous_instance_id()
        pending: Optional[ProvisioningError] = None
        ovf = None
        try:
            ovf = self._read_ovf()
        except ProvisioningError as exc:
            pending = exc
        try:
            with self._platform_network() as lease:
                self.wireserver_address = (cfg["wireserver"]
                                           or (lease.wireserver if lease else None)
                                           or "168.63.129.16")
                if pending is not None:
                    self._report_failure(pending, system_uuid, previous)
                    return False
                try:
                    result = self._crawl(ovf, system_uuid, previous)
                except ProvisioningError as exc:
                    self._report_failure(exc, system_uuid, previous)
                    return False
        except DhcpError as exc:
            # No network: the platform can only learn of this through KVP.
            self.wireserver_address = cfg["wireserver"] or "168.63.129.16"
            self._report_failure(pending or exc, system_uuid, previous)
            return False
        self._apply(result)
        LOG.info("cloudinit-azure: provisioning data for %s ready in %.3f s",
                 result.instance_id, time.monotonic() - started)
        return True

    def _previous_instance_id(self) -> Optional[str]:
        try:
            path = os.path.join(self.paths.get_cpath("data"), "instance-id")
            with open(path, encoding="utf-8") as fh:
                return fh.read().strip() or None
        except OSError:
            return None

    def _read_ovf(self) -> Optional[Any]:
        """Find and parse ovf-env.xml; None when there is no media at all."""
        from cloudinit_azure import media
        from cloudinit_azure.ovf import parse_ovf, redact_ovf
        from cloudinit_azure.runner import run

        found = media.candidates(Path("/"), media.probe_block_types(run),
                                 seed_dir=self.settings["seed_dir"])
        if not found:
            LOG.warning("no provisioning media (seed, DVD, cached copy): IMDS only")
            return None
        candidate, data = media.first_ovf(found, mount=_mount_reader)
        self.media_kind, self.media_device = candidate.kind, candidate.path
        ovf = parse_ovf(data)
        if candidate.kind != "cache":
            # The Azure Linux Agent waits for this copy; the password never lands.
            media.write_cached_copy(Path("/"), redact_ovf(data))
        return ovf

    @contextmanager
    def _platform_network(self) -> Iterator[Any]:
        """A DHCP lease on the primary NIC for the crawl, torn down afterwards."""
        from cloudinit_azure import ephemeral

        nic = ephemeral.primary_nic(Path("/sys/class/net"))
        if nic is None:
            raise DhcpError("no network interface found")
        self.primary_mac = Path(f"/sys/class/net/{nic}/address").read_text().strip()
        driver = Path(f"/sys/class/net/{nic}/device/driver")
        self._nic_driver = driver.resolve().name if driver.exists() else None
        with ephemeral.EphemeralDhcp(nic, fallback=self._cloudinit_dhcp,
                                     log=LOG) as lease:
            yield lease

    def _cloudinit_dhcp(self, nic: str) -> Any:
        """cloud-init's own ephemeral DHCP, for images with no fast client."""
        import inspect

        from cloudinit.net.ephemeral import EphemeralDHCPv4

        params = inspect.signature(EphemeralDHCPv4.__init__).parameters
        if "distro" in params:  # 23.x+
            return EphemeralDHCPv4(self.distro, iface=nic)
        return EphemeralDHCPv4(iface=nic)

    def _crawl(self, ovf: Any, system_uuid: str, previous: Optional[str]) -> Any:
        import dataclasses

        from cloudinit_azure import account, provision
        from cloudinit_azure.imds import IMDS_POLICY, fetch_instance_metadata, imds_client

        cfg = self.settings
        policy = dataclasses.replace(IMDS_POLICY, deadline_s=float(cfg["imds_deadline_s"]))
        imds = fetch_instance_metadata(imds_client(cfg["imds_url"], policy=policy))
        self.vm_id = imds.vm_id
        self._imds_network = (imds.raw or {}).get("network")
        cert_keys: dict[str, str] = {}
        wanted = provision.fingerprints_needed(ovf, imds)
        if wanted:
            cert_keys = self._certificate_keys(ovf, wanted)
        return provision.plan(ovf, imds, system_uuid=system_uuid,
                              previous_instance_id=previous, cert_keys=cert_keys,
                              existing_users=account.read_passwd("/etc/passwd"))

    def _certificate_keys(self, ovf: Any, wanted: tuple[str, ...]) -> dict[str, str]:
        from cloudinit_azure import keypairs
        from cloudinit_azure.certificates import fetch_certificate_keys
        from cloudinit_azure.wireserver import WireserverClient, wireserver_url

        client = WireserverClient(wireserver_url(self.wireserver_address),
                                  budget_s=float(self.settings["failure_report_budget_s"]))
        keys = fetch_certificate_keys(client, client.goal_state(),
                                      private=bool(ovf and ovf.key_pairs))
        keypairs.stage(keys.private_keys, keys.public_keys)
        return dict(keys.public_keys)

    def _report_failure(self, error: ProvisioningError, system_uuid: str,
                        previous: Optional[str]) -> None:
        from cloudinit_azure.health import Reporter

        iid = None
        if identity.is_uuid(system_uuid):
            iid = identity.instance_id(system_uuid, previous)
        reporter = Reporter(self.wireserver_address or "168.63.129.16",
                            kvp_pool=self.settings["kvp_pool"], vm_id=self.vm_id,
                            budget_s=float(self.settings["failure_report_budget_s"]))
        try:
            reporter.failure(error, iid)
        except Exception as exc:  # reporting must never turn into a traceback
            LOG.error("failure report not sent: %s", exc)

    def _apply(self, result: Any) -> None:
        from cloudinit_azure import provision

        self.provisioned = True
        self.metadata = dict(result.metadata)
        self.userdata_raw = result.userdata or b""
        config = dict(result.config)
        if self.settings["insert_modules"]:
            modules = self.sys_cfg.get("cloud_init_modules") or []
            config["cloud_init_modules"] = provision.place_modules(modules)
        self.key_pairs = [list(p) for p in result.key_pairs]
        self._config = config
        self.cfg = config

    # -- what cloud-init asks afterwards ----------------------------------
    def get_config_obj(self) -> dict[str, Any]:
        return self._config

    def get_public_ssh_keys(self) -> list[str]:
        return list(self.metadata.get("public-keys") or [])

    def device_name_to_device(self, name: str) -> Optional[str]:
        # ephemeral0 is azure_resource_disk's: cloud-init's mounts must not act on it.
        return None

    def check_instance_id(self, sys_cfg: Any) -> bool:
        """On reboot: same VM (up to case or Gen1/Gen2 byte order) keeps its cache."""
        if not self.metadata or "instance-id" not in self.metadata:
            return False
        current = _read_dmi("system-uuid") or ""
        if not identity.is_uuid(current):
            return False
        return identity.instance_id(current, self.metadata["instance-id"]) == \
            self.metadata["instance-id"]

    @property
    def network_config(self) -> Optional[dict]:
        if self._network_cfg is None and self.provisioned:
            from cloudinit_azure import netconfig
            from cloudinit_azure.network import names_by_mac

            if not self.settings.get("apply_network_config", True):
                return None
            self._network_cfg, problem = netconfig.network_config_or_fallback(
                self._imds_network, nic_driver=self._nic_driver,
                apply_secondary_ips=self.settings.get(
                    "apply_network_config_for_secondary_ips", True),
                names=names_by_mac(Path("/sys/class/net")),
                primary_mac=self.primary_mac)
            if problem:
                LOG.warning("IMDS network data unusable (%s): DHCP on the primary NIC",
                            problem)
        return self._network_cfg

    # -- v1 instance data, read as the built-in reads it (cloudinit_azure.metadata)
    # ds.meta_data.imds.compute.userData is the user's data: root-only, as 25.1
    # already does by its lower-cased "userdata" (22.4 compares keys exactly).
    sensitive_metadata_keys = sources.DataSource.sensitive_metadata_keys + ("userData",)

    @property
    def region(self) -> Optional[str]:
        from cloudinit_azure import metadata

        return metadata.region(self.metadata or {})

    @property
    def availability_zone(self) -> Optional[str]:
        from cloudinit_azure import metadata

        return metadata.availability_zone(self.metadata or {})


def get_datasource_list(depends: Any) -> list:
    return sources.list_from_depends(depends, datasources)


datasources = [
    (DataSourceAzure, (sources.DEP_FILESYSTEM,)),
]
