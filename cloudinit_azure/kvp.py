"""Hyper-V KVP pool records: how the guest talks to the host without a network.

The guest pool (``/var/lib/hyperv/.kvp_pool_1``) is a flat file of fixed-size
records (512-byte key + 2,048-byte value, UTF-8, NUL-padded) that
``hv_kvp_daemon`` relays to the host. Azure reads at most 1,024 characters of
a value, so values are *truncated* to that (never split: like cloud-init for
``PROVISIONING_REPORT``, one key is one record).

Writers append whole records in one ``write`` under two exclusive locks:
``flock`` (what cloud-init and other guest writers take) and a POSIX
``fcntl`` lock (what ``hv_kvp_daemon`` takes). On Linux the two lock kinds do
not see each other, so taking both keeps either kind of reader from seeing a
half-written record.

Every function takes the pool path (and the proc root) as a parameter.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

LOG = logging.getLogger(__name__)

DEFAULT_POOL = "/var/lib/hyperv/.kvp_pool_1"
KEY_SIZE = 512
VALUE_SIZE = 2048
RECORD_SIZE = KEY_SIZE + VALUE_SIZE
# Azure reads at most this many characters of a value.
AZURE_MAX_VALUE_CHARS = 1024
REPORT_KEY = "PROVISIONING_REPORT"
DIAGNOSTIC_PREFIX = "CLOUD_INIT_AZURE"

PathLike = Union[str, "os.PathLike[str]"]


def _fit(value: str, max_chars: Optional[int]) -> bytes:
    """Truncate to ``max_chars`` characters and ``VALUE_SIZE`` bytes, whole chars only."""
    if max_chars is not None:
        value = value[:max_chars]
    raw = value.encode("utf-8")
    if len(raw) > VALUE_SIZE:
        # Drop a trailing partial multi-byte sequence rather than emit bad UTF-8.
        raw = raw[:VALUE_SIZE].decode("utf-8", "ignore").encode("utf-8")
    return raw


def encode_record(
    key: str, value: str, max_chars: Optional[int] = AZURE_MAX_VALUE_CHARS
) -> bytes:
    """Encode one 2,560-byte record; the value is truncated, the key never is.

    ``max_chars=None`` keeps as much as fits in 2,048 bytes. Raises ValueError
    for an empty key, a key over 512 bytes of UTF-8, or a NUL anywhere (C
    readers would stop at it).
    """
    raw_key = key.encode("utf-8")
    if not raw_key:
        raise ValueError("KVP key must not be empty")
    if len(raw_key) > KEY_SIZE:
        raise ValueError(f"KVP key is {len(raw_key)} bytes, the limit is {KEY_SIZE}")
    if "\x00" in key or "\x00" in value:
        raise ValueError("KVP keys and values must not contain NUL")
    raw_value = _fit(value, max_chars)
    return raw_key.ljust(KEY_SIZE, b"\x00") + raw_value.ljust(VALUE_SIZE, b"\x00")


def _field(raw: bytes) -> str:
    # C semantics: a field ends at its first NUL.
    return raw.split(b"\x00", 1)[0].decode("utf-8", "replace")


def decode_records(data: bytes) -> list[tuple[str, str]]:
    """Decode a pool's bytes; a trailing partial record and empty slots are ignored."""
    out = []
    for start in range(0, len(data) - RECORD_SIZE + 1, RECORD_SIZE):
        key = _field(data[start:start + KEY_SIZE])
        if not key:
            continue
        out.append((key, _field(data[start + KEY_SIZE:start + RECORD_SIZE])))
    return out


def _lock(fd: int, exclusive: bool) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
    fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)


def append(
    path: PathLike,
    records: Iterable[tuple[str, str]],
    *,
    lock: bool = True,
    max_chars: Optional[int] = AZURE_MAX_VALUE_CHARS,
) -> int:
    """Append records in one ``write`` under exclusive locks; return how many.

    The file is created 0644 like the daemon's pools; its directory must
    exist (it only does on Hyper-V), else OSError.
    """
    data = b"".join(encode_record(k, v, max_chars) for k, v in records)
    if not data:
        return 0
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if lock:
            _lock(fd, exclusive=True)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)  # closing releases both locks
    return len(data) // RECORD_SIZE


def read(path: PathLike, *, lock: bool = True) -> list[tuple[str, str]]:
    """Read every record of a pool (under shared locks); a missing pool is empty."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        if lock:
            _lock(fd, exclusive=False)
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return decode_records(b"".join(chunks))


def boot_time(proc_root: PathLike = "/proc") -> Optional[float]:
    """Boot time (epoch seconds) from ``<proc_root>/stat`` ``btime``; None if unknown."""
    try:
        text = Path(proc_root, "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "btime":
            try:
                return float(parts[1])
            except ValueError:
                return None
    return None


def truncate_if_stale(path: PathLike, boot_time: float) -> bool:
    """Empty the pool when it was last written before this boot; True if emptied.

    Records from a previous boot would be read by the host as this boot's.
    Emptying updates the mtime, so this happens once per boot.
    """
    try:
        if os.stat(path).st_mtime >= boot_time:
            return False
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        _lock(fd, exclusive=True)
        # Re-check under the lock: another process may just have emptied it.
        if os.fstat(fd).st_mtime >= boot_time:
            return False
        os.ftruncate(fd, 0)
        os.utime(fd)  # ftruncate of an empty file need not touch mtime
    finally:
        os.close(fd)
    return True


def report_to_kvp(path: PathLike, report_text: str) -> bool:
    """Write the encoded report as ``PROVISIONING_REPORT``; False (logged) on failure.

    KVP is best effort: off Hyper-V there is no pool directory, and that must
    never fail provisioning.
    """
    if not pool_dir_exists(path):
        return False
    try:
        append(path, [(REPORT_KEY, report_text)])
    except (OSError, ValueError) as exc:
        LOG.warning("could not write %s to KVP pool %s: %s", REPORT_KEY, path, exc)
        return False
    return True


def pool_dir_exists(path: PathLike) -> bool:
    """Off Hyper-V (or without its KVP daemon) there is no pool directory: KVP is
    simply off, logged at debug; only a failure to write an existing pool warns."""
    if os.path.isdir(os.path.dirname(os.fspath(path)) or "."):
        return True
    LOG.debug("no KVP pool directory for %s (not Hyper-V, or no KVP daemon): skipped", path)
    return False


def diagnostic_value(message: str, now: Optional[datetime] = None) -> str:
    """JSON ``{"msg", "ts"}`` that fits in 1,024 characters (the message is cut)."""
    ts = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
    msg = message
    while True:
        text = json.dumps({"msg": msg, "ts": ts}, ensure_ascii=False)
        over = len(text) - AZURE_MAX_VALUE_CHARS
        if over <= 0:
            return text
        msg = msg[: max(0, len(msg) - over)]


def diagnostic(
    path: PathLike, event: str, message: str, *, now: Optional[datetime] = None
) -> bool:
    """Write a diagnostic event as ``CLOUD_INIT_AZURE|<event>|<uuid>``; False on failure."""
    key = f"{DIAGNOSTIC_PREFIX}|{event.replace('|', '_')}|{uuid.uuid4()}"
    if not pool_dir_exists(path):
        return False
    try:
        append(path, [(key, diagnostic_value(message, now))])
    except (OSError, ValueError) as exc:
        LOG.warning("could not write KVP diagnostic %s to %s: %s", event, path, exc)
        return False
    return True
