"""What the platform asked for, decided: OVF + IMDS (+ certificates) -> one plan.

Pure: takes parsed documents, returns a frozen :class:`Provisioning` that
the datasource adapter hands to cloud-init. Precedence follows cloud-init's
own Azure datasource: IMDS first for host name, user name and keys (it is
the newer source), the OVF media for the password and customData (IMDS
never carries them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from cloudinit_azure import account
from cloudinit_azure.identity import instance_id as choose_instance_id
from cloudinit_azure.imds import InstanceMetadata
from cloudinit_azure.metadata import instance_metadata
from cloudinit_azure.ovf import OvfEnvironment
from cloudinit_azure.report import (
    MissingCustomDataError,
    NoHostNameError,
    NoProvisioningDataError,
    NoUserNameError,
    SshKeyCertificateNotFoundError,
)
from cloudinit_azure.runner import Runner

# Where our config modules go in cloud_init_modules, relative to the
# distro's own entries (names normalised: '-' == '_').
MODULE_PLACEMENT: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # (module, "before"/"after", anchors): first anchor present wins.
    ("azure_kernel", "after", ("seed_random",)),
    ("azure_kernel", "before", ("bootcmd", "write_files", "ssh")),
    ("azure_ready", "after_last", ("users_groups", "ssh", "set_hostname",
                                   "update_hostname", "update_etc_hosts")),
    ("azure_network", "after", ("azure_ready",)),
    ("azure_resource_disk", "after", ("azure_network", "azure_ready")),
)


@dataclass(frozen=True)
class Provisioning:
    """Everything cloud-init gets from the datasource for this instance."""

    instance_id: str
    vm_id: Optional[str]
    hostname: str
    username: str
    public_keys: tuple[str, ...]
    userdata: Optional[bytes] = field(default=None, repr=False)
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    key_pairs: tuple[tuple[str, str], ...] = ()  # (fingerprint, path)


def fingerprints_needed(ovf: Optional[OvfEnvironment],
                        imds: Optional[InstanceMetadata]) -> tuple[str, ...]:
    """Certificates to fetch: OVF keys given only as fingerprints, when IMDS has none,
    plus every OVF key pair (the private key only comes that way)."""
    if ovf is None:
        return ()
    wanted: list[str] = []
    if not (imds and imds.public_keys):
        wanted += [k.fingerprint for k in ovf.public_keys
                   if not k.value and k.fingerprint]
    wanted += [p.fingerprint for p in ovf.key_pairs if p.fingerprint]
    return tuple(dict.fromkeys(wanted))


def public_keys(ovf: Optional[OvfEnvironment], imds: Optional[InstanceMetadata],
                cert_keys: Mapping[str, str]) -> list[str]:
    """IMDS keys first; else the OVF's values; else goal-state certificates."""
    if imds and imds.public_keys:
        return [key for key, _path in imds.public_keys]
    keys: list[str] = []
    for key in ovf.public_keys if ovf else ():
        if key.value:
            keys.append(key.value)
        elif key.fingerprint:
            found = cert_keys.get(key.fingerprint.upper())
            if found is None:
                raise SshKeyCertificateNotFoundError(fingerprint=key.fingerprint)
            keys.append(found)
    return keys


def plan(ovf: Optional[OvfEnvironment], imds: Optional[InstanceMetadata], *,
         system_uuid: str, previous_instance_id: Optional[str] = None,
         cert_keys: Optional[Mapping[str, str]] = None,
         existing_users: Optional[Mapping[str, int]] = None,
         runner: Runner, sudo: Optional[str] = "auto") -> Provisioning:
    """Decide the instance from the platform's documents (raises ProvisioningError).

    ``sudo`` is the ``datasource: Azure: sudo:`` policy (:func:`account.sudo_rule`).
    """
    if ovf is None and imds is None:
        raise NoProvisioningDataError()
    if ovf is None and imds is not None and imds.has_custom_data:
        raise MissingCustomDataError()
    hostname = (imds.computer_name if imds else None) or (ovf.hostname if ovf else None)
    username = (imds.admin_username if imds else None) or (ovf.username if ovf else None)
    if not hostname:
        raise NoHostNameError()
    if not username:
        raise NoUserNameError()
    disable = ovf.disable_ssh_password_auth if ovf else None
    if disable is None and imds is not None:
        disable = imds.disable_password_authentication
    keys = public_keys(ovf, imds, cert_keys or {})
    user = account.plan_user(username, ovf.password if ovf else None, keys, disable,
                             hostname, existing_users, runner=runner, sudo=sudo)
    userdata = ovf.custom_data if ovf and ovf.custom_data else (
        imds.user_data if imds else None)
    iid = choose_instance_id(system_uuid, previous_instance_id)
    metadata = instance_metadata(instance_id=iid, local_hostname=user.hostname,
                                 imds_document=imds.raw if imds else None,
                                 public_keys=user.ssh_keys)
    return Provisioning(
        instance_id=iid,
        vm_id=imds.vm_id if imds else None,
        hostname=user.hostname or hostname,
        username=user.name,
        public_keys=user.ssh_keys,
        userdata=userdata,
        config=account.cloud_config(user),
        metadata=metadata,
        key_pairs=tuple((p.fingerprint, p.path) for p in (ovf.key_pairs if ovf else ())),
    )


def _norm(entry: Any) -> str:
    name = entry[0] if isinstance(entry, (list, tuple)) and entry else entry
    return str(name).replace("-", "_")


def place_modules(modules: Sequence[Any],
                  placement: Sequence[tuple[str, str, tuple[str, ...]]] = MODULE_PLACEMENT,
                  ) -> list[Any]:
    """Insert our modules into a distro's ``cloud_init_modules`` list.

    cloud.cfg.d files replace lists rather than append, and the lists differ
    between cloud-init releases and distros, so we add ours relative to the
    list cloud-init actually has. A module the image author already listed
    stays where they put it.
    """
    out = list(modules)
    present = {_norm(m) for m in out}
    order: list[str] = []
    for name, _how, _anchors in placement:
        if name not in order:
            order.append(name)
    for name in order:
        if name in present:
            continue
        index: Optional[int] = None
        for rule_name, how, anchors in placement:
            if rule_name != name or index is not None:
                continue
            names = [_norm(m) for m in out]
            if how == "after_last":
                hits = [i for i, n in enumerate(names) if n in anchors]
                index = max(hits) + 1 if hits else None
                continue
            for anchor in anchors:
                if anchor in names:
                    index = names.index(anchor) + (1 if how == "after" else 0)
                    break
        out.insert(len(out) if index is None else index, name)
    return out
