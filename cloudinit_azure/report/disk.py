"""Failures of the resource disk module (the VM itself is provisioned by then)."""

from __future__ import annotations

from cloudinit_azure.report.base import ProvisioningError


class ResourceDiskError(ProvisioningError):
    """The resource disk could not be set up; nothing was destroyed by us
    unless the supporting data says the format had already begun."""

    reason = "error setting up the resource disk"
    what_to_do = (
        "Only the azure_resource_disk module failed (the VM is provisioned): read the "
        "reason and cloud-init's log. A configured device or mount point that is missing "
        "or taken is fixed under azure_resource_disk: (docs/resource-disk.md); a failed "
        "mkfs, sfdisk or mount needs its tool in the image ('cloudinit-azure doctor')."
    )


_DISK_CONFIG = ("Fix azure_resource_disk: in the image's cloud.cfg.d (docs/resource-disk.md); "
                "the VM itself is provisioned.")
_DISK_TOOL = ("The image lacks or breaks the tool named by ``tool`` (sfdisk, mkfs.*, mount): "
              "install it ('cloudinit-azure doctor'); the VM itself is provisioned.")
_DISK_PLATFORM = ("The disk changed under the module: redeploy or restart the VM; if it "
                  "persists, the host may be unhealthy. The VM itself is provisioned.")


class ResourceDiskNotFoundError(ResourceDiskError):
    """The configured resource disk ``device`` does not exist."""

    reason = "configured resource disk not found"
    what_to_do = _DISK_CONFIG


class ResourceDiskPartitionError(ResourceDiskError):
    """The configured ``device`` is a partition, not a whole disk."""

    reason = "configured device is a partition; name the whole disk"
    what_to_do = _DISK_CONFIG


class UnsupportedFilesystemError(ResourceDiskError):
    """The configured ``filesystem`` is not one the module can create."""

    reason = "unsupported file system"
    what_to_do = _DISK_CONFIG


class MountPointNotDirectoryError(ResourceDiskError):
    """The configured mount point exists and is not a directory."""

    reason = "mount point exists and is not a directory"
    what_to_do = _DISK_CONFIG


class MountPointBusyError(ResourceDiskError):
    """Another file system is already mounted on the configured mount point."""

    reason = "mount point already has another file system mounted"
    what_to_do = _DISK_CONFIG


class ResourceDiskCommandError(ResourceDiskError):
    """A command setting up the disk exited non-zero (``tool``, ``command``, its ``error``)."""

    reason = "resource disk command failed"
    what_to_do = _DISK_TOOL


class ResourceDiskToolError(ResourceDiskError):
    """A tool the setup needs could not be run at all (``tool``, ``error``)."""

    reason = "cannot run resource disk tool"
    what_to_do = _DISK_TOOL


class FsUuidUnknownError(ResourceDiskError):
    """The new file system's UUID could not be read, so fstab was left alone."""

    reason = "file system UUID unknown; fstab left alone"
    what_to_do = _DISK_TOOL


class ResourceDiskVanishedError(ResourceDiskError):
    """The resource disk ``device`` disappeared while it was being set up."""

    reason = "resource disk vanished during setup"
    what_to_do = _DISK_PLATFORM


class PartitionMissingError(ResourceDiskError):
    """The partition just created did not appear in sysfs."""

    reason = "new partition did not appear in sysfs"
    what_to_do = _DISK_PLATFORM


class NoDeviceNumberError(ResourceDiskError):
    """sysfs gives no device number for the disk ``device``."""

    reason = "no device number in sysfs"
    what_to_do = _DISK_PLATFORM
