"""The admin user and host name decisions the datasource hands to cloud-init.

Pure except for :func:`read_passwd` (reads a file it is given) and the
password hashing fallback (runs ``openssl`` through an injectable runner with
the password on stdin). Every rejection is a
:class:`~cloudinit_azure.report.UserConfigError` whose text never holds a
password and only a short prefix of a key.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
import string
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Optional, Union

from cloudinit_azure.ovf import REDACTED
from cloudinit_azure.report import (
    InvalidHostNameError,
    InvalidUserNameError,
    PasswordControlCharacterError,
    PasswordHashError,
    PasswordTooLongError,
    ReservedUserNameError,
    UserConfigError,
)
from cloudinit_azure.runner import Runner

# Re-exported: callers import them from here.
from cloudinit_azure.ssh_keys import KNOWN_KEY_TYPES, normalize_ssh_key  # noqa: F401

# ---------------------------------------------------------------- user names

# Azure's rule for a Linux adminUsername (Compute API, OSProfile): 1 to 64
# characters; upper case is allowed. Within that, a name must be one the
# distro's useradd creates and that is safe as a path and a sudoers entry:
# POSIX's portable set [A-Za-z0-9._-], not starting with '-' (an option) or
# '.' (a hidden home), not all digits (read as a uid by chown and friends).
AZURE_MAX_USERNAME = 64
# shadow before 4.14 (Debian 12's useradd) refuses names over 32 characters
# (the utmp field); 4.14 and later take up to LOGIN_NAME_MAX - 1.
USERADD_MAX_USERNAME = 32
_USERNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
RESERVED_USERNAMES = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news",
    "uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody",
    "messagebus", "sshd", "_apt",
})
RESERVED_PREFIXES = ("systemd-",)
# Accounts below this uid belong to the system; the admin must not take one over.
FIRST_USER_UID = 1000


def _name_problem(name: str, max_length: int) -> Optional[str]:
    if not name:
        return "empty"
    if len(name) > max_length:
        return f"longer than {max_length} characters"
    if not _USERNAME_RE.fullmatch(name):
        return "only letters, digits, '_', '.', '-' (not first: '-', '.')"
    if name.isdigit():
        return "all digits"
    return None


def _shown_name(name: str) -> str:
    """A refused name as the report may carry it: short and encodable."""
    return name[:40].encode("utf-8", "backslashreplace").decode("utf-8")


def validate_username(name: str,
                      existing_system_users: Optional[Mapping[str, int]] = None, *,
                      max_length: int = USERADD_MAX_USERNAME) -> str:
    """Return ``name`` if it may become the admin user, else UserConfigError.

    ``max_length`` is what the distro's useradd creates (see
    :func:`username_limit`), never more than Azure's 64. Reserved names are
    compared without case: ``Root`` is refused like ``root``.
    """
    if not isinstance(name, str):
        raise InvalidUserNameError(user=repr(type(name)), problem="not text")
    problem = _name_problem(name, min(max_length, AZURE_MAX_USERNAME))
    if problem:
        raise InvalidUserNameError(user=_shown_name(name), problem=problem)
    folded = name.lower()
    if folded in RESERVED_USERNAMES or folded.startswith(RESERVED_PREFIXES):
        raise ReservedUserNameError(user=name)
    uid = (existing_system_users or {}).get(name)
    if uid is not None and uid < FIRST_USER_UID:
        raise ReservedUserNameError(user=name, uid=uid)
    return name


_SHADOW_VERSION_RE = re.compile(r"^(?:\d+:)?(\d+)\.(\d+)")


def username_limit(passwd_version: Optional[str]) -> int:
    """The longest admin name the distro's useradd creates, from its version.

    ``passwd_version`` is the Debian ``passwd`` package's version (shadow's
    useradd), e.g. ``1:4.13+dfsg1-1``: below 4.14 the limit is 32; from 4.14
    on, Azure's 64 is the tighter one. Unknown -> 32, which every useradd takes.
    """
    match = _SHADOW_VERSION_RE.match(passwd_version or "")
    if match is None:
        return USERADD_MAX_USERNAME
    if (int(match.group(1)), int(match.group(2))) >= (4, 14):
        return AZURE_MAX_USERNAME
    return USERADD_MAX_USERNAME


def read_username_limit(dpkg_status: Union[str, os.PathLike]) -> int:
    """:func:`username_limit` of the ``passwd`` package in a dpkg status file."""
    try:
        with open(dpkg_status, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return USERADD_MAX_USERNAME
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines()
                      if ": " in line and not line.startswith(" "))
        if fields.get("Package") == "passwd":
            return username_limit(fields.get("Version"))
    return USERADD_MAX_USERNAME


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


def password_locked(shadow: str, name: str) -> bool:
    """True when ``name``'s entry in a shadow(5) text has a locked password (``!``).

    What ``passwd -l`` makes of any entry, and what shadow's useradd writes for a
    new account given no password; an absent entry or any other field: False.
    """
    for line in shadow.splitlines():
        parts = line.split(":")
        if len(parts) > 1 and parts[0] == name:
            return parts[1].startswith("!")
    return False


# ----------------------------------------------------------------- passwords

# Azure's limit for a Linux admin password (Compute API OSProfile.adminPassword:
# 6 to 72 characters; 123 is Windows'); longer is not from the platform.
MAX_PASSWORD_LENGTH = 72
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
        raise PasswordTooLongError(max_length=MAX_PASSWORD_LENGTH)
    # Line breaks would split the stdin line openssl reads; NUL breaks crypt(3).
    if any(c in password for c in "\r\n\x00"):
        raise PasswordControlCharacterError()


def _openssl_sha512(password: str, salt: str, runner: Runner) -> str:
    # The salt is not secret; the password only ever travels on stdin.
    try:
        result = runner(["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
                        input=password + "\n", check=False)
    except OSError as exc:  # openssl missing or not runnable
        raise PasswordHashError(tool="openssl", error=type(exc).__name__) from None
    hashed = result.stdout.strip() if result.returncode == 0 else ""
    if not hashed.startswith("$6$"):
        raise PasswordHashError(tool="openssl", returncode=result.returncode)
    return hashed


def _backend_crypt(backend: str) -> Optional[ModuleType]:
    if backend not in ("auto", "crypt", "openssl"):
        raise ValueError(f"unknown password hashing backend {backend!r}")
    crypt_mod = _crypt_module() if backend != "openssl" else None
    if backend == "crypt" and crypt_mod is None:
        raise RuntimeError("the crypt module is not available")
    return crypt_mod


def hash_password(password: Optional[str], runner: Runner, *,
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
        raise PasswordHashError(tool="crypt")
    return hashed


def verify_password(password: str, hashed: str, runner: Runner, *,
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


# ---------------------------------------------------------------- host names

_LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def validate_hostname(name: str) -> str:
    """Return ``name`` if it is an RFC 1123 host name, else UserConfigError."""
    if not isinstance(name, str) or not name or len(name) > 253 or not all(
            _LABEL_RE.fullmatch(label) for label in name.split(".")):
        shown = name[:64] if isinstance(name, str) else repr(type(name))
        raise InvalidHostNameError(hostname=shown)
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
# ``datasource: Azure: sudo:`` policies -> the sudoers rule of the admin user.
SUDO_RULES: dict[str, Optional[str]] = {
    "password": "ALL=(ALL) ALL", "nopasswd": DEFAULT_SUDO, "none": None}


def sudo_rule(policy: Optional[str], has_password: bool) -> Optional[str]:
    """The admin's sudoers rule: ``auto`` asks for the password when one was given.

    As the Azure Linux Agent does: a user who chose a password types it for
    sudo; a key-only user has no password to type, so sudo cannot ask.
    ``password``/``nopasswd``/``none`` force a rule; any other text is taken
    as the rule itself; None means no rule.
    """
    if policy == "auto":
        policy = "password" if has_password else "nopasswd"
    if policy is None or policy in SUDO_RULES:
        return SUDO_RULES.get(policy) if policy else None
    return policy


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
              runner: Runner, sudo: Optional[str] = "auto",
              groups: Sequence[str] = (),
              max_username_length: int = USERADD_MAX_USERNAME) -> UserPlan:
    """Validate and combine the platform's user request into a :class:`UserPlan`.

    A password equal to ``REDACTED`` comes from the cached (redacted) copy of
    ovf-env.xml: the account keeps a password (not locked) but none is set,
    as cloud-init's own datasource does. ``sudo`` is a :func:`sudo_rule`
    policy (the ``sudo`` setting) or a rule; ``max_username_length`` what
    the distro's useradd creates (:func:`read_username_limit`).
    """
    name = validate_username(username, existing_system_users,
                             max_length=max_username_length)
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
        sudo=sudo_rule(sudo, has_password),
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
