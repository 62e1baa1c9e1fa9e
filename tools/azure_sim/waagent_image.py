"""Debian's ``waagent`` package (the Azure Linux Agent) in a VM image (``waagent: true``).

Endorsed Azure images ship cloud-init and the agent together. The package and
what the image tree lacks of its dependencies come from the archive the image
builder uses (``vmimage.mirror_uri``): ``apt-get install --download-only``
resolved against the tree's own dpkg status, with a private apt state under
``.cache/vm/<release>/waagent/`` (nothing on the host changes, the base tree
stays pristine). The .debs are fetched once and installed with ``dpkg -i`` into
the root image's overlay next to our package (``vmimage.build_root_image``),
with their packaged configuration: Debian 12 ships waagent 2.7.3, Debian 13
2.12.0.2, both with ``Provisioning.Agent=cloud-init``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

PACKAGE = "waagent"


def cache_dir(release: str) -> Path:
    from azure_sim import vmimage

    return vmimage.cache_dir(release) / "waagent"


def apt_options(private: Path, tree: Path, uri: str, release: str) -> list[str]:
    """apt options that resolve against the image tree and keep all state in ``private``."""
    return [
        "-o", f"Dir::Etc::sourcelist={private / 'sources.list'}",
        "-o", "Dir::Etc::sourceparts=-",
        "-o", f"Dir::State={private / 'state'}",
        "-o", f"Dir::State::Lists={private / 'lists'}",
        "-o", f"Dir::State::status={tree / 'var/lib/dpkg/status'}",
        "-o", f"Dir::Cache={private / 'cache'}",
        "-o", f"Dir::Cache::archives={private / 'debs'}",
        "-o", "APT::Sandbox::User=root", "-o", "Debug::NoLocking=1",
        "-o", "APT::Get::List-Cleanup=0",
    ]


def source_line(uri: str, release: str) -> str:
    return (f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} "
            f"{release} main\n")


def fetch_debs(release: str, log=sys.stderr) -> list[Path]:
    """waagent and the dependencies the release's tree lacks, downloaded once."""
    from azure_sim import vmimage

    private = cache_dir(release)
    stamp = private / "debs.done"
    debs = private / "debs"
    if stamp.exists():
        names = stamp.read_text().split()
        if names and all((debs / n).exists() for n in names):
            return [debs / n for n in names]
    tree = vmimage.build_tree(log, release)
    uri = vmimage.mirror_uri(release)
    for sub in ("lists/partial", "cache", "state", "debs/partial"):
        (private / sub).mkdir(parents=True, exist_ok=True)
    (private / "sources.list").write_text(source_line(uri, release))
    opts = apt_options(private, tree, uri, release)
    for cmd in (["apt-get", *opts, "-qq", "update"],
                ["apt-get", *opts, "install", "--download-only", "-y", "-qq",
                 "--no-install-recommends", PACKAGE]):
        print("vm-image: " + " ".join(cmd[:1] + cmd[-4:]), file=log)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise vmimage.ImageError(f"fetching {PACKAGE} for {release} failed "
                                     f"(exit {proc.returncode}):\n{proc.stderr[-1500:]}")
    found = sorted(p.name for p in debs.glob("*.deb"))
    if not any(n.startswith(f"{PACKAGE}_") for n in found):
        raise vmimage.ImageError(f"no {PACKAGE} package for {release} in {uri}")
    stamp.write_text("\n".join(found) + "\n")
    return [debs / n for n in found]


def extras(scenario: Mapping[str, Any], release: str) -> list[Path]:
    """The extra .debs the scenario's image gets (none without ``waagent: true``)."""
    return fetch_debs(release) if scenario.get("waagent") else []


def install(root: Path, debs: Sequence[Path], env: Mapping[str, str]) -> str:
    """dpkg -i the .debs into ``root`` at once (they depend on each other); dpkg's output."""
    staged = root / "tmp" / "azure-sim-extra"
    staged.mkdir(parents=True, exist_ok=True)
    try:
        for deb in debs:
            shutil.copy2(deb, staged / deb.name)
        proc = subprocess.run(["chroot", str(root), "dpkg", "-i",
                               *[f"/tmp/azure-sim-extra/{d.name}" for d in debs]],
                              capture_output=True, text=True, check=False, env=dict(env))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg -i {' '.join(d.name for d in debs)} failed:\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout
