"""SSH public keys as the platform sends them -> one validated ``authorized_keys`` line.

Pure. Portals and templates wrap long keys and add stray blanks; the blob
must still decode to a key of the declared type. A rejection is a
:class:`~cloudinit_azure.report.UserConfigError` carrying only a short
prefix of the key.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from typing import Any, Optional

from cloudinit_azure.report import InvalidSshKeyError

# key type -> number of length-prefixed fields after the type string.
_KEY_FIELDS = {
    "ssh-rsa": 2,  # e, n
    "ssh-dss": 4,  # p, q, g, y
    "ssh-ed25519": 1,  # 32-byte point
    "ecdsa-sha2-nistp256": 2,  # curve name, Q
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,  # curve name, Q, application
    "sk-ssh-ed25519@openssh.com": 2,  # 32-byte point, application
}
KNOWN_KEY_TYPES = frozenset(_KEY_FIELDS)
_BREAK_RE = re.compile(r"\r\n|\r|\n")
_B64_PREFIX_RE = re.compile(r"[A-Za-z0-9+/=]*")


def _read_fields(blob: bytes) -> list[bytes]:
    """Split an SSH wire-format blob into its length-prefixed strings."""
    out: list[bytes] = []
    pos = 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ValueError("truncated length")
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        pos += 4
        if pos + length > len(blob):
            raise ValueError("truncated field")
        out.append(blob[pos:pos + length])
        pos += length
    return out


def _blob_problem(key_type: str, b64: str) -> Optional[str]:
    """Why ``b64`` is not a complete key blob of ``key_type`` (None if it is)."""
    if not b64 or len(b64) % 4:
        return "base64 does not decode"
    try:
        blob = base64.b64decode(b64, validate=True)
        fields = _read_fields(blob)
    except (binascii.Error, ValueError):
        return "base64 does not decode to a key"
    if not fields:
        return "empty key"
    try:
        embedded = fields[0].decode("ascii")
    except UnicodeDecodeError:
        return "key type in the key data is not text"
    if embedded != key_type:
        return "key type does not match the key data"
    if len(fields) - 1 != _KEY_FIELDS[key_type]:
        return "key data has the wrong number of fields"
    curve = re.search(r"nistp\d+", key_type)
    if curve is not None:
        if fields[1] != curve.group(0).encode():
            return "curve name does not match the key type"
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com") and len(fields[1]) != 32:
        return "ed25519 key is not 32 bytes"
    return None


def _key_error(problem: str, text: str, index: Optional[int]) -> InvalidSshKeyError:
    data: dict[str, Any] = {"problem": problem, "prefix": text.strip()[:20]}
    if index is not None:
        data = {"index": index, **data}
    return InvalidSshKeyError(**data)


def normalize_ssh_key(text: str, index: Optional[int] = None) -> str:
    """``<type> <base64> [comment]`` on one line, validated.

    Portals and templates wrap long keys: a line break inside the base64 is
    removed (the pieces are rejoined), a break elsewhere counts as a space.
    The base64 must decode to a blob whose embedded type is the declared one.
    """
    if not isinstance(text, str):
        raise _key_error("not text", "", index)
    stripped = text.strip()
    parts = stripped.split(None, 1)
    if not parts:
        raise _key_error("empty key", text, index)
    key_type = parts[0]
    if key_type not in KNOWN_KEY_TYPES:
        problem = ("options are not allowed"
                   if any(tok in KNOWN_KEY_TYPES for tok in stripped.split())
                   else "unknown key type")
        raise _key_error(problem, text, index)
    rest = parts[1].lstrip() if len(parts) > 1 else ""
    lines = _BREAK_RE.split(rest)
    b64 = ""
    comment = ""
    for number, line in enumerate(lines):
        if b64 and _blob_problem(key_type, b64) is None:
            # The blob is complete: whatever follows the break is the comment.
            comment = " ".join(lines[number:])
            break
        line = line.strip()
        piece = _B64_PREFIX_RE.match(line).group(0)  # type: ignore[union-attr]
        b64 += piece
        tail = line[len(piece):]
        if tail:
            if not tail[0].isspace():
                raise _key_error("invalid character in key data", text, index)
            comment = " ".join([tail] + lines[number + 1:])
            break
    problem = _blob_problem(key_type, b64)
    if problem:
        raise _key_error(problem, text, index)
    comment = " ".join(comment.split())
    return f"{key_type} {b64} {comment}" if comment else f"{key_type} {b64}"


