"""Config module ``azure_ready``: what the init-local flow leaves to the init stage.

Runs on every boot (it is cheap when there is nothing to do). On the fallback
path (init-local could not safely create the account, e.g. /home not mounted
yet) it is listed after cloud-init's ``users_groups`` and ``ssh``: it sets
sshd's password authentication, installs the OVF key pairs and reports Ready.
On any boot it delivers a Ready or failure report that an earlier boot could
not deliver, exactly once. Does nothing for other datasources.
"""

from __future__ import annotations

from typing import Any

from cloudinit_azure import settings
from cloudinit_azure.modules import module_call

NAMESPACE = "azure_ready"

meta: dict[str, Any] = {
    "id": "cc_azure_ready",
    "name": "Azure Ready",
    "title": "Report Ready to the Azure platform (fallback path, pending reports)",
    "description": __doc__,
    "distros": ["all"],
    "frequency": "always",
    "activate_by_schema_keys": [],
}


def handle(*args: Any, **kwargs: Any) -> None:
    from cloudinit_azure import deferred, flowstate
    from cloudinit_azure.host import this_machine
    from cloudinit_azure.platform import LivePlatform
    from cloudinit_azure.sources.DataSourceAzure import DataSourceAzure
    from cloudinit_azure.sources.machine import CloudInitMachine

    call = module_call(args, kwargs, __name__)
    settings.load(NAMESPACE, call.cfg)  # no keys yet: a stray one is an error, as elsewhere
    ds = call.cloud.datasource if call.cloud is not None else None
    if not isinstance(ds, DataSourceAzure) or ds.state is None or not ds.state.provisioned:
        call.log.info("azure_ready: this instance was not provisioned by cloudinit-azure; "
                      "nothing to report")
        return
    host = this_machine()
    result = deferred.after_init_local(
        ds.state, LivePlatform(ds.settings, host=host),
        CloudInitMachine(call.cloud.distro, call.cfg, call.cloud.paths, host),
        flowstate.flow_config(ds.settings))
    call.log.info("azure_ready: %s", result or "nothing to do (Ready sent from init-local)")
