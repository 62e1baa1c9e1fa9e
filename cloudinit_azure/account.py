"""The admin user and host name decisions the datasource hands to cloud-init.

Pure except for :func:`read_passwd` (reads a file it is given) and the
password hashing fallback (runs ``openssl`` through an injectable runner with
the password on stdin). Every rejection is a
:class:`~cloudinit_azure.report.UserConfigError` whose text never holds a
password and only a short prefix of a key.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
import string
import struct
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Optional, Union

from cloudinit_azure.ovf import REDACTED
from cloudinit_azure.report import UserConfigError
from cloudinit_azure.runner import Runner, run

# ---------------------------------------------------------------- user names

_USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
RESERVED_USERNAMES = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news",
    "uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody",
    "messagebus", "sshd", "_apt",
})
RESERVED_PREFIXES = ("systemd-",)
# Accounts below this uid belong to the system; the admin must not take one over.
FIRST_USER_UID = 1000


def validate_username(name: str,
                      existing_system_users: Optional[Mapping[str, int]] = None) -> str:
    """Return ``name`` if it may become the admin user, else UserConfigError."""
    if not isinstance(name, str) or not _USERNAME_RE.fullmatch(name):
        shown = name[:40] if isinstance(name, str) else repr(type(name))
        raise UserConfigError("invalid user name", user=shown)
    if name in RESERVED_USERNAMES or name.startswith(RESERVED_PREFIXES):
        raise UserConfigError("reserved user name", user=name)
    uid = (existing_system_users or {}).get(name)
    if uid is not None and uid < FIRST_USER_UID:
        raise UserConfigError("reserved user name", user=name, uid=uid)
    return name


def read_passwd(path: Union[str, os.PathLike]) -> dict[str, int]:
    """Map user name -> uid from a passwd(5) file; missing file -> {}."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return {}
    users: dict[str, int] = {}
    for line in lines:
        if not line or line.startswith(("#", "+", "-")):
            continue
        parts = line.split(":")
        if len(parts) < 3 or not parts[0]:
            continue
        try:
            users.setdefault(parts[0], int(parts[2]))
        except ValueError:
            continue
    return users


# ----------------------------------------------------------------- passwords

# Azure's own limit for an admin password; longer is not from the platform.
MAX_PASSWORD_LENGTH = 123
_SALT_CHARS = string.ascii_letters + string.digits + "./"
_SALT_LENGTH = 16
_SHA512_RE = re.compile(r"^\$6\$(?:rounds=\d+\$)?([A-Za-z0-9./]{1,16})\$[A-Za-z0-9./]{86}$")


def _crypt_module() -> Optional[ModuleType]:
    """The stdlib ``crypt`` module where it still exists (< 3.13), quietly."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
    except ImportError:
        return None
    return crypt


def _check_password(password: str) -> None:
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserConfigError("password too long", max_length=MAX_PASSWORD_LENGTH)
    # Line breaks would split the stdin line openssl reads; NUL breaks crypt(3).
    if any(c in password for c in "\r\n\x00"):
        raise UserConfigError("password contains a control character")


def _openssl_sha512(password: str, salt: str, runner: Runner) -> str:
    # The salt is not secret; the password only ever travels on stdin.
    try:
        result = runner(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                        input=password + "\n", check=False)
    except OSError as exc:  # openssl missing or not runnable
        raise UserConfigError("password hashing failed", tool="openssl",
                              error=type(exc).__name__) from None
    hashed = result.stdout.strip() if result.returncode == 0 else ""
    if not hashed.startswith("$6$"):
        raise UserConfigError("password hashing failed", tool="openssl",
                              returncode=result.returncode)
    return hashed


def _backend_crypt(backend: str) -> Optional[ModuleType]:
    if backend not in ("auto", "crypt", "openssl"):
        raise ValueError(f"unknown password hashing backend {backend!r}")
    crypt_mod = _crypt_module() if backend != "openssl" else None
    if backend == "crypt" and crypt_mod is None:
        raise RuntimeError("the crypt module is not available")
    return crypt_mod


def hash_password(password: Optional[str], runner: Runner = run, *,
                  backend: str = "auto") -> Optional[str]:
    """SHA-512 crypt (``$6$``) with a fresh 16-char salt; empty/None -> None.

    ``backend`` is ``auto`` (crypt when importable, else openssl), ``crypt``
    or ``openssl``; tests pick one, production leaves ``auto``.
    """
    if not password:
        return None
    _check_password(password)
    crypt_mod = _backend_crypt(backend)
    salt = "".join(secrets.choice(_SALT_CHARS) for _ in range(_SALT_LENGTH))
    if crypt_mod is None:
        return _openssl_sha512(password, salt, runner)
    hashed = crypt_mod.crypt(password, f"$6${salt}")
    if not hashed or not hashed.startswith("$6$"):
        raise UserConfigError("password hashing failed", tool="crypt")
    return hashed


def verify_password(password: str, hashed: str, runner: Runner = run, *,
                    backend: str = "auto") -> bool:
    """True when ``password`` hashes to ``hashed`` (SHA-512 crypt only)."""
    match = _SHA512_RE.fullmatch(hashed or "")
    if not password or not match:
        return False
    try:
        _check_password(password)
    except UserConfigError:
        return False
    crypt_mod = _backend_crypt(backend)
    if crypt_mod is not None:
        candidate = crypt_mod.crypt(password, hashed) or ""
    elif "rounds=" in hashed:
        return False  # openssl passwd takes no rounds= in its salt
    else:
        try:
            candidate = _openssl_sha512(password, match.group(1), runner)
        except UserConfigError:
            return False
    return hmac.compare_digest(candidate.encode(), hashed.encode())


# ------------------------------------------------------------------ SSH keys

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


def _key_error(problem: str, text: str, index: Optional[int]) -> UserConfigError:
    data: dict[str, Any] = {"problem": problem, "prefix": text.strip()[:20]}
    if index is not None:
        data = {"index": index, **data}
    return UserConfigError("invalid SSH public key", **data)


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


# ---------------------------------------------------------------- host names

_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def validate_hostname(name: str) -> str:
    """Return ``name`` if it is an RFC 1123 host name, else UserConfigError."""
    if not isinstance(name, str) or not name or len(name) > 253 or not all(
            _LABEL_RE.fullmatch(label) for label in name.split(".")):
        shown = name[:64] if isinstance(name, str) else repr(type(name))
        raise UserConfigError("invalid host name", hostname=shown)
    return name


# --------------------------------------------------------- ssh_pwauth + plan

def ssh_pwauth(disable_ssh_password_auth: Optional[bool],
               has_password: bool) -> Optional[bool]:
    """sshd PasswordAuthentication: explicit flag wins; else on with a password.

    None means "leave sshd as the image has it".
    """
    if disable_ssh_password_auth is not None:
        return not disable_ssh_password_auth
    return True if has_password else None


DEFAULT_SUDO = "ALL=(ALL) NOPASSWD:ALL"


@dataclass(frozen=True)
class UserPlan:
    """Everything decided about the admin user and host name, ready to apply."""

    name: str
    password_hash: Optional[str] = field(default=None, repr=False)
    lock_password: bool = True
    ssh_keys: tuple[str, ...] = ()
    ssh_pwauth: Optional[bool] = None
    hostname: Optional[str] = None
    sudo: Optional[str] = DEFAULT_SUDO
    groups: tuple[str, ...] = ()


def plan_user(username: str, password: Optional[str], ssh_keys: Iterable[str],
              disable_ssh_password_auth: Optional[bool], hostname: Optional[str],
              existing_system_users: Optional[Mapping[str, int]] = None, *,
              runner: Runner = run, sudo: Optional[str] = DEFAULT_SUDO,
              groups: Sequence[str] = ()) -> UserPlan:
    """Validate and combine the platform's user request into a :class:`UserPlan`.

    A password equal to ``REDACTED`` comes from the cached (redacted) copy of
    ovf-env.xml: the account keeps a password (not locked) but none is set,
    as cloud-init's own datasource does.
    """
    name = validate_username(username, existing_system_users)
    if isinstance(ssh_keys, str):
        raise TypeError("ssh_keys is a list of keys, not one key")
    keys: list[str] = []
    for index, key in enumerate(ssh_keys):
        normal = normalize_ssh_key(key, index=index)
        if normal not in keys:
            keys.append(normal)
    has_password = bool(password)
    if password == REDACTED:
        password_hash = None
    else:
        password_hash = hash_password(password, runner)
    return UserPlan(
        name=name,
        password_hash=password_hash,
        lock_password=not has_password,
        ssh_keys=tuple(keys),
        ssh_pwauth=ssh_pwauth(disable_ssh_password_auth, has_password),
        hostname=validate_hostname(hostname) if hostname is not None else None,
        sudo=sudo,
        groups=tuple(groups),
    )


def cloud_config(plan: UserPlan) -> dict[str, Any]:
    """The cloud-config fragment for the datasource's ``get_config_obj()``.

    Same shape as cloud-init 22.4's Azure datasource (``default_user`` with
    ``name``, ``lock_passwd``, ``hashed_passwd``); it is merged over the
    distro's ``default_user``, so ``groups`` is only set when asked for.
    Host name and keys travel in metadata, not here.
    """
    default_user: dict[str, Any] = {"name": plan.name, "lock_passwd": plan.lock_password}
    if plan.password_hash:
        default_user["hashed_passwd"] = plan.password_hash
    if plan.groups:
        default_user["groups"] = list(plan.groups)
    if plan.sudo:
        default_user["sudo"] = [plan.sudo]
    cfg: dict[str, Any] = {"system_info": {"default_user": default_user},
                           "disable_root": True}
    if plan.ssh_pwauth is not None:
        cfg["ssh_pwauth"] = plan.ssh_pwauth
    return cfg
