"""Write a file atomically, with its mode (and owner) from the first byte.

The files the plug-in writes for the user or the Azure Linux Agent (private
keys, the redacted ovf-env.xml) must never exist, even for a moment, with
wider permissions or the wrong owner, whatever the umask; and a reader must
see the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path


def write(dest: Path, data: bytes, mode: int, *, uid: int = -1, gid: int = -1,
          fsync: bool = False) -> None:
    """Create a temporary file beside ``dest`` with ``mode``/owner, fill it, rename it."""
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits off; never adds
            if uid != -1:
                os.fchown(fd, uid, gid)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
