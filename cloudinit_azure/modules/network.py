"""cloud-init config module ``azure_network``: adapter over :mod:`cloudinit_azure.network`.

Once per instance: routes to the wireserver and IMDS, the udev
persistent-net mask, the host name sent with DHCP (Azure DNS registers it),
and optionally the SSH host key thumbprint. Runs in the config stage, after
cloud-init has set the host name. Everything that decides lives in the core.
"""

from __future__ import annotations

from cloudinit_azure import network, settings
from cloudinit_azure.host import this_machine
from cloudinit_azure.modules import module_call

NAMESPACE = "azure_network"

meta = {
    "id": "cc_azure_network",
    "frequency": "once-per-instance",
    "distros": ["all"],
}


def handle(*args, **kwargs) -> None:
    """Validate ``azure_network:`` and apply every enabled part to this machine."""
    call = module_call(args, kwargs, __name__)
    config = settings.load(NAMESPACE, call.cfg)
    datasource = getattr(call.cloud, "datasource", None)
    host = this_machine()
    outcome = network.configure(
        config,
        root=host.root,
        runner=host.runner,
        hostname=network.configured_hostname(call.cfg, getattr(call.cloud, "get_hostname", None)),
        wireserver=getattr(datasource, "wireserver_address", None),
        primary_mac=getattr(datasource, "primary_mac", None),
        log=call.log,
        kill=host.kill,
    )
    call.log.debug("azure_network: %s", outcome)
