"""cloud-init datasource ``Azure``: a thin mapping of cloud-init's API onto the flow.

Found through ``datasource_pkg_list: [cloudinit_azure.sources]`` (it shadows the
built-in). ``_get_data`` runs :func:`cloudinit_azure.flow.run` in init-local and keeps
the frozen state it returns (pickled in obj.pkl) for the later stages and ``azure_ready``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Optional

from cloudinit import sources

# Only what every stage needs (each unpickles this object); the rest loads on use.
from cloudinit_azure import atomic, flowstate, metadata, settings
from cloudinit_azure.report import ConfigError

LOG = logging.getLogger(__name__)
AZURE_CHASSIS_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"


def _read_dmi(key: str) -> Optional[str]:
    from cloudinit import dmi
    value = dmi.read_dmi_data(key)
    return value.strip() if value else None


class DataSourceAzure(sources.DataSource):
    dsname = "Azure"

    def __init__(self, sys_cfg: Any, distro: Any, paths: Any, ud_proc: Any = None) -> None:
        super().__init__(sys_cfg, distro, paths, ud_proc)
        self._init_state()

    def _init_state(self) -> None:
        self.settings: dict[str, Any] = {}
        self.settings_error: Optional[ConfigError] = None
        self._detected: Optional[bool] = None
        self.state: Optional[flowstate.FlowState] = None
        self._network_cfg: Optional[dict] = None
        self._config: dict[str, Any] = {}

    def _unpickle(self, ci_pkl_version: int) -> None:
        """Objects pickled by an older plug-in gain the attributes added since."""
        super()._unpickle(ci_pkl_version)
        legacy = dict(vars(self))
        (fresh := DataSourceAzure.__new__(DataSourceAzure))._init_state()
        for key, value in vars(fresh).items():
            self.__dict__.setdefault(key, value)
        self.state = self.state or flowstate.from_legacy(legacy)

    def _settings(self) -> dict[str, Any]:
        """The ``datasource: Azure:`` settings; a bad one is kept to be reported, not raised."""
        if not self.settings:
            try:
                self.settings = settings.load_datasource(self.sys_cfg, log=LOG)
            except ConfigError as exc:
                self.settings_error = exc
                self.settings = settings.load_datasource({})
        return self.settings

    def _on_azure(self) -> bool:
        """Milliseconds, no network, once per boot: the chassis asset tag, or a seed file."""
        if self._detected is None:
            self._detected = os.path.exists(os.path.join(
                self._settings()["seed_dir"], "ovf-env.xml")) or \
                _read_dmi("chassis-asset-tag") == AZURE_CHASSIS_ASSET_TAG
            LOG.debug("%s", "on Azure" if self._detected else
                      "not on Azure (no chassis asset tag, no seed)")
        return self._detected

    ds_detect = _on_azure  # cloud-init 23.2+ asks it before _get_data

    def _get_subplatform(self) -> str:
        return flowstate.subplatform(self.state or flowstate.FlowState(None))

    def _get_data(self) -> bool:
        """init-local: the whole flow, Ready or ProvisioningFailed included."""
        from cloudinit_azure import flow, host
        from cloudinit_azure.platform import LivePlatform
        from cloudinit_azure.sources import machine

        cfg = self._settings()
        if not self._on_azure():
            return False
        self._drop_torn_state()
        here = host.this_machine()
        platform = LivePlatform(cfg, host=here, mount=machine.mount_reader,
                                dhcp_fallback=lambda nic: machine.cloudinit_dhcp(self.distro, nic))
        platform.truncate_stale_kvp()
        seam = machine.CloudInitMachine(self.distro, self.sys_cfg, self.paths, here)
        self.state = flow.run(platform, seam, flowstate.flow_config(cfg),
                              system_uuid=_read_dmi("system-uuid") or "",
                              previous_instance_id=machine.previous_instance_id(self.paths),
                              settings_error=self.settings_error)
        plan = self.state.provisioning
        if not self.state.provisioned or plan is None:
            return False
        self.metadata = dict(plan.metadata)
        self.userdata_raw = plan.userdata or b""
        self._config = flowstate.cloud_config(self.state, self.sys_cfg.get("cloud_init_modules"),
                                              cfg["insert_modules"])
        self.cfg = self._config
        return True

    def get_config_obj(self) -> dict[str, Any]:
        return self._config

    def get_public_ssh_keys(self) -> list[str]:
        return list(self.metadata.get("public-keys") or [])

    def device_name_to_device(self, name: str) -> Optional[str]:
        # ephemeral0 is azure_resource_disk's: cloud-init's mounts must not act on it.
        return None

    def _drop_torn_state(self) -> None:
        """A power cut can leave 22.4's set-hostname empty: its reader would fail the stage."""
        atomic.drop_empty([os.path.join(self.paths.get_cpath("data"), "set-hostname")])

    def check_instance_id(self, sys_cfg: Any) -> bool:
        """On reboot: same VM (up to case or Gen1/Gen2 byte order) keeps its cache."""
        self._drop_torn_state()  # a cached datasource never runs _get_data
        return flowstate.same_instance(_read_dmi("system-uuid") or "",
                                       (self.metadata or {}).get("instance-id"))

    @property
    def network_config(self) -> Optional[dict]:
        if self._network_cfg is None and self.state is not None and self.state.provisioned:
            from cloudinit_azure.network import names_by_mac
            self._network_cfg = flowstate.network_config(
                self.state, self.settings, names_by_mac(Path("/sys/class/net")))
        return self._network_cfg

    # v1 instance data as the built-in gives it (cloudinit_azure.metadata). IMDS
    # userData is root-only, as 25.1 does by its lower-cased "userdata".
    sensitive_metadata_keys = sources.DataSource.sensitive_metadata_keys + ("userData",)

    region = property(lambda self: metadata.region(self.metadata or {}))
    availability_zone = property(lambda self: metadata.availability_zone(self.metadata or {}))


datasources = [(DataSourceAzure, (sources.DEP_FILESYSTEM,))]


def get_datasource_list(depends: Any) -> list:
    return sources.list_from_depends(depends, datasources)
