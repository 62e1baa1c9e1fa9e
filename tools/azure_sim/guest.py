"""What we read back from the simulated VM after boot (``observe``, ``links``).

Runs on the host for a sandbox boot and inside the VM (shipped with
collect.py by the image builder), so it imports nothing else of azure_sim
but :mod:`azure_sim.collect`. What the image holds before it boots is
:mod:`azure_sim.guestroot`.
"""

from __future__ import annotations

import glob
import json
import stat
from pathlib import Path
from typing import Any, Optional

KVP_POOL = "var/lib/hyperv/.kvp_pool_1"
KVP_RECORD = 2560


def _sshd_password_auth(root: Path) -> bool:
    """PasswordAuthentication as sshd would resolve it (first value wins)."""

    def values(path: Path, depth: int = 0) -> list[str]:
        out: list[str] = []
        try:
            lines = path.read_text().splitlines()
        except OSError:
            return out
        for line in lines:
            words = line.split("#", 1)[0].split()
            if len(words) < 2:
                continue
            key = words[0].lower()
            if key == "include" and depth < 4:
                for pattern in words[1:]:
                    pattern = pattern if pattern.startswith("/") else f"/etc/ssh/{pattern}"
                    for inc in sorted(glob.glob(str(root / pattern.lstrip("/")))):
                        out += values(Path(inc), depth + 1)
            elif key == "match":
                break
            elif key == "passwordauthentication":
                out.append(words[1].lower())
        return out

    found = values(root / "etc/ssh/sshd_config")
    return (found[0] if found else "yes") == "yes"


def _verify_password(password: str, hashed: str) -> Optional[bool]:
    try:
        import crypt  # noqa: PLC0415 - deprecated, fine for a test tool on 3.11

        return crypt.crypt(password, hashed) == hashed
    except ImportError:
        return None


def _user(plan: dict[str, Any], root: Path) -> dict[str, Any]:
    name = plan.get("expect_user")
    info: dict[str, Any] = {"name": name, "exists": False, "authorized_keys": [],
                            "password_login_allowed": False, "password_set": False,
                            "password_verifies": None, "groups": []}
    if not name:
        return info
    for line in (root / "etc/passwd").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == name:
            info["exists"] = True
            info["uid"] = int(parts[2])
            info["home"] = parts[5]
    for line in (root / "etc/group").read_text().splitlines():
        parts = line.split(":")
        if len(parts) > 3 and name in parts[3].split(","):
            info["groups"].append(parts[0])
    keys = root / "home" / name / ".ssh/authorized_keys"
    if keys.exists():
        info["authorized_keys"] = [k for k in keys.read_text().splitlines() if k.strip()]
        info["authorized_keys_mode"] = oct(stat.S_IMODE(keys.stat().st_mode))
    hashed = ""
    for line in (root / "etc/shadow").read_text().splitlines():
        parts = line.split(":")
        if parts[0] == name:
            hashed = parts[1]
    usable = bool(hashed) and not hashed.startswith(("!", "*"))
    info["password_set"] = usable
    if usable and plan.get("password_file"):
        password = Path(plan["password_file"]).read_text()
        info["password_verifies"] = _verify_password(password, hashed)
    info["password_login_allowed"] = usable and _sshd_password_auth(root)
    return info


def password_login_allowed(name: str, root: Path) -> bool:
    """The watcher's probe: the user has a usable password and sshd accepts passwords."""
    try:
        shadow = (root / "etc/shadow").read_text()
    except OSError:
        return False
    hashed = next((line.split(":")[1] for line in shadow.splitlines()
                   if line.split(":")[0] == name and line.count(":") > 1), "")
    return hashed.startswith("$") and _sshd_password_auth(root)


def host_key_fingerprints(root: Path) -> dict[str, str]:
    """``{public key file: sha256 of its key}``: what an SSH client would pin."""
    import hashlib

    out = {}
    for path in sorted((root / "etc/ssh").glob("ssh_host_*_key.pub")):
        try:
            words = path.read_text().split()
        except OSError:
            continue
        if len(words) >= 2:
            out[path.name] = hashlib.sha256(words[1].encode()).hexdigest()[:16]
    return out


def _kvp(root: Path) -> list[dict[str, str]]:
    try:
        data = (root / KVP_POOL).read_bytes()
    except OSError:
        return []
    out = []
    for off in range(0, len(data) - KVP_RECORD + 1, KVP_RECORD):
        rec = data[off:off + KVP_RECORD]
        key = rec[:512].split(b"\0", 1)[0].decode("utf-8", "replace")
        value = rec[512:].split(b"\0", 1)[0].decode("utf-8", "replace")
        if key:
            out.append({"key": key, "value": value})
    return out


