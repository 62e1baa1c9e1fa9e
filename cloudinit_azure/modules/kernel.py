"""cloud-init config module ``azure_kernel``: adapter over :mod:`cloudinit_azure.kernel`.

Frequency ``always``: SCSI timeouts live in sysfs and the entropy pool is
fresh each boot, so those must be redone every boot; the grub, udev and
systemd edits are idempotent and change nothing once in place. List it in
``cloud_init_modules`` before ``ssh`` so host keys are generated after the
host entropy has been credited.
"""

from __future__ import annotations

import os

from cloudinit_azure import kernel, settings
from cloudinit_azure.host import this_machine
from cloudinit_azure.modules import module_call

NAMESPACE = "azure_kernel"

meta = {
    "id": "cc_azure_kernel",
    "frequency": "always",
    "distros": ["all"],
}


def handle(*args, **kwargs) -> None:
    """Validate ``azure_kernel:`` and apply every enabled part to this machine."""
    call = module_call(args, kwargs, __name__)
    config = kernel.KernelConfig.from_settings(settings.load(NAMESPACE, call.cfg))
    host = this_machine()
    kernel.apply(str(host.root), config, release=os.uname().release, runner=host.runner,
                 ioctl=kernel.rnd_ioctl, log=call.log)
