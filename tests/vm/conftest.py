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
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from tests.tiers import mark_tier

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
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
def no_leftovers():
    before = _state()
    yield
    after = _state()
    for key in before:
        assert after[key] <= before[key], f"left behind ({key}): {after[key] - before[key]}"