def _mounts(root: Path) -> list[dict[str, str]]:
    out = []
    prefix = str(root)
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        target = fields[4]
        fstype, source = right.split()[:2]
        if target.startswith(prefix + "/") and fstype not in (
                "proc", "sysfs", "tmpfs", "devpts", "overlay"):
            out.append({"mountpoint": target[len(prefix):], "fstype": fstype,
                        "source": source, "majmin": fields[2]})
    return out


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def observe(plan: dict[str, Any], root: Path) -> dict[str, Any]:
    """Everything the report needs from the VM after its last boot."""
    import socket

    etc_hostname = root / "etc/hostname"
    files = {}
    for rel in plan.get("expect_files", []):
        path = root / rel.lstrip("/")
        files[rel] = path.read_text(errors="replace") if path.is_file() else None
    fstab = (root / "etc/fstab").read_text() if (root / "etc/fstab").exists() else ""
    services = root / "run/azure-sim/services.log"
    ejects = root / "run/azure-sim/eject.log"
    host_global = root / "run/azure-sim/host-global.log"
    return {
        "user": _user(plan, root),
        "hostname": socket.gethostname(),
        "etc_hostname": etc_hostname.read_text().strip() if etc_hostname.exists() else None,
        "files": files,
        "mounts": _mounts(root),
        "fstab": fstab,
        "kvp": _kvp(root),
        "result_json": _json(root / "run/cloud-init/result.json"),
        "status_json": _json(root / "run/cloud-init/status.json"),
        "instance_id": (root / "var/lib/cloud/data/instance-id").read_text().strip()
        if (root / "var/lib/cloud/data/instance-id").exists() else None,
        "services": services.read_text().splitlines() if services.exists() else [],
        "ejected": ejects.read_text().splitlines() if ejects.exists() else [],
        "host_global_calls": host_global.read_text().splitlines()
        if host_global.exists() else [],
        "waagent_ovf": _waagent(root),
        "secret_leaks": secret_leaks(plan, root),
        "cloud_init_log_tail": _tail(root / "var/log/cloud-init.log", 60),
        "warnings": _warnings(root / "var/log/cloud-init.log"),
        "system": _system(plan, root),
    }


def _system(plan: dict[str, Any], root: Path) -> dict[str, Any]:
    """The snapshot ``azure-sim diff`` compares (tools/azure_sim/collect.py)."""
    from azure_sim import collect

    return collect.system(plan, root)


def secret_leaks(plan: dict[str, Any], root: Path) -> list[str]:
    """World-readable files that hold the password, its hash or the customData."""
    secrets: list[bytes] = []
    if plan.get("password_file"):
        secrets.append(Path(plan["password_file"]).read_bytes())
    name = plan.get("expect_user")
    for line in (root / "etc/shadow").read_text().splitlines():
        parts = line.split(":")
        if name and parts[0] == name and parts[1].startswith("$"):
            secrets.append(parts[1].encode())
    for text in plan.get("secret_texts", []):
        secrets.append(text.encode())
    secrets = [s for s in secrets if len(s) >= 6]
    if not secrets:
        return []
    leaks = []
    for top in ("run/cloud-init", "var/lib/cloud", "var/log", "var/lib/waagent",
                "var/lib/cloudinit-azure", "var/lib/hyperv", "etc/cloud", "var/tmp"):
        base = root / top
        if not base.exists():
            continue
        for path in base.rglob("*"):
            try:
                st = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or not st.st_mode & stat.S_IROTH:
                continue
            if not all(p.stat().st_mode & stat.S_IXOTH
                       for p in path.parents if str(p).startswith(str(root))):
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(secret in data for secret in secrets):
                leaks.append("/" + str(path.relative_to(root)))
    return sorted(leaks)


def links() -> list[dict[str, str]]:
    """The VM's network interfaces (name, MAC, state), from its own namespace."""
    import subprocess

    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                         check=False).stdout
    try:
        data = json.loads(out or "[]")
    except ValueError:
        return []
    return [{"name": d.get("ifname"), "mac": d.get("address"),
             "state": d.get("operstate")} for d in data]


def _waagent(root: Path) -> Optional[dict[str, Any]]:
    path = root / "var/lib/waagent/ovf-env.xml"
    if not path.exists():
        return None
    st = path.stat()
    return {"mode": oct(stat.S_IMODE(st.st_mode)),
            "dir_mode": oct(stat.S_IMODE(path.parent.stat().st_mode)),
            "has_redacted": b"REDACTED" in path.read_bytes()}


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _warnings(path: Path) -> list[str]:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in text if " - WARNING" in line or "[WARNING]" in line
            or " - ERROR" in line or "[ERROR]" in line][:50]
