"""Integration tests: real cloud-init booted in the azure-sim sandbox.

Everything here needs root, network namespaces, loop devices and the caches
``make deps`` fills. When one is missing, every test of this directory is
skipped with a reason naming it. Every test is checked for leftovers: loop
devices, mounts, network namespaces, host network links, ``/tmp/azure-sim-*``
work directories and processes naming a work directory.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from tests.tiers import mark_tier

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AZURE_SIM_CACHE", REPO / ".cache"))
CLOUD_INIT_VERSIONS = ["22.4.2", "25.1.4"]
WORKDIR_RE = re.compile(r"/tmp/azure-sim-[A-Za-z0-9_]+")
# A VM image build in another clone (debootstrap mounts proc/sys in its tree).
IMAGE_TREE_RE = re.compile(r"(/\S*)/\.cache/vm/")
HERE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def missing_requirement() -> Optional[str]:
    """Why this machine cannot run the integration tests, or None."""
    if os.geteuid() != 0:
        return "integration tests need root (namespaces, loop devices, mounts)"
    if shutil.which("unshare") is None:
        return "no 'unshare' program (util-linux)"
    try:
        rc = subprocess.run(["unshare", "--net", "true"], capture_output=True,
                            timeout=30).returncode
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"'unshare --net true' failed: {exc}"
    if rc != 0:
        return f"'unshare --net true' failed (exit {rc}): no network namespaces here"
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control: this machine has no loop devices"
    for stamp in [CACHE / "cloud-init" / v / ".done" for v in CLOUD_INIT_VERSIONS] + [
            CACHE / "layer" / ".done"]:
        if not stamp.exists():
            return f"missing {stamp}: run make deps"
    return None


def pytest_collection_modifyitems(config, items):
    mark_tier(items, HERE, pytest.mark.integration, missing_requirement)


# --- leftovers ------------------------------------------------------------------


def _losetup() -> set[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def _mounts() -> set[str]:
    out = set()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype, source = right.split()[:2]
        out.add(f"{fields[4]} {fstype} {source}")
    return out


def _netns() -> set[str]:
    run = Path("/run/netns")
    return {p.name for p in run.iterdir()} if run.is_dir() else set()


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True,
                         text=True).stdout
    # "3: veth0@if2: <...>": the name, without the index (which never repeats).
    return {line.split(":", 2)[1].strip() for line in out.splitlines() if ":" in line}


def _workdirs() -> set[str]:
    return {str(p) for p in Path("/tmp").glob("azure-sim-*")}


def processes_naming(path: str) -> list[str]:
    """``pid cmdline`` of every live process whose command line contains ``path``."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace")
        except OSError:
            continue
        if path in cmd:
            found.append(f"{entry.name} {cmd.strip()}")
    return found


def _swaps() -> set[str]:
    """Swap is global: a VM switching it on would change the host."""
    lines = Path("/proc/swaps").read_text().splitlines()[1:]
    return {line.split()[0] for line in lines if line.strip()}


def snapshot() -> dict[str, set[str]]:
    return {"loop devices": _losetup(), "mounts": _mounts(), "netns": _netns(),
            "host links": _links(), "work dirs": _workdirs(), "host swap": _swaps()}


class Owned:
    """Work directories made by this test (in-process or by its subprocesses)."""

    def __init__(self) -> None:
        self.dirs: set[str] = set()

    def note_text(self, text: str) -> None:
        self.dirs.update(WORKDIR_RE.findall(text))


@pytest.fixture(autouse=True)
def no_leftovers(monkeypatch):
    """Fail the test if it left a loop device, mount, netns, link, dir or process.

    Other engineers may run the simulator on this machine at the same time:
    an addition naming a work directory this test did not make is theirs and
    is reported, not failed. Everything else that was added is a leftover.
    """
    owned = Owned()
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        path = real_mkdtemp(*args, **kwargs)
        owned.note_text(path)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    before = snapshot()
    yield owned
    monkeypatch.setattr(tempfile, "mkdtemp", real_mkdtemp)
    after = snapshot()
    problems = []
    for kind, items in after.items():
        for item in sorted(items - before[kind]):
            dirs = set(WORKDIR_RE.findall(item))
            trees = set(IMAGE_TREE_RE.findall(item))
            if (dirs and not dirs & owned.dirs) or (trees and str(REPO) not in trees):
                print(f"ignored (another run's): {kind}: {item}")
                continue
            problems.append(f"{kind}: {item}")
    for work in sorted(owned.dirs):
        for proc in processes_naming(work):
            problems.append(f"process: {proc}")
        if Path(work).exists():
            problems.append(f"work dir still exists: {work}")
    assert not problems, "left behind:\n" + "\n".join(problems)


# --- booting ---------------------------------------------------------------------


@pytest.fixture
def run_boot() -> Callable[..., dict[str, Any]]:
    """``run_boot(scenario_yaml, cloud_init=..., datasource=...) -> report``, in-process."""
    from azure_sim.boot import boot
    from azure_sim.scenario import load_scenario

    def run(text: Optional[str] = None, *, cloud_init: str = "22.4.2",
            datasource: str = "builtin", **kwargs: Any) -> dict[str, Any]:
        scenario = load_scenario(text)
        start = time.monotonic()
        report = boot(scenario, cloud_init=cloud_init, datasource=datasource, **kwargs)
        # Printed for the record, never asserted.
        print(f"boot {scenario['name']} {cloud_init}/{datasource}: "
              f"{time.monotonic() - start:.2f} s wall, ready at {report['time_to_ready_s']}")
        return report

    return run


@pytest.fixture(params=CLOUD_INIT_VERSIONS)
def cloud_init(request) -> str:
    return request.param
