"""The Debian VM images ``azure-sim boot --vm`` boots, built from Debian packages.

One image per release: Debian 12 (bookworm, cloud-init 22.4.2) and Debian 13
(trixie, cloud-init 25.1.4). Two cached layers under ``.cache/vm/<release>/``
(``AZURE_SIM_CACHE`` moves ``.cache``):

* ``tree/``: ``debootstrap --variant=minbase <release>`` with a cloud image's
  packages (kernel, systemd, udev, cloud-init, sshd, DHCP client, disk
  tools) and the plug-in's own dependencies, so that our ``.deb`` installs
  with plain ``dpkg -i``. Built once (about a minute and 90 MB of .debs,
  kept in ``.cache/vm/debs`` so a rebuild downloads nothing); a stamp holds
  the package list, a changed list rebuilds it.
* ``root-<key>.img``: an ext4 image of that tree with our ``.deb`` installed
  by dpkg and the test-only guest files (udev rule for the resource disk,
  the report unit); ``mkfs.ext4 -d`` makes it without mounting anything. The
  key hashes the .debs (with ``waagent: true`` also Debian's waagent,
  ``waagent_image``) and the guest files: a new build makes a new image (a
  few seconds), an unchanged one is reused.

The mirror is the machine's own apt sources'. cloud-init's configuration is
Debian's: ds-identify finds Azure from the DMI chassis asset tag alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from azure_sim import aptsources, deps, vmpowercut

VM_CACHE = deps.CACHE / "vm"
# cloud-init version -> the Debian release that ships it
RELEASES = {"22.4.2": "bookworm", "25.1.4": "trixie"}
DEFAULT_RELEASE = "bookworm"

COMMON_PACKAGES = [
    # a cloud image (DESIGN 6)
    "linux-image-cloud-amd64", "systemd-sysv", "udev", "dbus", "cloud-init",
    "openssh-server", "sudo", "eject", "iproute2", "netbase",
    "ca-certificates", "e2fsprogs", "util-linux", "fdisk", "gdisk", "parted", "ntfs-3g",
    # debootstrap does not resolve this virtual dependency of python3-cryptography
    "python3-cffi-backend",
    # what python3-cloudinit-azure depends on, so dpkg -i needs no apt
    "python3-requests", "python3-yaml", "python3-jsonschema", "python3-defusedxml",
    "python3-cryptography", "python3-pycdlib", "openssl",
]
# The network stack of each release's image:
# - bookworm: dhclient, and ifupdown renders cloud-init's network config
#   (without a renderer's tools eth0 stays down after init-local);
# - trixie: as Debian 13's cloud images, netplan rendering for systemd-networkd
#   (with systemd-resolved, and Debian's own /etc/netplan/90-default.yaml), and
#   dhcpcd-base, the first DHCP client cloud-init 25.1's package depends on
#   (isc-dhcp-client is deprecated in Debian 13).
NETWORK_PACKAGES = {
    "bookworm": ["isc-dhcp-client", "ifupdown"],
    "trixie": ["dhcpcd-base", "netplan.io", "systemd-resolved"],
}
ENABLE_UNITS = {"bookworm": [], "trixie": ["systemd-networkd.service",
                                            "systemd-resolved.service"]}
# Debian's cloud images: DHCP on every Ethernet NIC until cloud-init renders its own.
DEBIAN_NETPLAN = "network:\n    version: 2\n    ethernets:\n" + "".join(
    f"        all-{prefix}:\n            match:\n                name: {prefix}*\n"
    + "".join(f"            dhcp{v}: true\n            dhcp{v}-overrides:\n"
              "                use-domains: true\n" for v in (4, 6))
    for prefix in ("en", "eth"))


def packages(release: str) -> list[str]:
    return COMMON_PACKAGES + NETWORK_PACKAGES[release]


def release_for(cloud_init: str) -> str:
    """The Debian release whose cloud-init is ``cloud_init``."""
    if cloud_init not in RELEASES:
        raise ImageError(f"no VM image ships cloud-init {cloud_init} "
                         f"(known: {', '.join(sorted(RELEASES))})")
    return RELEASES[cloud_init]


def cache_dir(release: str = DEFAULT_RELEASE) -> Path:
    return VM_CACHE / release


def tree_dir(release: str = DEFAULT_RELEASE) -> Path:
    return cache_dir(release) / "tree"


RESOURCE_SERIAL = "AZURE-SIM-RESOURCE"
KEEP_IMAGES = 4  # root images kept per release

UDEV_RULE = f"""\
# azure-sim (test only): the resource disk is a virtio disk here, not a
# Hyper-V one, so Azure's own rule cannot name it. Match it by its serial.
SUBSYSTEM=="block", KERNEL=="vd*[!0-9]", ATTRS{{serial}}=="{RESOURCE_SERIAL}", \
SYMLINK+="disk/cloud/azure_resource"
SUBSYSTEM=="block", KERNEL=="vd*[0-9]", ATTRS{{serial}}=="{RESOURCE_SERIAL}", \
SYMLINK+="disk/cloud/azure_resource-part%n"
"""

REPORT_UNIT = """\
[Unit]
Description=azure-sim (test only): report the provisioned state and power off
After=cloud-final.service cloud-init.target multi-user.target
Wants=cloud-final.service

