"""The root of the error hierarchy and the failures that belong to no one family.

A failure's ``reason`` (the text the platform shows and docs/failures.md
lists), its docstring and ``what_to_do`` are fixed by its class; a raise site
passes only supporting data, the variable parts.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cloudinit_azure.report.text import FIELDS, MAX_VALUE, printable


class ProvisioningError(Exception):
    """A failure that ends provisioning and is reported to the platform."""

    reason: ClassVar[str] = "provisioning error"
    what_to_do: ClassVar[str] = (
        "Read the reason and supporting data, then cloud-init's log on the VM "
        "(/var/log/cloud-init.log, or the serial console in boot diagnostics): the "
        "step that failed is logged just before the report."
    )

    def __init__(self, **supporting_data: Any) -> None:
        if "reason" in supporting_data:  # the class is the reason: raise the right one
            raise TypeError(f"{type(self).__name__} takes no reason; pick the class that says it")
        clash = sorted(FIELDS & supporting_data.keys())
        if clash:  # a report field of its own would be shadowed when decoded
            raise TypeError(f"{type(self).__name__}: {', '.join(clash)} is a report field")
        self.supporting_data: dict[str, Any] = dict(supporting_data)
        super().__init__(self.reason)

    def __str__(self) -> str:
        if not self.supporting_data:
            return printable(self.reason)
        details = ", ".join(f"{printable(k)}={printable(v, MAX_VALUE)}"
                            for k, v in self.supporting_data.items())
        return f"{printable(self.reason)} ({details})"


class NoProvisioningDataError(ProvisioningError):
    """Neither the provisioning media nor IMDS gave the VM's provisioning data."""

    reason = "no provisioning data: neither media nor IMDS answered"
    what_to_do = (
        "The image found no provisioning DVD and IMDS did not answer: check both as "
        "for 'error reading provisioning media' and 'error communicating with IMDS' "
        "('cloudinit-azure doctor'), then redeploy."
    )


class UnexpectedError(ProvisioningError):
    """A bug in the plug-in (an exception it does not expect); ``where`` names the step."""

    reason = "unexpected error"
    what_to_do = (
        "This is a bug of cloudinit-azure: the supporting data (where, exception, "
        "detail) and the traceback in /var/log/cloud-init.log belong in a bug report."
    )


class ConfigError(ProvisioningError):
    """An image author's configuration does not validate.

    ``key`` (the dotted path of the offending key) and ``problem`` travel as
    supporting data; the text names the key first, for the log reader.
    """

    reason = "invalid cloudinit-azure configuration"
    what_to_do = (
        "The image's own configuration (datasource: Azure:, azure_* keys in "
        "/etc/cloud/cloud.cfg.d) does not validate: the supporting data names the key; "
        "'cloudinit-azure doctor' shows it before you upload the image, and "
        "docs/configuration.md lists every key."
    )

    def __str__(self) -> str:
        key = self.supporting_data.get("key")
        if key is None:
            return super().__str__()
        problem = self.supporting_data.get("problem", "")
        return f"invalid config at {printable(key)}: {printable(problem)}"


class ApplyError(ProvisioningError):
    """A step that changes the machine in init-local failed (creating the user, sshd's
    password setting, the OVF key pairs, host keys, host name); ``step`` names it
    and the user is removed again."""

    reason = "error applying provisioning"
    what_to_do = (
        "Read the supporting data (step, exception, detail) and the cloud-init log: "
        "the image's useradd, sudoers, sshd_config or ssh-keygen failed. Check the "
        "image with 'cloudinit-azure doctor'; a read-only or full root file system "
        "and a missing ssh-keygen are the usual causes."
    )

    def __init__(self, *, step: str, exc: BaseException) -> None:
        super().__init__(step=step, exception=type(exc).__name__, detail=str(exc)[:160])


class MissingCustomDataError(ProvisioningError):
    """IMDS says the VM has customData, but no provisioning media was found to read it
    from: provisioning fails rather than boot without the customer's custom data."""

    reason = "customData was provided but no provisioning media was found"
    what_to_do = (
        "Custom data travels only on the provisioning DVD: keep the CD-ROM driver "
        "(sr_mod), udev and python3-pycdlib in the image and nothing that ejects or "
        "holds the DVD early; 'cloudinit-azure doctor' checks the image. Then redeploy."
    )
