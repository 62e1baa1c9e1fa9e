"""Issue 17 on the VM tier: QEMU killed by its pid at a point of the first boot.

The run's qcow2 root overlay and resource disk carry over to the recovery
boot; unsynced data is lost as on real hardware. The recovery checks run on
the root file system read from the overlay (tools/azure_sim/vmpowercut.py).
Marker ``powercut`` (``make test-powercut``); each case takes the QEMU lock
named by ``AZURE_SIM_QEMU_LOCK`` (if set) for its own boots only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os

import pytest
import yaml

from tests.integration.test_kernel import DEBIAN_GRUB
from tests.integration.test_powercut import POINTS
from tests.integration.test_powercut import SCENARIOS as SANDBOX_SCENARIOS

pytestmark = pytest.mark.powercut

USER_FILES = {"resource_disk": {"files": ["dataloss_warning_readme.txt", "projects.txt"]}}
# The image is Debian's own: no boot loader, so no grub defaults; the grub case
# brings Debian's (written before cloud-init in the first boot, vmpowercut.py).
GRUB = {"image_files": {"/etc/default/grub": DEBIAN_GRUB}}
# The nightly set (make test-powercut, under 30 minutes with the sandbox
# matrix; ~140 s per case under TCG, docs/reliability.md): the guest-hook
# points on both images, the stage and report points that found or pin a fix.
CASES = [
    ("22.4.2", "default", "after:init-local"),
    ("22.4.2", "default", "request:health:1"),
    ("22.4.2", "default", "during:useradd"),
    ("22.4.2", "default", "during:format"),
    ("22.4.2", "default", "during:fstab"),
    ("22.4.2", "user-files", "after:init"),
    ("25.1.4", "default", "after:init-local"),
    ("25.1.4", "default", "during:useradd"),
    ("25.1.4", "default", "during:format"),
    ("25.1.4", "default", "during:fstab"),
]
# AZURE_SIM_POWERCUT_FULL=1: every other point on both images, so that the two
# sets together are the sandbox's matrix (tests/integration/test_powercut.py) on
# real crash semantics (about 35 minutes more with two QEMUs side by side).
# The user's disk is never formatted nor its fstab line edited; the stage points
# around the resource disk are the ones that can lose its files.
USER_FILE_POINTS = ["after:init", "after:modules-final"]
FAILURE_POINTS = ["request:health:1"]


def _full() -> list[tuple[str, str, str]]:
    every = []
    for cloud_init in ("22.4.2", "25.1.4"):
        every += [(cloud_init, "grub" if at == "during:grub" else "default", at)
                  for at in POINTS]
        every += [(cloud_init, "user-files", at) for at in USER_FILE_POINTS]
        every += [(cloud_init, "failure", at) for at in FAILURE_POINTS]
    return [case for case in every if case not in CASES]


FULL = _full()
if os.environ.get("AZURE_SIM_POWERCUT_FULL") == "1":
    CASES += FULL
SCENARIOS = {"default": {}, "user-files": USER_FILES, "grub": GRUB,
             "failure": SANDBOX_SCENARIOS["failure"]}


def _known_degraded(report):
    from tests.vm.test_vm_boot import KNOWN_PLUGIN_BUGS

    text = "\n".join(report.get("warnings") or [])
    return any(version in (None, report["cloud_init_version"]) and signature in text
               for version, signature, _ in KNOWN_PLUGIN_BUGS)


@contextlib.contextmanager
def qemu_lock():
    path = os.environ.get("AZURE_SIM_QEMU_LOCK")
    if not path:
        yield
        return
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.mark.parametrize(("cloud_init", "kind", "at"), CASES,
                         ids=[f"{c}-{k}-{a}" for c, k, a in CASES])
def test_vm_power_cut_then_recovery(cloud_init, kind, at, tmp_path):
    from azure_sim import vm
    from azure_sim.scenario import load_scenario

    scenario = {"name": f"vm-power-cut-{kind}-{at}", "power_cut": {"at": at},
                **SCENARIOS[kind]}
    with qemu_lock():
        r = vm.boot(load_scenario(yaml.safe_dump(scenario)), cloud_init=cloud_init,
                    logs_to=str(tmp_path / "logs"))
    seen = r["vm"]
    print(f"{cloud_init} {kind} {at}: verdict {r['verdict']} power_cut {r['power_cut']} "
          f"ready {seen['boot_to_ready_s']} s after QEMU start, reports "
          f"{[h['state'] for h in r['health_reports']]}, wall {r['wall_s']} s, "
          f"boots {[b['seconds'] for b in seen['boots']]}")
    assert r["sim_error"] is None, (r["sim_error"], r["vm"])
    assert r["power_cut"]["why"], r["power_cut"]
    problems = list(r["verdict"]["problems"])
    if kind == "failure":
        # one ProvisioningFailed for the instance overall, never a Ready
        assert r["ready_count"] == 0, r["health_reports"]
        assert sum(h["state"] != "Ready" for h in r["health_reports"]) == 1, \
            r["health_reports"]
    elif at == "after:ready":
        # The ack-lost window (docs/reliability.md): the platform took Ready, the
        # cut came before the VM's "delivered" marker reached the disk; the next
        # boot cannot tell and sends it again (at-least-once), never a third.
        assert r["ready_count"] in (1, 2), r["health_reports"]
        problems = [p for p in problems if p != "Ready reported 2 times"]
    else:
        assert r["ready_count"] == 1, r["health_reports"]
    status = [b["cloud_init_status"] for b in r["vm"]["boots"]][-1]
    if _known_degraded(r):
        # A known Debian 13 plug-in WARNING (test_vm_boot.KNOWN_PLUGIN_BUGS), not the cut:
        # it excuses the degraded status only.
        problems = [p for p in problems if not p.startswith("cloud-init status is")]
        status = status.replace("degraded ", "")
    assert not problems, (r["verdict"], r["power_cut"])
    # After a ProvisioningFailed, cloud-init 25.1 says "degraded done" (our
    # datasource logged why): the verdict judges a failure scenario.
    assert status == "done" or (kind == "failure" and status == "degraded done"), status
    if kind == "user-files":
        assert r["power_cut"]["user_files"]["intact"], r["power_cut"]["user_files"]
    if at.startswith("during:"):  # the guest's hook announced it on the serial port
        assert r["power_cut"]["why"].startswith("guest: "), r["power_cut"]
