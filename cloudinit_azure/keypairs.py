"""OVF key pairs: private keys from the goal state's certificates, at their OVF paths.

A key pair's ``Path`` must lie inside the user's home (``$HOME`` means the
home *base* directory, ``/home``, as the platform and the Azure Linux Agent
read it: ``$HOME/azureuser/.ssh/id_rsa``); anything else is refused with a
reason before the machine is touched. Missing directories on the way are
created owned by the user, 0700; the private key is 0600, the public one
0644, both the user's.

The flow installs them in init-local right after creating the user. Where
the account is created later (the ``azure_ready`` fallback), the keys wait
by fingerprint in a root-only staging directory.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

from cloudinit_azure import atomic
from cloudinit_azure.host import STATE_DIR
from cloudinit_azure.report import (
    InvalidKeyPairFingerprintError,
    InvalidKeyPairPathError,
    KeyPairCertificateNotFoundError,
    KeyPairOutsideHomeError,
)

if TYPE_CHECKING:
    from cloudinit_azure.certificates import CertificateKeys

LOG = logging.getLogger(__name__)
STAGING_DIR = Path(STATE_DIR, "keypairs")
_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{40}")


@dataclass(frozen=True)
class KeyPairFile:
    """One key pair to install: where, and (unless staged) the key material."""

    fingerprint: str
    path: str
    private: Optional[bytes] = field(default=None, repr=False)  # None: read the staged copy
    public: Optional[str] = None


def resolve_path(path: str, home: str) -> str:
    """The key pair's absolute, normalised path; UserConfigError unless inside ``home``."""
    home = posixpath.normpath(home)
    shown = path[:120] if isinstance(path, str) else repr(type(path))
    if not isinstance(path, str) or not path or "\x00" in path:
        raise InvalidKeyPairPathError(path=shown)
    expanded = path.replace("$HOME", posixpath.dirname(home) or "/")
    if not expanded.startswith("/") or expanded.endswith("/"):
        raise InvalidKeyPairPathError(path=shown)
    resolved = posixpath.normpath(expanded)
    if not resolved.startswith(home.rstrip("/") + "/"):
        raise KeyPairOutsideHomeError(path=shown, home=home)
    return resolved


def key_pair_file(fingerprint: str, path: str, home: str,
                  keys: CertificateKeys) -> KeyPairFile:
    """Validate one OVF key pair against the certificates; UserConfigError on any problem."""
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise InvalidKeyPairFingerprintError(fingerprint=str(fingerprint)[:60])
    resolved = resolve_path(path, home)
    fp = fingerprint.upper()
    private = keys.private_keys.get(fp)
    if private is None:
        raise KeyPairCertificateNotFoundError(fingerprint=fp)
    return KeyPairFile(fp, resolved, private, keys.public_keys.get(fp))


def _under(root: Path, system_path: Union[str, Path]) -> Path:
    return Path(root) / str(system_path).lstrip("/")


def stage(files: Sequence[KeyPairFile], *, root: Path) -> None:
    """Keep the keys by fingerprint in a 0700 directory (:data:`STAGING_DIR` under
    ``root``); private files 0600 from birth."""
    if not files:
        return
    staging = _under(root, STAGING_DIR)
    os.makedirs(staging, mode=0o700, exist_ok=True)
    os.chmod(staging, 0o700)
    for item in files:
        atomic.write_file(staging / item.fingerprint, item.private or b"", mode=0o600)
        if item.public:
            atomic.write_file(staging / f"{item.fingerprint}.pub",
                              (item.public + "\n").encode(), mode=0o600)


def _make_dirs(directory: Path, home: Path, uid: int, gid: int) -> None:
    """Create the missing directories below ``home`` as the user's, 0700."""
    missing = []
    current = directory
    while not current.exists() and current != home and home in current.parents:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        os.mkdir(path, 0o700)
        os.chown(path, uid, gid)


def install(files: Sequence[KeyPairFile], uid: int, gid: int, home: str, *,
            root: Path) -> list[str]:
    """Write each pair at its (already resolved) path under ``root``; return the
    paths written (as ``root`` sees them).

    A file that cannot be written raises OSError: the caller turns it into
    a ProvisioningFailed. Staged copies are removed once installed.
    """
    staging = _under(root, STAGING_DIR)
    written: list[str] = []
    for item in files:
        resolve_path(item.path, home)  # never trust a path that skipped the plan
        private, public = item.private, item.public
        if private is None:
            private = (staging / item.fingerprint).read_bytes()
            pub = staging / f"{item.fingerprint}.pub"
            public = pub.read_text().strip() if pub.exists() else None
        dest = _under(root, item.path)
        _make_dirs(dest.parent, _under(root, home), uid, gid)
        atomic.write_file(dest, private, mode=0o600, uid=uid, gid=gid)
        written.append(str(dest))
        if public:
            atomic.write_file(Path(f"{dest}.pub"), (public + "\n").encode(), mode=0o644,
                              uid=uid, gid=gid)
            written.append(f"{dest}.pub")
    for item in files:
        for name in (item.fingerprint, f"{item.fingerprint}.pub"):
            try:
                (staging / name).unlink()
            except FileNotFoundError:
                pass
    return written
