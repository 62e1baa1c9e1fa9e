"""After the recovery boot of a power cut: what must hold, whatever the cut broke.

Exactly-once health reports are the report's verdict; here: the user and
keys, sudoers (visudo), fstab, grub's defaults, the files the plug-in writes
(none empty or truncated), the resource disk's user files and the KVP pool
(docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional


def expectations(scenario: dict[str, Any]) -> dict[str, Any]:
    """What the checks compare against, from the scenario (plan keys)."""
    from azure_sim import deps, images

    ovf = scenario.get("ovf") or {}
    visudo = deps.CACHE / "tools/sudo/usr/sbin/visudo"
    out: dict[str, Any] = {"expect_ready": scenario["expect"] == "ready",
                           "expect_keys": list(ovf.get("public_keys") or []),
                           "visudo": str(visudo) if visudo.exists() else None}
    disk = scenario["resource_disk"]
    if disk and disk["format"] == "ntfs":
        out["resource_disk_user_files"] = {
            name: images.user_file_text(name) for name in disk["files"]
            if not name.lower().startswith("dataloss")}
    return out


def checks(plan: dict[str, Any], root: Path, observed: dict[str, Any]) -> dict[str, Any]:
    """What must hold after the recovery boot, whatever the cut broke."""
    problems: list[str] = []
    user = observed.get("user") or {}
    name = plan.get("expect_user")
    if name and plan.get("expect_ready", True):
        if not user.get("exists"):
            problems.append(f"user {name} does not exist")
        keys = user.get("authorized_keys") or []
        missing = [k for k in plan.get("expect_keys", []) if k not in keys]
        if missing:
            problems.append(f"authorized_keys lacks {len(missing)} of the scenario's keys")
        if any(len(k.split()) < 2 for k in keys):
            problems.append("authorized_keys has a malformed line")
    problems += sudoers_problems(plan, root)
    problems += fstab_problems(root / "etc/fstab")
    problems += grub_problems(root)
    problems += written_file_problems(root)
    problems += kvp_problems(root / "var/lib/hyperv/.kvp_pool_1")
    disk = user_files(plan, root)
    if disk is not None and not disk["intact"]:
        problems.append(f"resource disk user files damaged: {disk['files']}")
    return {"problems": problems, "user_files": disk}


def sudoers_problems(plan: dict[str, Any], root: Path) -> list[str]:
    visudo = plan.get("visudo")
    out = []
    for path in sorted((root / "etc/sudoers.d").glob("*")):
        if not path.is_file():
            continue
        if path.stat().st_size == 0:
            out.append(f"/etc/sudoers.d/{path.name} is empty")
            continue
        if not visudo:
            continue
        env = dict(os.environ, LD_LIBRARY_PATH=str(Path(visudo).parents[1] / "libexec/sudo"))
        res = subprocess.run([visudo, "-c", "-q", "-f", str(path)], env=env,
                             capture_output=True, text=True, check=False)
        if res.returncode != 0:
            out.append(f"visudo -c /etc/sudoers.d/{path.name}: "
                       f"{(res.stderr or res.stdout).strip()[:200]}")
    return out


def fstab_problems(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except OSError:
        return ["/etc/fstab is missing"]
    out = []
    resource = 0
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if not 4 <= len(words) <= 6:
            out.append(f"/etc/fstab line {n} does not parse: {line!r}")
        if "azure_resource" in words[0] or words[1:2] == ["/mnt"]:
            resource += 1
    if resource > 1:
        out.append(f"/etc/fstab has {resource} resource-disk lines")
    return out


def grub_problems(root: Path) -> list[str]:
    """Grub's defaults: each file parses (sh -n, and our editor's own parser),
    and no argument appears twice on the effective command line."""
    from cloudinit_azure.kernel import cmdline

    files = [root / cmdline.GRUB_DEFAULT, *sorted((root / cmdline.GRUB_D).glob("*.cfg"))]
    out = []
    for path in files:
        if not path.is_file():
            continue
        rel = "/" + str(path.relative_to(root))
        if not path.read_text(errors="replace").strip():
            out.append(f"{rel} is empty")
        res = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True,
                             check=False)
        if res.returncode != 0:
            out.append(f"{rel} does not parse: {res.stderr.strip()[:160]}")
    try:
        words = cmdline.current_words(str(root))
    except cmdline.UnsafeGrubFile as exc:
        return out + [f"grub defaults do not parse: {exc}"]
    twice = sorted({w for w in words if words.count(w) > 1})
    if twice:
        out.append(f"grub defaults carry {' '.join(twice)} more than once")
    return out


def written_file_problems(root: Path) -> list[str]:
    """Files the plug-in writes: none empty, none truncated (each parses)."""
    from defusedxml import ElementTree

    out = []
    state = root / "var/lib/cloudinit-azure"
    for path in sorted(state.glob("*")) if state.is_dir() else []:
        if path.is_file() and path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except (OSError, ValueError):
                out.append(f"/var/lib/cloudinit-azure/{path.name} does not parse")
        if path.name.endswith(".tmp"):
            out.append(f"/var/lib/cloudinit-azure/{path.name}: a temporary file was left")
    for rel in ("etc", "etc/default", "etc/default/grub.d", "var/lib/waagent"):
        for stale in sorted((root / rel).glob(".*.tmp")):
            out.append(f"/{rel}/{stale.name}: a temporary file was left")
    ovf = root / "var/lib/waagent/ovf-env.xml"
    if ovf.exists():
        try:
            ElementTree.fromstring(ovf.read_bytes())
        except Exception as exc:  # empty or truncated
            out.append(f"/var/lib/waagent/ovf-env.xml does not parse: {exc}")
    for rel in ("etc/hostname", "etc/fstab"):
        path = root / rel
        if path.exists() and path.stat().st_size == 0:
            out.append(f"/{rel} is empty")
    for key in sorted((root / "etc/ssh").glob("ssh_host_*_key")):
        pub = key.with_name(key.name + ".pub")
        if key.stat().st_size == 0 or not pub.exists() or pub.stat().st_size == 0:
            out.append(f"/etc/ssh/{key.name} (or its .pub) is empty or missing")
            continue
        res = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                             text=True, check=False)
        if res.returncode != 0 or res.stdout.split()[:2] != pub.read_text().split()[:2]:
            out.append(f"/etc/ssh/{key.name} does not match its .pub")
    return out


def kvp_problems(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except OSError:
        return []  # no KVP pool on this machine (the QEMU VM has no Hyper-V)
    if len(data) % 2560:
        return [f"the KVP pool is {len(data)} bytes: not whole 2,560-byte records"]
    out = []
    for off in range(0, len(data), 2560):
        try:
            data[off:off + 512].split(b"\0", 1)[0].decode("utf-8")
            data[off + 512:off + 2560].split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            out.append(f"KVP record {off // 2560} is not UTF-8")
    return out


def user_files(plan: dict[str, Any], root: Path) -> Optional[dict[str, Any]]:
    """The resource disk's user files, read from the NTFS partition (no mount)."""
    spec = plan.get("resource_disk_user_files")
    if not spec:
        return None
    partition = plan.get("resource_partition") or str(root / "dev/sdb1")
    env = dict(os.environ, **plan["tool_env"])
    ntfscat = shutil.which("ntfscat", path=env["PATH"])
    found: dict[str, Any] = {}
    for name, want in spec.items():
        res = subprocess.run([ntfscat or "ntfscat", partition, name], env=env,
                             capture_output=True, check=False)
        found[name] = (res.returncode == 0 and res.stdout.decode(errors="replace") == want)
    return {"intact": all(found.values()), "files": found}
