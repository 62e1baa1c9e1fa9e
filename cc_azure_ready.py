"""cloud-init finds config module `azure_ready` as this top-level module."""

from cloudinit_azure.modules.ready import handle, meta  # noqa: F401
