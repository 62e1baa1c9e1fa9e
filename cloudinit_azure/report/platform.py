"""Failures of the platform's documents and endpoints: ovf-env.xml, the DVD, IMDS,
the wireserver, DHCP."""

from __future__ import annotations

from cloudinit_azure.report.base import ProvisioningError


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
