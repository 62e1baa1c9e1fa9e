"""The provisioning flow's seams and its result, and how the result maps onto cloud-init.

:class:`Platform` and :class:`Machine` are what :mod:`cloudinit_azure.flow`
asks of the world; :class:`FlowState` is the one frozen object it returns,
which the datasource keeps (pickled in obj.pkl) for the later stages. The
functions at the end turn a state into what cloud-init asks the datasource
for (config, network config), and rebuild a state from an object pickled by
an older plug-in. Pure: no cloud-init import, no I/O.
"""

from __future__ import annotations

import copy
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Optional, Protocol, Sequence

from cloudinit_azure import identity, provision, waagent
from cloudinit_azure.health import Outcome
from cloudinit_azure.report import ApplyError, ProvisioningError  # noqa: F401 (ApplyError: flow's import)
from cloudinit_azure.settings import DATASOURCE_NAMESPACE, with_defaults
from cloudinit_azure.wireserver import DEFAULT_WIRESERVER

if TYPE_CHECKING:  # every stage unpickles the state: keep its imports light
    from cloudinit_azure import keypairs
    from cloudinit_azure.certificates import CertificateKeys
    from cloudinit_azure.imds import InstanceMetadata
    from cloudinit_azure.runner import Runner

LOG = logging.getLogger(__name__)
READY_FROM_INIT_LOCAL = "init-local"
READY_FROM_MODULE = "azure_ready"


# --- values crossing the seams ------------------------------------------------

@dataclass(frozen=True)
class Media:
    kind: str  # "seed", "device" or "cache"
    path: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Link:
    """The primary NIC as the ephemeral lease found it."""

    mac: Optional[str] = None
    driver: Optional[str] = None
    option_245: Optional[str] = None


@dataclass(frozen=True)
class Phase:
    name: str
    outcome: str  # "ok", "failed", "skipped", "deferred", "fallback"
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class FlowConfig:
    wireserver: Optional[str] = None
    failure_budget_s: float = 120.0
    ready_budget_s: float = 1200.0
    eject_media: bool = True
    sudo: str = "auto"  # the admin's sudoers policy (account.sudo_rule)


@dataclass(frozen=True)
class FlowState:
    """Everything later stages need, kept by the datasource (pickled in obj.pkl)."""

    instance_id: Optional[str]
    provisioning: Optional[provision.Provisioning] = None
    failure: Optional[str] = None
    wireserver: str = DEFAULT_WIRESERVER
    media_kind: Optional[str] = None
    media_device: Optional[str] = None
    link: Link = Link()
    imds_network: Optional[Mapping[str, Any]] = None
    imds_problem: Optional[str] = None
    ready_from: str = READY_FROM_INIT_LOCAL
    deferred_reason: Optional[str] = None
    key_pairs: tuple[tuple[str, str], ...] = ()  # staged for azure_ready: (fingerprint, path)
    host_keys: tuple[str, ...] = ()
    phases: tuple[Phase, ...] = ()

    @property
    def provisioned(self) -> bool:
        return self.provisioning is not None and self.failure is None


class Platform(Protocol):
    def read_media(self) -> Optional[Media]: ...  # None: no media at all; MediaError
    def cache_ovf(self, redacted: bytes) -> None: ...
    def hand_off(self, handoff: waagent.Handoff) -> None: ...  # never raises
    def network(self) -> AbstractContextManager[Link]: ...  # DhcpError
    def instance_metadata(self) -> InstanceMetadata: ...  # ImdsError
    def certificate_keys(self, wireserver: str, private: bool) -> CertificateKeys: ...
    def report_health(self, wireserver: str, description: Optional[str],
                      budget_s: float) -> None: ...  # None: Ready; raises ProvisioningError
    def kvp(self, key: str, value: str) -> None: ...
    def outcome(self, instance_id: str) -> Optional[Outcome]: ...
    def remember(self, instance_id: str, outcome: Outcome) -> None: ...
    def attempted_this_boot(self, instance_id: str) -> bool: ...
    def eject(self, device: str) -> None: ...
    def pool_marker(self) -> Optional[str]: ...  # preprovisioning: the pool Ready went out
    def write_back(self) -> None: ...  # preprovisioning: sync what the wait wrote
    def reuse(self, wireserver: str) -> Any: ...  # preprovisioning: a pps.Reuse


class Machine(Protocol):
    runner: Runner  # password hashing (openssl) where crypt(3) is absent

    def existing_users(self) -> Mapping[str, int]: ...
    def home_dir(self, username: str) -> str: ...
    def account_blocker(self, home: str) -> Optional[str]: ...  # why not now, or None
    def prepare_account(self) -> None: ...  # preprovisioning: what no customer changes
    def create_user(self, plan: provision.Provisioning) -> None: ...
    def remove_user(self, name: str) -> None: ...
    def set_password_auth(self, allow: bool) -> None: ...
    def password_auth_in_drop_in(self) -> bool: ...  # False: it rewrites sshd_config
    def install_key_pairs(self, username: str,
                          files: Sequence[keypairs.KeyPairFile]) -> None: ...
    def stage_key_pairs(self, files: Sequence[keypairs.KeyPairFile]) -> None: ...
    def generate_host_keys(self, new_instance: bool) -> tuple[str, ...]: ...
    def set_hostname(self, hostname: str) -> None: ...


