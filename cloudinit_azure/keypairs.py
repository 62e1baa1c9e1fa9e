"""OVF key pairs: private keys from the goal state's certificates, at their OVF paths.

The certificates arrive in init-local, before the user exists; the files can
only be given to the user after ``users_groups``. So the datasource stages
them in a root-only directory and ``azure_ready`` installs them (private key
0600, public key 0644, owned by the user).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Iterable, Mapping

LOG = logging.getLogger(__name__)
STAGING_DIR = Path("/var/lib/cloudinit-azure/keypairs")


def stage(private_keys: Mapping[str, bytes], public_keys: Mapping[str, str],
          staging: Path = STAGING_DIR) -> None:
    """Keep the keys by fingerprint in a 0700 directory; private files 0600 from birth."""
    if not private_keys:
        return
    os.makedirs(staging, mode=0o700, exist_ok=True)
    os.chmod(staging, 0o700)
    for fingerprint, pem in private_keys.items():
        fd = os.open(staging / fingerprint, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        if fingerprint in public_keys:
            (staging / f"{fingerprint}.pub").write_text(public_keys[fingerprint] + "\n")


def install(key_pairs: Iterable[tuple[str, str]], uid: int, gid: int,
            staging: Path = STAGING_DIR, log: logging.Logger = LOG) -> list[str]:
    """Move each staged pair to its OVF path; return the paths written."""
    written = []
    for fingerprint, path in key_pairs:
        private = staging / fingerprint
        if not private.exists():
            log.warning("no certificate for key pair %s: %s not written", fingerprint, path)
            continue
        for src, dest, mode in ((private, Path(path), 0o600),
                                (staging / f"{fingerprint}.pub", Path(f"{path}.pub"), 0o644)):
            if not src.exists():
                continue
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            shutil.move(str(src), dest)
            os.chmod(dest, mode)
            os.chown(dest, uid, gid)
            written.append(str(dest))
    return written
