"""cloud-init finds config module `azure_kernel` as this top-level module."""

from cloudinit_azure.modules.kernel import handle, meta  # noqa: F401
