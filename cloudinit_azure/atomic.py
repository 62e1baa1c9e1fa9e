"""The package's one way to replace a file: never half-written, even across a power cut.

Write a temporary file next to the target (created 0600 with ``O_EXCL`` and
``O_NOFOLLOW``: no window where others can read it, no symlink followed),
give it its final mode and owner, ``fsync`` it, rename it over the target,
then ``fsync`` the directory so the rename itself is on disk. A reader (or
the next boot after a power cut) sees the old file or the new one, never an
empty or truncated one; a temporary left by a cut is removed by the next
write. docs/reliability.md says where this matters.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]
LOG = logging.getLogger(__name__)


def write_file(path: PathLike, data: Union[bytes, str], *, mode: Optional[int] = None,
               uid: int = -1, gid: int = -1, if_changed: bool = False) -> bool:
    """Replace ``path`` with ``data`` atomically and durably; True when written.

    An existing file keeps its mode and owner unless ``mode``/``uid``/``gid``
    say otherwise; a new one gets ``mode`` (default 0644) and root's owner.
    ``if_changed``: leave an identical file alone (no write, no new mtime).
    """
    target = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        st: Optional[os.stat_result] = os.stat(target)
    except FileNotFoundError:
        st = None
    if if_changed and st is not None:
        try:
            if target.read_bytes() == raw:
                return False
        except OSError:
            pass
    if mode is None:
        mode = (st.st_mode & 0o7777) if st is not None else 0o644
    if uid == -1 and st is not None:
        uid, gid = st.st_uid, st.st_gid
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        # A temporary a power cut left behind (the target itself is whole).
        try:
            stale.unlink()
        except OSError:
            pass
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{os.urandom(3).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        try:
            if uid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)  # after chown, which may clear set-id bits
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    sync_dir(target.parent)
    return True


def drop_empty(paths: list[str]) -> list[str]:
    """Remove those of ``paths`` that are empty; return them.

    For JSON state files other tools write without fsync: a power cut can
    leave them empty, and their readers fail on an empty file where a
    missing one is fine (cloud-init 22.4's ``set-hostname``, read right after
    the datasource in init-local, fails the stage; measured in the VM tier).
    """
    dropped = []
    for path in paths:
        try:
            if os.path.getsize(path) == 0:
                os.unlink(path)
                dropped.append(path)
                LOG.info("removed %s: left empty by a power cut", path)
        except OSError:
            pass
    return dropped


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """libc through ctypes, loaded once (a pool VM loads it while it waits)."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def sync_filesystem(path: PathLike) -> None:
    """Write back everything cached for the file system holding ``path`` (syncfs(2)).

    Before a report tells the platform the VM is provisioned: what it promises
    (the account, keys, host keys, written by tools that do not fsync) must
    survive a power cut. Only that file system, not every one (sync(2)).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if _libc().syncfs(fd) != 0:
            os.sync()  # syncfs refused: everything, then
    except (AttributeError, OSError):
        os.sync()
    finally:
        os.close(fd)


def sync_dir(directory: PathLike) -> None:
    """Make a rename or a new file in ``directory`` durable (best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory
        pass
    finally:
        os.close(fd)
