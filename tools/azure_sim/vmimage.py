"""The Debian 12 VM image ``azure-sim boot --vm`` boots, built from Debian packages.

Two cached layers under ``.cache/vm/`` (``AZURE_SIM_CACHE`` moves ``.cache``):

* ``tree/``: ``debootstrap --variant=minbase bookworm`` with a cloud image's
  packages (kernel, systemd, udev, cloud-init, sshd, DHCP client, disk
  tools) and the plug-in's own dependencies, so that our ``.deb`` installs
  with plain ``dpkg -i``. Built once (about a minute and 90 MB of .debs,
  kept in ``.cache/vm/debs`` so a rebuild downloads nothing); a stamp holds
  the package list, a changed list rebuilds it.
* ``root-<key>.img``: an ext4 image of that tree with our ``.deb`` installed
  by dpkg and the test-only guest files (udev rule for the resource disk,
  the report unit); ``mkfs.ext4 -d`` makes it without mounting anything. The
  key hashes the .deb and the guest files, so a new build of either makes a
  new image (a few seconds) and an unchanged one is reused.

The mirror is the one of the machine's own apt sources. The image's cloud-init
configuration is Debian's: ``datasource_list`` is not touched, ds-identify
finds Azure from the DMI chassis asset tag alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from azure_sim import deps

VM_CACHE = deps.CACHE / "vm"
SUITE = "bookworm"

PACKAGES = [
    # a cloud image (DESIGN 6); ifupdown renders cloud-init's network config as
    # Debian 12's cloud images do (without it eth0 stays down after init-local)
    "linux-image-cloud-amd64", "systemd-sysv", "udev", "dbus", "cloud-init",
    "openssh-server", "isc-dhcp-client", "sudo", "eject", "iproute2", "netbase",
    "ca-certificates", "e2fsprogs", "ifupdown", "util-linux", "fdisk", "gdisk", "parted",
    "ntfs-3g",
    # debootstrap does not resolve this virtual dependency of python3-cryptography
    "python3-cffi-backend",
    # what python3-cloudinit-azure depends on, so dpkg -i needs no apt
    "python3-requests", "python3-yaml", "python3-jsonschema", "python3-defusedxml",
    "python3-cryptography", "python3-pycdlib", "openssl",
]

RESOURCE_SERIAL = "AZURE-SIM-RESOURCE"

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
TimeoutStartSec=120

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


def mirror_uri() -> str:
    """The Debian mirror of this machine's own apt sources (deb822 or one-line)."""
    srcdir = Path("/etc/apt/sources.list.d")
    candidates = sorted(srcdir.glob("*.sources")) + sorted(srcdir.glob("*.list"))
    candidates.append(Path("/etc/apt/sources.list"))
    for path in candidates:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    key, _, value = line.partition(":")
                    if value and not line.startswith((" ", "#")):
                        fields[key.strip()] = value.strip()
                if SUITE in fields.get("Suites", "").split() and \
                        "main" in fields.get("Components", "").split():
                    return fields["URIs"].split()[0]
        else:
            for line in text.splitlines():
                words = line.split("#", 1)[0].split()
                words = [w for w in words if not w.startswith("[")]
                if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE:
                    return words[1]
    raise ImageError(f"no Debian '{SUITE}' mirror in this machine's apt sources")


def missing_tools() -> Optional[str]:
    """What the image build lacks, or None."""
    if os.geteuid() != 0:
        return "building the VM image needs root (debootstrap, dpkg --root)"
    for tool, package in (("debootstrap", "debootstrap"), ("mkfs.ext4", "e2fsprogs"),
                          ("dpkg", "dpkg")):
        if shutil.which(tool) is None:
            return f"missing '{tool}': install the Debian package {package} (make test-vm does)"
    return None


def _stamp_text() -> str:
    return f"{SUITE} minbase\n" + " ".join(PACKAGES) + "\n"


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


