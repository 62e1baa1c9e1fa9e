"""Fetch and cache what the simulator needs: cloud-init trees and an image layer.

Nothing here installs a package on the host. Debian packages are downloaded
with apt-get into ``.cache/`` and unpacked with ``dpkg -x``:

* ``.cache/cloud-init/<version>/``: one unpacked cloud-init per supported
  version, byte-compiled once as a Debian install ships it;
* ``.cache/layer/``: the extra programs a cloud image has and this machine
  lacks (DHCP clients, sshd, ntfs-3g, partitioning tools, dnsmasq for the
  platform). It becomes an overlay layer above the host root in the sandbox,
  and the simulator runs its own tools from it.

A ``.done`` stamp makes a second run download nothing.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AZURE_SIM_CACHE", REPO / ".cache"))

# version -> (suite, package version prefix)
CLOUD_INIT = {
    "22.4.2": ("bookworm", "22.4.2-"),
    "25.1.4": ("trixie", "25.1.4-"),
}
DEFAULT_CLOUD_INIT = "22.4.2"

LAYER_PACKAGES = [
    "dnsmasq-base",      # the platform's DHCP server
    "isc-dhcp-client",   # dhclient: Debian 12's default DHCP client
    "dhcpcd-base",       # dhcpcd: cloud-init 25.1's first choice
    "udhcpc", "busybox",  # busybox udhcpc
    "ntfs-3g",           # mkntfs/ntfscp for the resource disk, FUSE mounts
    "fdisk", "gdisk",    # sfdisk and sgdisk
    "openssh-server",    # sshd and its config, as a cloud image has
    "xfsprogs", "btrfs-progs",  # optional resource disk file systems
]


def _apt_opts(private: Path, suite: str) -> list[str]:
    """apt options that keep a foreign suite's lists out of the host's apt state."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    uri = None
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                uri = line.split()[1]
                break
    if uri is None:
        raise SystemExit("deps: cannot find a Debian mirror URI in " + str(sources))
    private.mkdir(parents=True, exist_ok=True)
    (private / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (private / "cache").mkdir(parents=True, exist_ok=True)
    srclist = private / "sources.list"
    srclist.write_text(
        f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {suite} main\n"
    )
    return [
        "-o", f"Dir::Etc::sourcelist={srclist}",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State::Lists={private / 'lists'}",
        "-o", f"Dir::Cache={private / 'cache'}",
        "-o", "APT::Get::List-Cleanup=0",
        "-o", "APT::Sandbox::User=root",
    ]


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    print("deps: " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=cwd)


def fetch_cloud_init(version: str) -> Path:
    """Download, unpack and byte-compile one cloud-init version; return its tree."""
    suite, prefix = CLOUD_INIT[version]
    dest = CACHE / "cloud-init" / version
    if (dest / ".done").exists():
        return dest
    dl = CACHE / "downloads" / suite
    dl.mkdir(parents=True, exist_ok=True)
    opts = _apt_opts(CACHE / "apt" / suite, suite)
    _run(["apt-get", *opts, "-qq", "update"])
    out = subprocess.run(["apt-cache", *opts, "madison", "cloud-init"],
                         check=True, capture_output=True, text=True).stdout
    versions = [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]
    match = [v for v in versions if v.startswith(prefix)]
    if not match:
        raise SystemExit(f"deps: cloud-init {version} not found in {suite} ({versions})")
    for old in dl.glob("cloud-init_*.deb"):
        old.unlink()
    _run(["apt-get", *opts, "download", f"cloud-init={match[0]}"], cwd=dl)
    deb = next(dl.glob("cloud-init_*.deb"))
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
    compileall.compile_dir(str(dest / "usr/lib/python3/dist-packages"), quiet=1,
                           workers=0)
    (dest / ".done").write_text(match[0] + "\n")
    return dest


def site_packages(version: str) -> Path:
    return CACHE / "cloud-init" / version / "usr/lib/python3/dist-packages"


def fetch_layer() -> Path:
    """Download the image layer's packages (and missing deps) and unpack them."""
    dest = CACHE / "layer"
    if _unpacked(dest, LAYER_PACKAGES):
        return dest
    arch = CACHE / "downloads" / "layer"
    (arch / "partial").mkdir(parents=True, exist_ok=True)
    # download-only resolves against the host's dpkg status: we get exactly
    # the packages (and libraries) this machine lacks, and install none.
    _run(["apt-get", "install", "-d", "-y", "-qq", "--no-install-recommends",
          "-o", f"Dir::Cache::archives={arch}", "-o", "Debug::NoLocking=1",
          "-o", "APT::Sandbox::User=root", *LAYER_PACKAGES])
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for deb in sorted(arch.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(dest)])
    _usr_merge(dest)
    # A cloud image has the sshd_config that openssh-server's postinst writes.
    default_sshd = dest / "usr/share/openssh/sshd_config"
    if default_sshd.exists():
        (dest / "etc/ssh").mkdir(parents=True, exist_ok=True)
        shutil.copy2(default_sshd, dest / "etc/ssh/sshd_config")
    _unpacked(dest, LAYER_PACKAGES, done=True)
    return dest