[Service]
Type=oneshot
ExecStart=/usr/bin/python3 /usr/lib/azure-sim/vmreport.py /dev/ttyS1
ExecStopPost=/bin/systemctl --no-block poweroff
StandardOutput=journal+console
TimeoutStartSec=600

[Install]
WantedBy=multi-user.target
"""

# The same settings the sandbox boot uses (guest.install), minus datasource_list.
SIM_CFG = """\
# azure-sim (test only): as the sandbox boot; datasource_list stays Debian's.
locale: C.UTF-8
ssh_genkeytypes: [ed25519]
"""


class ImageError(RuntimeError):
    """The image cannot be built here (says what is missing)."""


def mirror_uri(suite: str = DEFAULT_RELEASE) -> str:
    """The Debian mirror of this machine's own apt sources (deb822 or one-line).

    The source for ``suite`` if there is one, else the mirror of the machine's
    own Debian release (one archive serves every release).
    """
    found = aptsources.mirrors()
    for wanted in (suite, *RELEASES.values()):
        if wanted in found:
            return found[wanted]
    raise ImageError(f"no Debian '{suite}' mirror in this machine's apt sources")


def missing_tools() -> Optional[str]:
    """What the image build lacks, or None."""
    if os.geteuid() != 0:
        return "building the VM image needs root (debootstrap, dpkg --root)"
    for tool, package in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"),
                          ("dpkg", "dpkg")):
        if shutil.which(tool) is None:
            return f"missing '{tool}': install the Debian package {package} (make test-vm does)"
    return None


def _stamp_text(release: str) -> str:
    return (f"{release} minbase\n" + " ".join(packages(release)) + "\n"
            + " ".join(ENABLE_UNITS[release]) + "\n")


def _under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (deepest first)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == str(path) or target.startswith(str(path) + "/"):
            out.append(target)
    return sorted(out, key=len, reverse=True)


def _umount_all(path: Path) -> None:
    for target in _under(path):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def build_tree(log=sys.stderr, release: str = DEFAULT_RELEASE) -> Path:
    """debootstrap the release's base tree once; return it."""
    cache = cache_dir(release)
    tree = cache / "tree"
    stamp = cache / "tree.done"
    if stamp.exists() and stamp.read_text() == _stamp_text(release) and tree.is_dir():
        return tree
    reason = missing_tools()
    if reason:
        raise ImageError(reason)
    uri = mirror_uri(release)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    work = cache / "tree.new"
    _umount_all(work)
    shutil.rmtree(work, ignore_errors=True)
    started = time.time()
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages(release))}",
           f"--cache-dir={debs}", "--merged-usr", release, str(work), uri]
    print("vm-image: " + " ".join(cmd), file=log)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
    finally:
        # debootstrap mounts proc and sys in the target; never leave them.
        _umount_all(work)
    if proc.returncode != 0:
        (cache / "debootstrap.log").write_text(proc.stdout)
        raise ImageError(f"debootstrap {release} failed (exit {proc.returncode}); see "
                         f"{cache / 'debootstrap.log'}:\n{proc.stdout[-1500:]}")
    # A pristine image: no machine identity, no host keys from the build.
    (work / "etc/machine-id").write_text("")
    for key in (work / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (work / "etc/hostname").write_text("localhost\n")
    if "netplan.io" in packages(release):
        (work / "etc/netplan").mkdir(parents=True, exist_ok=True)
        (work / "etc/netplan/90-default.yaml").write_text(DEBIAN_NETPLAN)
        os.chmod(work / "etc/netplan/90-default.yaml", 0o600)
    for unit in ENABLE_UNITS[release]:
        subprocess.run(["chroot", str(work), "systemctl", "enable", unit], check=True,
                       capture_output=True)
    shutil.rmtree(work / "var/cache/apt/archives", ignore_errors=True)
    (work / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    if tree.exists():
        shutil.rmtree(tree)
    os.replace(work, tree)
    stamp.write_text(_stamp_text(release))
    print(f"vm-image: {release} base tree built in {time.time() - started:.0f} s", file=log)
    return tree


def kernel_files(tree: Path) -> tuple[Path, Path]:
    """The tree's kernel and initrd (the newest)."""
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    initrds = sorted((tree / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise ImageError(f"no kernel or initrd in {tree / 'boot'}: rebuild with "
                         "'make vm-image' (delete .cache/vm)")
    return kernels[-1], initrds[-1]


def _guest_files() -> dict[str, tuple[bytes, int]]:
    here = Path(__file__).resolve().parent
    return {
        "etc/udev/rules.d/66-azure-sim-resource.rules": (UDEV_RULE.encode(), 0o644),
        "etc/systemd/system/azure-sim-report.service": (REPORT_UNIT.encode(), 0o644),
        "etc/systemd/system/multi-user.target.wants/azure-sim-report.service":
            (b"->/etc/systemd/system/azure-sim-report.service", 0),
        "etc/cloud/cloud.cfg.d/99_azure_sim.cfg": (SIM_CFG.encode(), 0o644),
        "usr/lib/azure-sim/vmreport.py": ((here / "vmreport.py").read_bytes(), 0o755),
        # the sandbox's own collector, so both boots read the VM the same way
        "usr/lib/azure-sim/azure_sim/__init__.py": (b"", 0o644),
        "usr/lib/azure-sim/azure_sim/guest.py": ((here / "guest.py").read_bytes(), 0o644),
        # guest.observe imports it (azure-sim diff's collection in the VM)
        "usr/lib/azure-sim/azure_sim/collect.py": ((here / "collect.py").read_bytes(), 0o644),
        "usr/lib/azure-sim/azure_sim/waagent_guest.py":
            ((here / "waagent_guest.py").read_bytes(), 0o644),
        # the during: power-cut hooks, inert unless the host arms a boot (vmpowercut)
        **vmpowercut.guest_files(),
    }


def image_key(deb: Path, release: str = DEFAULT_RELEASE, extras: Sequence[Path] = ()) -> str:
    h = hashlib.sha256(_stamp_text(release).encode())
    for package in (deb, *extras):
        h.update(hashlib.sha256(package.read_bytes()).digest())
    for name, (data, mode) in sorted(_guest_files().items()):
        h.update(name.encode() + data + str(mode).encode())
    return h.hexdigest()[:16]


def _install_debs(root: Path, debs: Sequence[Path]) -> None:
    """dpkg -i packages into ``root`` (maintainer scripts run chrooted)."""
    from azure_sim import waagent_image

    try:
        waagent_image.install(root, debs, {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                           "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
    except RuntimeError as exc:
        raise ImageError(f"into the image: {exc}") from exc


def overlay(tree: Path, scratch: Path) -> Path:
    """Mount a throw-away overlay of ``tree`` (call only in a private mount namespace)."""
    scratch.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "azure-sim-vm", str(scratch)],
                   check=True)
    for d in ("upper", "work", "merged"):
        (scratch / d).mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={tree},upperdir={scratch / 'upper'},workdir={scratch / 'work'}",
                    str(scratch / "merged")], check=True)
    return scratch / "merged"


def _make_root_inside(tree: Path, debs: Sequence[Path], dest: Path, size: str) -> None:
    """In a private mount namespace: overlay, dpkg -i, guest files, mkfs.ext4 -d."""
    root = overlay(tree, tree.parent / "ovl")
    _install_debs(root, debs)
    for name, (data, mode) in _guest_files().items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        if data.startswith(b"->"):
            path.symlink_to(data[2:].decode())
        else:
            path.write_bytes(data)
            os.chmod(path, mode)
    proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(root),
                           str(dest), size], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ImageError(f"mkfs.ext4 -d failed: {proc.stderr.strip()}")


def build_root_image(deb: Path, log=sys.stderr, size: str = "3G",
                     release: str = DEFAULT_RELEASE, extras: Sequence[Path] = ()) -> Path:
    """The bootable root image with ``deb`` (and ``extras``, e.g. waagent) installed.

    Cached by content. The base tree stays pristine (the install/purge test uses
    it): the .debs go into an overlay in a private mount namespace that vanishes after.
    """
    tree = build_tree(log, release)
    cache = cache_dir(release)
    key = image_key(deb, release, extras)
    img = cache / f"root-{key}.img"
    if img.exists():
        return img
    started = time.time()
    tmp = cache / f"root-{key}.img.new"
    tmp.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
         "azure_sim.vmimage", "_make-root", str(tree), str(tmp), size,
         *[str(p.resolve()) for p in (deb, *extras)]],
        capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise ImageError(f"making the root image failed:\n{proc.stderr[-3000:]}")
    # Keep the few newest (a bench or an upgrade test may still boot one); drop the rest.
    images = sorted(cache.glob("root-*.img"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[KEEP_IMAGES - 1:]:
        old.unlink()
    os.replace(tmp, img)
    print(f"vm-image: root image {img.name} made in {time.time() - started:.1f} s",
          file=log)
    return img


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="azure-sim-vm-image", description=__doc__)
    parser.add_argument("--deb", help="also make the root image with this .deb installed")
    parser.add_argument("--release", action="append", choices=sorted(set(RELEASES.values())),
                        help="the Debian release(s) to build (default: all)")
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["_make-root"]:
        _make_root_inside(Path(argv[1]), [Path(p) for p in argv[4:]], Path(argv[2]), argv[3])
        return 0
    args = parser.parse_args(argv)
    try:
        for release in args.release or sorted(set(RELEASES.values())):
            build_tree(release=release)
            if args.deb:
                print(build_root_image(Path(args.deb), release=release))
    except ImageError as exc:
        print(f"vm-image: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
