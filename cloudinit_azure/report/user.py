"""Failures of the requested admin user, password, SSH keys, key pairs and host name."""

from __future__ import annotations

from cloudinit_azure.report.base import ProvisioningError
from cloudinit_azure.report.platform import OvfKeyPairFingerprintError


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
