"""cloud-init config module ``azure_resource_disk`` (thin adapter).

Runs every boot: formats the Azure resource disk when it is provably empty,
mounts it, keeps fstab and the optional swap file right. All logic lives in
:mod:`cloudinit_azure.resource_disk`; real errors are logged and re-raised
so cloud-init marks this module (and only this module) failed.
"""

from __future__ import annotations

import os
from typing import Any

from cloudinit_azure import resource_disk, settings
from cloudinit_azure.host import this_machine
from cloudinit_azure.modules import module_call
from cloudinit_azure.report import ProvisioningError

# No module-level ``schema``: cloud-init aborts the stage if one exists.
meta: dict[str, Any] = {
    "id": "cc_azure_resource_disk",
    "name": "Azure resource disk",
    "title": "Format and mount the Azure resource (temporary) disk",
    "description": __doc__,
    "distros": ["all"],
    "frequency": "always",
    "examples": [],
    "activate_by_schema_keys": [],
}


def _instance_id(cloud: Any) -> Any:
    getter = getattr(cloud, "get_instance_id", None)
    return getter() if callable(getter) else None


def handle(*args: Any, **kwargs: Any) -> None:
    """cloud-init 22.4 (positional, with log) and 23.2+ (keywords) entry."""
    call = module_call(args, kwargs, __name__)
    try:
        cfg = resource_disk.from_settings(settings.load(resource_disk.NAMESPACE, call.cfg),
                                          call.cfg)
        host = this_machine()
        machine = resource_disk.Machine(root=str(host.root), runner=host.runner,
                                        sleep=host.sleep, clock=host.clock,
                                        mknod=os.mknod, statvfs=os.statvfs)
        resource_disk.setup(cfg, _instance_id(call.cloud), machine, log=call.log)
    except ProvisioningError as err:
        call.log.error("azure_resource_disk: %s", err)
        raise
