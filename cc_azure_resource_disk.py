"""cloud-init finds config module `azure_resource_disk` as this top-level module."""

from cloudinit_azure.modules.resource_disk import handle, meta  # noqa: F401