CHECKER_PACKAGES = ["sudo"]  # visudo checks sudoers after a power cut; never in the image


def fetch_checkers() -> Path:
    """Host-side checking tools (visudo), unpacked outside the image layer."""
    dest = CACHE / "tools"
    if _unpacked(dest, CHECKER_PACKAGES):
        return dest
    dl = CACHE / "downloads" / "tools"
    dl.mkdir(parents=True, exist_ok=True)
    for old in dl.glob("*.deb"):
        old.unlink()
    _run(["apt-get", "-o", "APT::Sandbox::User=root", "download", *CHECKER_PACKAGES], cwd=dl)
    if dest.exists():
        shutil.rmtree(dest)
    for deb in sorted(dl.glob("*.deb")):
        name = deb.name.split("_", 1)[0]
        (dest / name).mkdir(parents=True, exist_ok=True)
        _run(["dpkg-deb", "-x", str(deb), str(dest / name)])
    _unpacked(dest, CHECKER_PACKAGES, done=True)
    return dest


def _unpacked(dest: Path, packages: list[str], done: bool = False) -> bool:
    """Is ``dest`` unpacked from exactly ``packages``? ``done``: record that it is."""
    stamp, want = dest / ".done", " ".join(packages) + "\n"
    if done:
        stamp.write_text(want)
    return stamp.exists() and stamp.read_text() == want


def _usr_merge(root: Path) -> None:
    """Move /bin, /sbin, /lib* of unpacked packages under /usr.

    The host root is merged-/usr (``/lib -> usr/lib``). In an overlay a real
    directory above a symlink hides the symlink, so an unmerged ``lib/`` in the
    layer would hide the host's whole ``/usr/lib``.
    """
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = root / name
        if not top.is_dir() or top.is_symlink():
            continue
        target = root / "usr" / name
        for item in sorted(top.rglob("*")):
            rel = item.relative_to(top)
            dst = target / rel
            if item.is_dir() and not item.is_symlink():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                if dst.exists() or dst.is_symlink():
                    dst.unlink()
                os.replace(item, dst)
        shutil.rmtree(top)


def tool_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment that runs the layer's programs outside the sandbox."""
    env = dict(os.environ if base is None else base)
    layer = CACHE / "layer"
    paths = [str(layer / "usr/sbin"), str(layer / "usr/bin")]
    env["PATH"] = ":".join(paths + [env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")])
    libs = [str(layer / "usr/lib/x86_64-linux-gnu")]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libs)
    return env


def write_pth(venv: Path) -> Path:
    """Make cloud-init importable in ``venv``; ``CLOUD_INIT`` picks the version.

    A ``.pth`` line starting with ``import`` runs at interpreter start, so one
    venv serves every cached cloud-init version, chosen per run.
    """
    site = next((venv / "lib").glob("python3*/site-packages"))
    pth = site / "cloudinit_azure_cloud_init.pth"
    root = str(CACHE / "cloud-init")
    pth.write_text(
        "import os, sys; sys.path.append(os.path.join("
        f"{root!r}, os.environ.get('CLOUD_INIT', {DEFAULT_CLOUD_INIT!r}), "
        "'usr/lib/python3/dist-packages'))\n"
    )
    return pth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="azure-sim-deps", description=__doc__)
    parser.add_argument("--cloud-init", action="append", default=None,
                        choices=sorted(CLOUD_INIT), help="version(s) to fetch")
    parser.add_argument("--no-layer", action="store_true")
    parser.add_argument("--write-pth", metavar="VENV",
                        help="only write the .pth that puts cloud-init on VENV's path")
    args = parser.parse_args(argv)
    if args.write_pth:
        write_pth(Path(args.write_pth))
        return 0
    for version in args.cloud_init or sorted(CLOUD_INIT):
        fetch_cloud_init(version)
    if not args.no_layer:
        fetch_layer()
        fetch_checkers()
    return 0


if __name__ == "__main__":
    sys.exit(main())
