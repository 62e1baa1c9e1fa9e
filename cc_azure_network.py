"""cloud-init finds config module `azure_network` as this top-level module."""

from cloudinit_azure.modules.network import handle, meta  # noqa: F401
