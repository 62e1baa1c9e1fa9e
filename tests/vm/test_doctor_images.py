"""cloudinit-azure doctor against the real Debian image trees of the VM tier.

The trees are the VM tier's debootstrap trees (``make vm-image``): Debian's
packages with cloud-init, without our package. They need no QEMU, so these
tests run whenever a tree is built (also in plain ``make test``), skip
where it is not, and fail instead under ``CI=true`` in the VM tier
(``make test-vm``, which builds the trees first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tiers import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
# The plug-in's own checks fail in the base tree: our package is not in it.
NOT_INSTALLED = {"plugin", "datasource-pkg-list", "wiring"}
RELEASES = ["bookworm", "trixie"]


def _no_vm_needed(fn):
    fn._no_vm_needed = True
    return fn


def _tree(release: str) -> Path:
    from azure_sim import vmimage

    if hasattr(vmimage, "tree_dir"):
        if release not in set(vmimage.RELEASES.values()):
            skip_or_fail(f"the VM tier builds no {release} tree")
        tree = vmimage.tree_dir(release)
    elif release == "bookworm":
        tree = vmimage.VM_CACHE / "tree"
    else:
        # not a tree left unbuilt: this checkout cannot build one (no Debian 13 yet)
        pytest.skip(f"this checkout's VM tier builds no {release} tree")
    if not (tree / "usr/bin/cloud-init").exists():
        skip_or_fail(f"no {release} image tree at {tree}: run 'make vm-image'")
    return tree


def _doctor(root: Path) -> dict:
    from cloudinit_azure.doctor import cli

    proc = subprocess.run([sys.executable, "-m", "cloudinit_azure", "doctor", "--root",
                           str(root), "--json"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode in (0, 1, 2), proc.stderr
    report = json.loads(proc.stdout)
    assert report["exit"] == proc.returncode
    assert cli  # the same code the console script runs
    return report


@_no_vm_needed
@pytest.mark.parametrize("release", RELEASES)
def test_debian_tree_meets_azures_requirements(release):
    tree = _tree(release)
    report = _doctor(tree)
    checks = {c["id"]: c for c in report["checks"]}
    azure = {i: c for i, c in checks.items() if c["area"] == "azure"}
    assert all(c["status"] == "ok" for c in azure.values()), azure
    assert "Debian GNU/Linux" in report["os"]
    assert checks["cloud-init"]["status"] == "ok", checks["cloud-init"]
    bad = {i for i, c in checks.items() if c["status"] != "ok"}
    # everything the image itself provides is in order; only our package is missing
    assert bad == NOT_INSTALLED, {i: checks[i] for i in bad}
    assert report["exit"] == 2


_INSIDE = """
import json, subprocess, sys
from pathlib import Path
sys.path[:0] = [sys.argv[4], sys.argv[4] + "/tools"]
from azure_sim import vmimage
from cloudinit_azure.doctor import cli
root = vmimage.overlay(Path(sys.argv[1]), Path(sys.argv[3]))
vmimage._install_debs(root, [Path(p) for p in sys.argv[2].split(",")])
host = subprocess.run([sys.executable, "-m", "cloudinit_azure", "doctor", "--root",
                       str(root), "--json"], capture_output=True, text=True, cwd=sys.argv[4])
# the package's own console script, run by the image's python on the image
image = subprocess.run(["chroot", str(root), "/usr/bin/cloudinit-azure", "doctor", "--json"],
                       capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin"})
print(json.dumps({"host": [host.returncode, host.stdout, host.stderr],
                  "image": [image.returncode, image.stdout, image.stderr]}))
"""


def doctor_with_packages(release, tmp_path, extras=()):
    """The doctor's JSON report, run by the host and by the image, on an overlay of the
    release's tree with our .deb (and ``extras``) installed: {who: (exit, report)}."""
    from azure_sim import vm

    tree = _tree(release)
    deb = vm.default_deb()
    if not deb.exists():
        skip_or_fail(f"{deb} is missing: run 'make deb'")
    if os.geteuid() != 0:
        skip_or_fail("installing the .deb into an overlay of the tree needs root")
    # dpkg -i into a throw-away overlay in a private mount namespace: the
    # tree stays pristine and every mount vanishes with the namespace
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           "-c", _INSIDE, str(tree), ",".join(map(str, [deb, *extras])),
                           str(tmp_path / "ovl"), str(REPO)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    out = {}
    for who in ("host", "image"):
        rc, text, err = runs[who]
        assert text, f"{who}: no report (exit {rc}): {err[-2000:]}"
        out[who] = (rc, json.loads(text))
    return out


@_no_vm_needed
@pytest.mark.parametrize("release", RELEASES)
def test_debian_tree_with_our_package_passes(release, tmp_path):
    for who, (rc, report) in doctor_with_packages(release, tmp_path).items():
        problems = {c["id"]: c["why"] for c in report["checks"] if c["status"] != "ok"}
        assert rc == 0 and problems == {}, f"{who}: exit {rc}: {problems}"