def build_tree(log=sys.stderr) -> Path:
    """debootstrap the base tree once; return it."""
    tree = VM_CACHE / "tree"
    stamp = VM_CACHE / "tree.done"
    if stamp.exists() and stamp.read_text() == _stamp_text() and tree.is_dir():
        return tree
    reason = missing_tools()
    if reason:
        raise ImageError(reason)
    uri = mirror_uri()
    debs = VM_CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    work = VM_CACHE / "tree.new"
    _umount_all(work)
    shutil.rmtree(work, ignore_errors=True)
    started = time.time()
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
           f"--cache-dir={debs}", "--merged-usr", SUITE, str(work), uri]
    print("vm-image: " + " ".join(cmd), file=log)
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, check=False)
    finally:
        # debootstrap mounts proc and sys in the target; never leave them.
        _umount_all(work)
    if proc.returncode != 0:
        (VM_CACHE / "debootstrap.log").write_text(proc.stdout)
        raise ImageError(f"debootstrap failed (exit {proc.returncode}); see "
                         f"{VM_CACHE / 'debootstrap.log'}:\n{proc.stdout[-1500:]}")
    # A pristine image: no machine identity, no host keys from the build.
    (work / "etc/machine-id").write_text("")
    for key in (work / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (work / "etc/hostname").write_text("localhost\n")
    shutil.rmtree(work / "var/cache/apt/archives", ignore_errors=True)
    (work / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    if tree.exists():
        shutil.rmtree(tree)
    os.replace(work, tree)
    stamp.write_text(_stamp_text())
    print(f"vm-image: base tree built in {time.time() - started:.0f} s", file=log)
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
    }


def image_key(deb: Path) -> str:
    h = hashlib.sha256(_stamp_text().encode())
    h.update(hashlib.sha256(deb.read_bytes()).digest())
    for name, (data, mode) in sorted(_guest_files().items()):
        h.update(name.encode() + data + str(mode).encode())
    return h.hexdigest()[:16]


def _install_deb(root: Path, deb: Path) -> None:
    """dpkg -i our package into ``root`` (maintainer scripts run chrooted)."""
    staged = root / "tmp" / deb.name
    shutil.copy2(deb, staged)
    try:
        proc = subprocess.run(["chroot", str(root), "dpkg", "-i", f"/tmp/{deb.name}"],
                              capture_output=True, text=True, check=False,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                   "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
    finally:
        staged.unlink()
    if proc.returncode != 0:
        raise ImageError(f"dpkg -i {deb.name} into the image failed:\n"
                         f"{proc.stdout}\n{proc.stderr}")


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


def _make_root_inside(tree: Path, deb: Path, dest: Path, size: str) -> None:
    """In a private mount namespace: overlay, dpkg -i, guest files, mkfs.ext4 -d."""
    root = overlay(tree, VM_CACHE / "ovl")
    _install_deb(root, deb)
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


def build_root_image(deb: Path, log=sys.stderr, size: str = "3G") -> Path:
    """The bootable root image with ``deb`` installed; cached by content.

    The base tree stays pristine (the install/purge test uses it): the .deb
    goes into an overlay in a private mount namespace that vanishes after.
    """
    build_tree(log)
    key = image_key(deb)
    img = VM_CACHE / f"root-{key}.img"
    if img.exists():
        return img
    started = time.time()
    tmp = VM_CACHE / f"root-{key}.img.new"
    tmp.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
         "azure_sim.vmimage", "_make-root", str(deb.resolve()), str(tmp), size],
        capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise ImageError(f"making the root image failed:\n{proc.stderr[-3000:]}")
    for old in VM_CACHE.glob("root-*.img"):
        old.unlink()
    os.replace(tmp, img)
    print(f"vm-image: root image {img.name} made in {time.time() - started:.1f} s",
          file=log)
    return img


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="azure-sim-vm-image", description=__doc__)
    parser.add_argument("--deb", help="also make the root image with this .deb installed")
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["_make-root"]:
        _make_root_inside(VM_CACHE / "tree", Path(argv[1]), Path(argv[2]), argv[3])
        return 0
    args = parser.parse_args(argv)
    try:
        build_tree()
        if args.deb:
            print(build_root_image(Path(args.deb)))
    except ImageError as exc:
        print(f"vm-image: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
