"""The error hierarchy: every failure the plug-in reports, each a class with a fixed reason.

A failure is a :class:`ProvisioningError` subclass: its ``reason`` (the short
text the platform shows and the user searches docs/failures.md for), its
docstring (what it means) and ``what_to_do`` are fixed by the class; a raise
site passes only ``supporting_data`` (the variable parts: a step, a NIC, a
status code, a path). The encoded report (report_text.py) renders both.
"""

from __future__ import annotations

from typing import Any, ClassVar

from cloudinit_azure.report_text import (  # noqa: F401 - the report's names, one import
    DOCUMENTATION_URL,
    MAX_DESCRIPTION,
    MAX_REPORT,
    MAX_VALUE,
    MAX_VM_ID,
    Report,
    decode_report,
    printable,
)


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


class OvfError(ProvisioningError):
    """ovf-env.xml is missing, malformed or inconsistent."""

    reason = "error parsing ovf-env.xml"
    what_to_do = (
        "The platform writes ovf-env.xml from the VM create request: check the admin "
        "user name, host name, password and custom data you passed (custom data is "
        "base64 in the REST API). With valid inputs, deploy again; if it persists, open "
        "a support case with the report."
    )


class OvfNotWellFormedError(OvfError):
    """ovf-env.xml is not XML a parser can read (``line``, ``column``, ``error`` say where)."""

    reason = "ovf-env.xml is not well-formed XML"
    what_to_do = (
        "The platform writes ovf-env.xml: a broken one is a platform problem or "
        "something in the image replacing the DVD. Redeploy; open a support case with "
        "the report if it persists."
    )


class OvfForbiddenXmlError(OvfError):
    """ovf-env.xml declares a DTD or entity, which is refused (no XXE, no entity bomb)."""

    reason = "ovf-env.xml declares a DTD or entity (forbidden)"
    what_to_do = (
        "The platform never writes a DTD into ovf-env.xml: the DVD the VM read is not "
        "the platform's. Check what in the image provides it; redeploy."
    )


class OvfEncodingError(OvfError):
    """ovf-env.xml's XML declaration names an encoding that cannot be read."""

    reason = "ovf-env.xml declares an encoding that cannot be read"
    what_to_do = (
        "The platform writes UTF-8: the document is not the platform's or is damaged. "
        "Redeploy; open a support case with the report if it persists."
    )


class OvfRootError(OvfError):
    """ovf-env.xml's root element is not ``Environment`` (``root`` names what it is)."""

    reason = "ovf-env.xml root is not Environment"
    what_to_do = OvfNotWellFormedError.what_to_do


class OvfMissingElementError(OvfError):
    """A required element of ovf-env.xml is absent; ``element`` is its path."""

    reason = "missing element in ovf-env.xml"
    what_to_do = (
        "The element named by ``element`` is required (the user name, the host name, "
        "the provisioning section): pass the admin user name and host name in the VM "
        "create request and deploy again."
    )


class OvfEmptyElementError(OvfError):
    """A required element of ovf-env.xml is present but empty; ``element`` is its path."""

    reason = "empty element in ovf-env.xml"
    what_to_do = OvfMissingElementError.what_to_do


class OvfDuplicateElementError(OvfError):
    """An element that may occur once occurs ``count`` times; ``element`` is its path."""

    reason = "duplicate element in ovf-env.xml"
    what_to_do = (
        "Two values for one setting cannot be told apart: the document is not the "
        "platform's or is damaged. Redeploy; open a support case if it persists."
    )


class OvfBooleanError(OvfError):
    """A true/false element of ovf-env.xml holds another ``value``; ``element`` names it."""

    reason = "invalid boolean in ovf-env.xml"
    what_to_do = (
        "Settings such as DisableSshPasswordAuthentication must be true or false: "
        "check the value in the VM create request and deploy again."
    )


class CustomDataBase64Error(OvfError):
    """The CustomData element is not valid base64."""

    reason = "invalid base64 in CustomData"
    what_to_do = (
        "Custom data is passed base64-encoded in the REST API (the CLI and portal "
        "encode it for you): encode it once, with no other text, and deploy again."
    )


class OvfPublicKeyError(OvfError):
    """An SSH public key entry has neither a Fingerprint nor a Value; ``element`` names it."""

    reason = "PublicKey has neither Fingerprint nor Value"
    what_to_do = (
        "Every SSH public key in the VM create request needs its key data (or a "
        "certificate thumbprint): fix the key list and deploy again."
    )


class OvfKeyPairFingerprintError(OvfError):
    """A KeyPair's Fingerprint is not 40 hex digits (it names a file: never a path)."""

    reason = "invalid KeyPair Fingerprint in ovf-env.xml"
    what_to_do = (
        "A key pair names its certificate by SHA-1 thumbprint: pass the thumbprint "
        "(40 hex digits) of a certificate in the VM's secrets and deploy again."
    )


class ReprovisionDataError(OvfError):
    """A pool VM's customer document (reprovisiondata) is not a valid ovf-env.xml;
    ``ovf_error`` is the reason the document failed with, its data follows."""

    reason = "reprovisiondata: not a valid ovf-env.xml"
    what_to_do = (
        "The customer document IMDS handed the preprovisioned VM failed to parse: read "
        "ovf_error and look it up on this page. It comes from the VM create request: "
        "check its inputs and deploy again."
    )


