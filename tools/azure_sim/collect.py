"""What a user could notice in the VM after boot, as plain data, for ``azure-sim diff``.

Runs in the sandbox after the last boot (``guest.observe`` calls ``system``).
Secrets never leave the VM: of a shadow entry only whether a hash is set, its
scheme and the lock state are kept; every text holding the scenario's password
or customData is replaced by ``<redacted>``; instance data comes from the
non-root ``instance-data.json``, which cloud-init already redacts.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import socket
import stat
from pathlib import Path
from typing import Any, Iterable, Optional

REDACTED = "<redacted>"
# sshd's compiled-in defaults for the settings a provisioning agent touches.
SSHD_DEFAULTS = {"passwordauthentication": "yes", "pubkeyauthentication": "yes",
                 "permitrootlogin": "prohibit-password",
                 "kbdinteractiveauthentication": "yes", "usepam": "no"}
NETWORK_GLOBS = ("etc/network/interfaces", "etc/network/interfaces.d/*",
                 "etc/systemd/network/*", "etc/netplan/*",
                 "etc/NetworkManager/system-connections/*",
                 "etc/sysconfig/network-scripts/ifcfg-*", "etc/udev/rules.d/*net*",
                 "etc/resolv.conf")
FILE_LINES = 200  # of a file customData wrote under /var/tmp


def _lines(path: Path) -> list[str]:
    """Meaningful lines: no comments, no blanks (their wording is not behaviour)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _fields(root: Path, name: str) -> list[list[str]]:
    return [line.split(":") for line in _lines(root / "etc" / name)]


def passwd(root: Path) -> dict[str, dict[str, Any]]:
    return {p[0]: {"uid": p[2], "gid": p[3], "gecos": p[4], "home": p[5], "shell": p[6]}
            for p in _fields(root, "passwd") if len(p) >= 7}


def groups(root: Path) -> dict[str, dict[str, Any]]:
    return {g[0]: {"gid": g[2], "members": sorted(m for m in g[3].split(",") if m)}
            for g in _fields(root, "group") if len(g) >= 4}


def password_state(field: str) -> dict[str, Any]:
    """A shadow password field described without the hash: set, scheme, locked."""
    locked = field.startswith("!")
    rest = field.lstrip("!")
    scheme = rest.split("$")[1] if rest.startswith("$") and rest.count("$") >= 2 else None
    return {"hash_set": bool(scheme), "scheme": scheme, "locked": locked,
            "empty": field == ""}


def shadow(root: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for s in _fields(root, "shadow"):
        if len(s) < 9:
            continue
        out[s[0]] = {**password_state(s[1]), "min": s[3], "max": s[4], "warn": s[5],
                     "inactive": s[6], "expire": s[7]}
    return out


def sudoers(root: Path) -> dict[str, Any]:
    out = {}
    for path in [root / "etc/sudoers", *sorted((root / "etc/sudoers.d").glob("*"))]:
        if path.is_file():
            out["/" + str(path.relative_to(root))] = {
                "mode": oct(stat.S_IMODE(path.stat().st_mode)), "lines": _lines(path)}
    return out


def sshd(root: Path) -> dict[str, Any]:
    """Effective sshd settings for a plain login: first value wins, Include is
    followed, and a Match block ends the file it is in (as in OpenSSH)."""
    found: dict[str, str] = {}
    files: list[str] = []

    def read(path: Path, depth: int) -> None:
        files.append("/" + str(path.relative_to(root)))
        for line in _lines(path):
            words = line.split()
            if len(words) < 2:
                continue
            key = words[0].lower()
            if key == "match":
                return
            if key == "include" and depth < 4:
                for pattern in words[1:]:
                    pattern = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
                    for inc in sorted(glob.glob(str(root / pattern.lstrip("/")))):
                        read(Path(inc), depth + 1)
            elif key not in found:
                found[key] = " ".join(words[1:])

    if (root / "etc/ssh/sshd_config").exists():
        read(root / "etc/ssh/sshd_config", 0)
    host_keys = sorted(p.name[len("ssh_host_"):-len("_key.pub")]
                       for p in (root / "etc/ssh").glob("ssh_host_*_key.pub"))
    return {"settings": {**SSHD_DEFAULTS, **found}, "config_files": files,
            "host_key_types": host_keys}


def _owner(st: os.stat_result) -> str:
    try:
        return pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        return str(st.st_uid)


def authorized_keys(root: Path) -> dict[str, Any]:
    out = {}
    for path in sorted(glob.glob(str(root / "home/*/.ssh/authorized_keys"))) + [
            str(root / "root/.ssh/authorized_keys")]:
        p = Path(path)
        if p.is_file():
            st = p.stat()
            out["/" + str(p.relative_to(root))] = {
                "lines": _lines(p), "mode": oct(stat.S_IMODE(st.st_mode)),
                "owner": _owner(st)}
    return out


def text_files(root: Path, patterns: Iterable[str]) -> dict[str, list[str]]:
    out = {}
    for pattern in patterns:
        for path in sorted(glob.glob(str(root / pattern))):
            p = Path(path)
            if p.is_file() and not p.is_symlink():
                out["/" + str(p.relative_to(root))] = _lines(p)
            elif p.is_symlink():
                out["/" + str(p.relative_to(root))] = [f"-> {os.readlink(p)}"]
    return out


def instance_data(root: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((root / "run/cloud-init/instance-data.json").read_text())
    except (OSError, ValueError):
        return None


def redact(value: Any, secrets: list[str]) -> Any:
    """Replace every string holding a secret (or the secret inside a key)."""
    if isinstance(value, dict):
        return {redact(k, secrets): redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str) and any(s in value for s in secrets):
        return REDACTED
    return value


def secrets_of(plan: dict[str, Any]) -> list[str]:
    out = list(plan.get("secret_texts") or [])
    if plan.get("password_file"):
        out.append(Path(plan["password_file"]).read_text())
    return [s for s in out if len(s) >= 6]


def mounts(root: Path) -> list[str]:
    """``mountpoint fstype`` lines (sources are loop devices that differ per run)."""
    from azure_sim import guest

    return sorted(f"{m['mountpoint']} {m['fstype']}" for m in guest._mounts(root))


def system(plan: dict[str, Any], root: Path) -> dict[str, Any]:
    """The whole snapshot ``azure-sim diff`` compares (see tools/azure_sim/diff.py)."""
    snapshot = {
        "passwd": passwd(root), "group": groups(root), "shadow": shadow(root),
        "sudoers": sudoers(root), "sshd": sshd(root),
        "authorized_keys": authorized_keys(root),
        "hostname": socket.gethostname(),
        "etc_hostname": _lines(root / "etc/hostname"),
        "hosts": _lines(root / "etc/hosts"),
        "fstab": _lines(root / "etc/fstab"),
        "mounts": mounts(root),
        "network": text_files(root, NETWORK_GLOBS),
        "files": {k: v[:FILE_LINES] for k, v in text_files(root, ["var/tmp/*"]).items()},
        "instance_data": instance_data(root),
    }
    return redact(snapshot, secrets_of(plan))