# --- what cloud-init gets ---------------------------------------------------------

def same_instance(system_uuid: str, cached_instance_id: Optional[str]) -> bool:
    """On reboot: the same VM (up to case or Gen1/Gen2 byte order) keeps its cache."""
    if not cached_instance_id or not identity.is_uuid(system_uuid):
        return False
    return identity.instance_id(system_uuid, cached_instance_id) == cached_instance_id


def subplatform(state: FlowState) -> str:
    """cloud-init's ``subplatform`` (shown by ``cloud-init query``): where the OVF came from."""
    names = {"seed": "seed-dir", "device": "config-disk", "cache": "cached"}
    if state.media_kind in names:
        return f"{names[state.media_kind]} ({state.media_device})"
    return "imds"


def flow_config(settings: Mapping[str, Any]) -> FlowConfig:
    """The flow's part of the validated ``datasource: Azure:`` settings."""
    settings = with_defaults(DATASOURCE_NAMESPACE, settings)
    return FlowConfig(wireserver=settings["wireserver"],
                      failure_budget_s=float(settings["failure_report_budget_s"]),
                      ready_budget_s=float(settings["ready_budget_s"]),
                      eject_media=bool(settings["eject_media"]),
                      sudo=settings["sudo"])


def cloud_config(state: FlowState, modules: Optional[Sequence[Any]],
                 insert_modules: bool) -> dict[str, Any]:
    """``get_config_obj()``: the plan's config, adjusted to what init-local already did.

    After the account was made in init-local, the init stage's
    ``users_groups`` re-applies the same user; its sudo rule is already
    written (cloud-init 22.4 would append it twice), so ``sudo`` is null.
    Host keys made before Ready must survive ``cc_ssh``: ``ssh_deletekeys``
    is false. ``disk_setup`` is empty, not absent: cloud-init skips a module
    without config and records nothing, so after an ``apt remove`` its own
    datasource ran ``disk_setup`` for the first time on this instance and
    reformatted the resource disk our module had set up (docs/packaging.md).
    """
    plan = state.provisioning
    cfg: dict[str, Any] = copy.deepcopy(dict(plan.config)) if plan else {}
    user = (cfg.get("system_info") or {}).get("default_user")
    if state.ready_from == READY_FROM_INIT_LOCAL and isinstance(user, dict):
        user["sudo"] = None
    if state.host_keys:
        cfg["ssh_deletekeys"] = False
    cfg.setdefault("disk_setup", {})
    if insert_modules:
        cfg["cloud_init_modules"] = provision.place_modules(modules or [])
    return cfg


def network_config(state: FlowState, settings: Mapping[str, Any],
                   names: Mapping[str, str]) -> Optional[dict[str, Any]]:
    """The IMDS network config (or DHCP on the primary NIC); None when turned off."""
    from cloudinit_azure.network import netconfig

    settings = with_defaults(DATASOURCE_NAMESPACE, settings)
    if not settings["apply_network_config"]:
        return None
    config, problem = netconfig.network_config_or_fallback(
        state.imds_network, nic_driver=state.link.driver, names=names,
        apply_secondary_ips=settings["apply_network_config_for_secondary_ips"],
        primary_mac=state.link.mac)
    if problem:
        LOG.warning("IMDS network data unusable (%s): DHCP on the primary NIC", problem)
    return config


def from_legacy(attrs: Mapping[str, Any]) -> Optional[FlowState]:
    """The state of an object pickled by a plug-in before the flow (loose attributes)."""
    metadata = attrs.get("metadata") or {}
    if not attrs.get("provisioned") or "instance-id" not in metadata:
        return None
    config = {k: v for k, v in (attrs.get("_config") or {}).items()
              if k != "cloud_init_modules"}
    user = ((config.get("system_info") or {}).get("default_user") or {}).get("name", "")
    plan = provision.Provisioning(
        instance_id=metadata["instance-id"], vm_id=attrs.get("vm_id"),
        hostname=metadata.get("local-hostname", ""), username=user,
        public_keys=tuple(metadata.get("public-keys") or ()), config=config,
        metadata=dict(metadata),
        key_pairs=tuple(tuple(p) for p in attrs.get("key_pairs") or ()))
    return FlowState(
        instance_id=metadata["instance-id"], provisioning=plan,
        wireserver=attrs.get("wireserver_address") or DEFAULT_WIRESERVER,
        media_kind=attrs.get("media_kind"), media_device=attrs.get("media_device"),
        link=Link(attrs.get("primary_mac"), attrs.get("_nic_driver")),
        imds_network=attrs.get("_imds_network"), ready_from=READY_FROM_MODULE,
        key_pairs=plan.key_pairs)
