"""The sandbox VM's file systems: the overlay root, private /dev, /run, proc, sysfs.

Every mount is made inside the sandbox's own mount namespace
(:mod:`azure_sim.sandbox`), so it goes when the namespace does.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Optional

from azure_sim import guestroot, powercut


def sh(*cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), check=check, **kw)


def mount(src: str, target: Path | str, fstype: Optional[str] = None,
          opts: Optional[str] = None) -> None:
    cmd = ["mount"]
    if fstype:
        cmd += ["-t", fstype]
    if opts:
        cmd += ["-o", opts]
    sh(*cmd, src, str(target))


def build_root(plan: dict[str, Any], work: Path, root: Path) -> None:
    """The VM's root: an overlay (the image layer, the host root) on a tmpfs, with
    its own proc, a read-only sysfs, /run and /dev; then the image's files."""
    tmp = work / "t"
    tmp.mkdir(exist_ok=True)
    mount("tmpfs", tmp, "tmpfs", "mode=0700,size=8g")
    for name in ("upper", "work"):
        (tmp / name).mkdir()
    root.mkdir(exist_ok=True)
    # overlayfs refuses a lower layer inside another (the layer lives under
    # /): give it its own copy on the tmpfs.
    layer = tmp / "layer"
    sh("cp", "-a", "--reflink=auto", plan["layer"], str(layer))
    lower = f"{layer}:/"
    mount("overlay", root, "overlay",
          f"lowerdir={lower},upperdir={tmp / 'upper'},workdir={tmp / 'work'}")
    r = root
    mount("proc", r / "proc", "proc")
    # Keep the host's non-namespaced knobs out of reach of the VM.
    sh("mount", "--bind", "-o", "ro", str(r / "proc/sys"), str(r / "proc/sys"))
    sh("mount", "-o", "remount,bind,ro", str(r / "proc/sys"))
    # Network sysctls belong to the VM's own network namespace: DHCP
    # clients (dhcpcd) set them, and the host's are not reachable from here.
    sh("mount", "--bind", "/proc/sys/net", str(r / "proc/sys/net"))
    mount("sysfs", r / "sys", "sysfs", "ro,nosuid,nodev,noexec")
    if plan.get("generation", 2) == 2:
        # Gen2 VMs boot UEFI; cloud-init reads the DMI uuid byte order from it.
        mount("tmpfs", r / "sys/firmware", "tmpfs", "mode=0755,size=1m")
        (r / "sys/firmware/efi").mkdir()
    mount("tmpfs", r / "run", "tmpfs", "mode=0755,size=256m")
    mount("tmpfs", r / "dev", "tmpfs", "mode=0755,size=16m")
    populate_dev(plan, root)
    for stale in (".dockerenv", "run/.containerenv"):
        path = r / stale
        if path.exists():
            path.unlink()
    guestroot.install(plan, r)
    powercut.install(plan, r)

def populate_dev(plan: dict[str, Any], root: Path) -> None:
    """A private /dev: the usual nodes, devpts, shm, and the plan's block devices."""
    dev = root / "dev"
    nodes = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
             "urandom": (1, 9), "tty": (5, 0), "kmsg": None}
    for name, majmin in nodes.items():
        if majmin is None:
            continue
        os.mknod(dev / name, 0o666 | 0o020000, os.makedev(*majmin))
    (dev / "pts").mkdir()
    mount("devpts", dev / "pts", "devpts", "newinstance,ptmxmode=0666,mode=0620")
    os.symlink("pts/ptmx", dev / "ptmx")
    (dev / "shm").mkdir()
    mount("tmpfs", dev / "shm", "tmpfs", "mode=1777")
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, dev / link)
    (dev / "disk" / "cloud").mkdir(parents=True)
    for blk in plan.get("block_devices", []):
        os.mknod(dev / blk["name"], 0o660 | 0o060000,
                 os.makedev(blk["major"], blk["minor"]))
        for alias in blk.get("links", []):
            link = dev / alias
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(dev / blk["name"], link.parent), link)
