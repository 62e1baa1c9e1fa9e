"""VM tier: real Debian 12 and 13 VMs under QEMU, provisioned by the simulator's platform.

Slow (about 45 s per boot under TCG), so it runs only with ``AZURE_SIM_VM=1``
(``make test-vm`` sets it); plain ``make test`` skips it. When the machine
lacks QEMU, debootstrap (without a cached image), a kernel in the image, root
or /dev/net/tun, every test is skipped with that reason; under ``CI=true`` the
run fails with that reason instead, so a green CI means the VMs booted.
Every test checks that no QEMU, namespace, tap device or work directory of
its run is left behind.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import pytest

from tests.tiers import mark_tier

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKDIR_RE = re.compile(r"/tmp/azure-sim-vm-[A-Za-z0-9_]+")
# make test-vm runs two xdist workers, one per image: each image's boots (and the
# reports its tests share) stay on one worker; the two QEMUs run side by side.
IMAGE_OF = {"22.4.2": "bookworm", "25.1.4": "trixie", "bookworm": "bookworm",
            "trixie": "trixie"}
sys.path[:0] = [str(REPO / "tools")]


def pytest_configure(config):
    config.addinivalue_line("markers", "vm: boots a Debian 12 VM under QEMU (make test-vm)")


@functools.lru_cache(maxsize=1)
def missing_requirement() -> Optional[str]:
    if os.environ.get("AZURE_SIM_VM") != "1":
        return "VM tier: run 'make test-vm' (AZURE_SIM_VM=1)"
    from azure_sim import vm, vmimage

    reason = vm.missing_requirement() or vmimage.missing_tools()
    if reason:
        return reason
    if not vm.default_deb().exists():
        return f"{vm.default_deb()} is missing: run 'make deb'"
    for release in sorted(set(vmimage.RELEASES.values())):
        try:
            vmimage.build_tree(release=release)
            vmimage.kernel_files(vmimage.tree_dir(release))
        except vmimage.ImageError as exc:
            return f"no {release} VM image: {exc}"
    return None


def _image_group(item) -> Optional[str]:
    params = getattr(getattr(item, "callspec", None), "params", {})
    for key in ("version", "cloud_init", "release"):
        if params.get(key) in IMAGE_OF:
            return IMAGE_OF[params[key]]
    return None


def pytest_itemcollected(item):
    # Marked as each item is collected: xdist's worker turns the xdist_group
    # marks into node ids in its own pytest_collection_modifyitems, which ran
    # before ours, so marks added there came too late (no image stayed on one
    # worker, and each worker booted again what the other had cached).
    group = _image_group(item)
    if group and HERE in Path(str(item.fspath)).resolve().parents:
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_modifyitems(config, items):
    mark_tier(items, HERE, pytest.mark.vm, missing_requirement,
              exempt=lambda item: getattr(item.function, "_no_vm_needed", False))
    if os.environ.get("CI") == "true" and os.environ.get("AZURE_SIM_VM") == "1":
        reason = missing_requirement()
        if reason and any(HERE in Path(str(i.fspath)).resolve().parents for i in items):
            pytest.exit(f"VM tier under CI=true: {reason}", returncode=1)


def _state() -> dict[str, set[str]]:
    def run(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True).stdout

    return {
        "qemu": {line for line in run("pgrep", "-a", "qemu-system").splitlines()},
        "links": {line.split(":")[1].strip() for line in run("ip", "-o", "link").splitlines()
                  if "azplat" in line},
        "workdirs": {str(p) for p in Path("/tmp").glob("azure-sim-vm-*")},
        "netns": set(run("ip", "netns", "list").split()),
        "mounts": {line.split()[4] for line in
                   Path("/proc/self/mountinfo").read_text().splitlines()
                   if "/.cache/vm" in line},
    }


@pytest.fixture(autouse=True)
def no_leftovers(monkeypatch):
    """Fail the test if its QEMU, tap, netns, mount or work directory outlived it.

    An addition that names only work directories this test did not make belongs
    to the other xdist worker's boot running beside it, and is not counted.
    """
    owned: set[str] = set()
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        path = real_mkdtemp(*args, **kwargs)
        owned.update(WORKDIR_RE.findall(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    before = _state()
    yield
    monkeypatch.setattr(tempfile, "mkdtemp", real_mkdtemp)
    after = _state()
    for key in before:
        added = {item for item in after[key] - before[key]
                 if not (set(WORKDIR_RE.findall(item)) and
                         not set(WORKDIR_RE.findall(item)) & owned)}
        assert not added, f"left behind ({key}): {added}"