class ReprovisionDataEmptyError(ReprovisionDataError):
    """IMDS answered reprovisiondata with an empty document."""

    reason = "reprovisiondata: empty document"
    what_to_do = (
        "IMDS assigned the pool VM to a customer but sent no document: a platform "
        "problem. Redeploy; open a support case if it persists."
    )


class ReprovisionDataPoolError(ReprovisionDataError):
    """reprovisiondata held another pool (preprovisioned) document, not the customer's."""

    reason = "reprovisiondata: a preprovisioned (pool) document, not the customer's"
    what_to_do = ReprovisionDataEmptyError.what_to_do


class MediaError(ProvisioningError):
    """The provisioning media could not be found or read."""

    reason = "error reading provisioning media"
    what_to_do = (
        "The image could not find or read the provisioning DVD: keep the CD-ROM driver "
        "(sr_mod) and udev in the image, keep python3-pycdlib installed (it reads the "
        "DVD without the udf driver), and make sure nothing else (another agent, an "
        "automounter) ejects or holds it. 'cloudinit-azure doctor' checks the image."
    )


class NoMediaError(MediaError):
    """No device looked like the provisioning DVD."""

    reason = "no provisioning media found"
    what_to_do = MediaError.what_to_do


class MediaUnreadableError(MediaError):
    """The DVD was found but reading it failed (``device``, ``error``)."""

    reason = "unreadable media"
    what_to_do = MediaError.what_to_do


class OvfNotFoundError(MediaError):
    """The DVD was read but holds no ovf-env.xml (``device``, and every one ``tried``)."""

    reason = "ovf-env.xml not found on media"
    what_to_do = (
        "A DVD without ovf-env.xml is not the provisioning DVD: keep other ISO images "
        "out of the VM's CD-ROM drive or ahead of it, then redeploy."
    )


class OvfTooLargeError(MediaError):
    """ovf-env.xml on the DVD is larger than any the platform writes (``size``)."""

    reason = "ovf-env.xml too large"
    what_to_do = OvfNotFoundError.what_to_do


class ImdsError(ProvisioningError):
    """IMDS did not answer usefully before the deadline."""

    reason = "error communicating with IMDS"
    what_to_do = (
        "IMDS (169.254.169.254) did not answer in time: the image must reach it from "
        "init-local, so keep a DHCP client in the image ('cloudinit-azure doctor', check "
        "dhcp), no firewall rule or proxy for 169.254.169.254, no static network config "
        "that replaces DHCP. If the image is fine, redeploy: it may be the platform."
    )


class ImdsParseError(ImdsError):
    """IMDS answered with a body that is not the expected JSON."""

    reason = "error parsing IMDS metadata"
    what_to_do = (
        "IMDS answered, but not with the metadata expected: look for a proxy or "
        "transparent filter in the image that intercepts 169.254.169.254. Otherwise it "
        "is the platform: redeploy, and open a support case if it persists."
    )


class StillPreprovisionedError(ImdsError):
    """After the customer's assignment, IMDS still calls the VM preprovisioned (``pps_type``)."""

    reason = "IMDS still says preprovisioned after the assignment"
    what_to_do = (
        "The platform assigned the pool VM but IMDS did not catch up: a platform "
        "problem. Redeploy; open a support case with the report if it persists."
    )


class WireserverError(ProvisioningError):
    """The wireserver (goal state, health, certificates) failed."""

    reason = "error communicating with wireserver"
    what_to_do = (
        "The wireserver (168.63.129.16, or DHCP option 245's address) could not be "
        "reached or kept failing: the image must not block 168.63.129.16 port 80 "
        "(firewall rules baked into the image, nftables or iptables). If the image is "
        "fine, redeploy: the VM may have landed on an unhealthy host."
    )


class GoalStateError(WireserverError):
    """The wireserver's goal state is not what the protocol defines."""

    reason = "error parsing goal state"
    what_to_do = (
        "The goal state XML lacked a required element (incarnation, container id, "
        "instance id): a platform problem or something in the image answering for "
        "168.63.129.16. Redeploy; open a support case if it persists."
    )


class HealthReportError(WireserverError):
    """A health report read back (by the simulator) is not the protocol's XML."""

    reason = "error parsing health report"
    what_to_do = (
        "Only azure-sim reads health reports back: the agent under test posted a "
        "health report without its state; the detail names what is missing."
    )


class CertificateError(WireserverError):
    """The certificates behind key fingerprints could not be fetched or decrypted."""

    reason = "error obtaining certificates"
    what_to_do = (
        "SSH keys given as certificate thumbprints could not be fetched or decrypted: "
        "the image needs openssl 1.0+ ('cloudinit-azure doctor', check openssl). Or "
        "pass the keys as OpenSSH public key data instead of certificates."
    )


class DhcpError(ProvisioningError):
    """No DHCP lease was obtained on the primary NIC."""

    reason = "error obtaining DHCP lease"
    what_to_do = (
        "No DHCP lease on the primary NIC: keep a supported DHCP client (dhclient, "
        "dhcpcd or udhcpc) and the NIC driver (hv_netvsc, or mlx drivers with "
        "accelerated networking) in the image, and no firewall that drops DHCP."
    )


class NoNicError(DhcpError):
    """No network interface to run DHCP on was found."""

    reason = "no network interface found"
    what_to_do = (
        "The image saw no NIC: keep the NIC drivers (hv_netvsc; mlx4/mlx5 for "
        "accelerated networking) in the image and its initramfs, and no rule that "
        "renames or hides the interface."
    )


class UserConfigError(ProvisioningError):
    """The requested user, password, keys or host name cannot be applied."""

    reason = "invalid user configuration"
    what_to_do = (
        "Fix the VM create request: the admin user name must be valid and not reserved "
        "(root, admin, daemon ...), the password short enough and without control "
        "characters, every SSH key an OpenSSH public key, the host name a valid name. "
        "The reason names which one."
    )


class NoUserNameError(UserConfigError):
    """Neither ovf-env.xml nor IMDS names the admin user."""

    reason = "no user name provided"
    what_to_do = "Pass the admin user name in the VM create request and deploy again."


class InvalidUserNameError(UserConfigError):
    """The admin user name is not one useradd creates (``problem`` says why)."""

    reason = "invalid user name"
    what_to_do = (
        "Use a user name of lower-case letters, digits, '-' and '_', starting with a "
        "letter, no longer than the image's useradd allows (``problem`` says which)."
    )


class ReservedUserNameError(UserConfigError):
    """The admin user name is reserved (root, admin, daemon ...) or a system account."""

    reason = "reserved user name"
    what_to_do = (
        "Choose another admin user name: not root, admin, daemon or another reserved "
        "name, nor a system account the image already has (``uid`` shows it)."
    )


class PasswordTooLongError(UserConfigError):
    """The admin password is longer than ``max_length`` characters."""

    reason = "password too long"
    what_to_do = "Use a password of at most max_length characters, or SSH keys instead."


class PasswordControlCharacterError(UserConfigError):
    """The admin password holds a line break or NUL, which hashing cannot carry."""

    reason = "password contains a control character"
    what_to_do = "Use a password without line breaks or NUL characters, and deploy again."


class PasswordHashError(UserConfigError):
    """The image could not hash the admin password (``tool`` names what failed)."""

    reason = "password hashing failed"
    what_to_do = (
        "The image needs Python's crypt module or openssl to hash the password "
        "('cloudinit-azure doctor', check openssl); or use SSH keys instead."
    )


class InvalidHostNameError(UserConfigError):
    """The host name is not a valid host name (``hostname`` shows it)."""

    reason = "invalid host name"
    what_to_do = (
        "Use a host name of letters, digits and '-' (dot-separated labels, each at most "
        "63 characters, not starting or ending with '-') and deploy again."
    )


class NoHostNameError(UserConfigError):
    """Neither ovf-env.xml nor IMDS names the host."""

    reason = "no host name provided"
    what_to_do = "Pass the VM's computer name in the VM create request and deploy again."


class InvalidSshKeyError(UserConfigError):
    """An SSH key is not an OpenSSH public key (``index``, ``problem``, ``prefix``)."""

    reason = "invalid SSH public key"
    what_to_do = (
        "Pass each SSH key as one OpenSSH public key line (ssh-ed25519 AAAA... or "
        "ssh-rsa AAAA...), not a private key, a PEM certificate or two keys in one."
    )


class SshKeyCertificateNotFoundError(UserConfigError):
    """An SSH key given by certificate ``fingerprint`` has no such certificate."""

    reason = "certificate for SSH key not found"
    what_to_do = (
        "The thumbprint must name a certificate in the VM's secrets (Key Vault "
        "osProfile.secrets): add the certificate, or pass the public key data instead."
    )


class InvalidKeyPairFingerprintError(UserConfigError):
    """A key pair's ``fingerprint`` is not a certificate thumbprint."""

    reason = "invalid key pair fingerprint"
    what_to_do = OvfKeyPairFingerprintError.what_to_do


class KeyPairCertificateNotFoundError(UserConfigError):
    """A key pair's certificate ``fingerprint`` is not among the VM's certificates."""

    reason = "certificate for key pair not found"
    what_to_do = SshKeyCertificateNotFoundError.what_to_do


class InvalidKeyPairPathError(UserConfigError):
    """A key pair's ``path`` is not an absolute file path."""

    reason = "invalid key pair path"
    what_to_do = (
        "Give the key pair an absolute file path in the admin user's home ($HOME/.ssh/"
        "id_rsa or /home/USER/.ssh/id_rsa), not a directory, and deploy again."
    )


class KeyPairOutsideHomeError(InvalidKeyPairPathError):
    """A key pair's ``path`` resolves outside the admin user's ``home``."""

    reason = "key pair path outside the user's home"
    what_to_do = InvalidKeyPairPathError.what_to_do


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
    """A command setting up the disk exited non-zero (``tool``, ``command``, ``exit_code``)."""

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
