"""The error hierarchy: every failure the plug-in reports, each a class with a fixed reason.

A failure is a :class:`ProvisioningError` subclass: its ``reason`` (the short
text the platform shows and the user searches docs/failures.md for), its
docstring (what it means) and ``what_to_do`` are fixed by the class; a raise
site passes only ``supporting_data`` (the variable parts: a step, a NIC, a
status code, a path). One package, one import (``from cloudinit_azure.report
import ...``), split by family to keep each file short: ``base`` (the root and
the failures of no one family), ``platform`` (ovf-env.xml, media, IMDS,
wireserver, DHCP), ``user`` (the admin user, password, keys, host name),
``disk`` (the resource disk); ``text`` renders the encoded report.
"""

from __future__ import annotations

from cloudinit_azure.report.base import (  # noqa: F401
    ApplyError,
    ConfigError,
    MissingCustomDataError,
    NoProvisioningDataError,
    ProvisioningError,
    UnexpectedError,
)
from cloudinit_azure.report.disk import (  # noqa: F401
    FsUuidUnknownError,
    MountPointBusyError,
    MountPointNotDirectoryError,
    NoDeviceNumberError,
    PartitionMissingError,
    ResourceDiskCommandError,
    ResourceDiskError,
    ResourceDiskNotFoundError,
    ResourceDiskPartitionError,
    ResourceDiskToolError,
    ResourceDiskVanishedError,
    UnsupportedFilesystemError,
)
from cloudinit_azure.report.platform import (  # noqa: F401
    CertificateError,
    CustomDataBase64Error,
    DhcpError,
    GoalStateError,
    HealthReportError,
    ImdsError,
    ImdsParseError,
    MediaError,
    MediaUnreadableError,
    NoMediaError,
    NoNicError,
    OvfBooleanError,
    OvfDuplicateElementError,
    OvfEmptyElementError,
    OvfEncodingError,
    OvfError,
    OvfForbiddenXmlError,
    OvfKeyPairFingerprintError,
    OvfMissingElementError,
    OvfNotFoundError,
    OvfNotWellFormedError,
    OvfPublicKeyError,
    OvfRootError,
    OvfTooLargeError,
    ReprovisionDataEmptyError,
    ReprovisionDataError,
    ReprovisionDataPoolError,
    StillPreprovisionedError,
    WireserverError,
)
from cloudinit_azure.report.text import (  # noqa: F401
    DOCUMENTATION_URL,
    FIELDS,
    MAX_DESCRIPTION,
    MAX_REPORT,
    MAX_VALUE,
    MAX_VM_ID,
    Report,
    decode_report,
    printable,
)
from cloudinit_azure.report.user import (  # noqa: F401
    InvalidHostNameError,
    InvalidKeyPairFingerprintError,
    InvalidKeyPairPathError,
    InvalidSshKeyError,
    InvalidUserNameError,
    KeyPairCertificateNotFoundError,
    KeyPairOutsideHomeError,
    NoHostNameError,
    NoUserNameError,
    PasswordControlCharacterError,
    PasswordHashError,
    PasswordTooLongError,
    ReservedUserNameError,
    SshKeyCertificateNotFoundError,
    UserConfigError,
)
