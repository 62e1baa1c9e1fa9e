"""Issue 17: a power cut at any step of the first boot, in the sandbox (docs/reliability.md).

Each case cuts the first boot at one point (every VM process SIGKILLed at
once) and boots again on the same root and resource disk; the report's
verdict then holds the recovery checks (tools/azure_sim/recovery.py):
exactly one Ready (or one failure), user and keys, sudoers (visudo),
fstab, grub's defaults, no empty or truncated file of ours, the resource
disk's user files, a readable KVP pool. The whole matrix is marker
``powercut`` (``make test-powercut``); ``SMOKE`` runs in ``make test`` too.
"""

from __future__ import annotations

import pytest
import yaml

from tests.integration.test_kernel import DEBIAN_GRUB

STAGE_POINTS = [f"after:{s}" for s in ("init-local", "os-network", "init",
                                      "modules-config", "modules-final")]
REQUEST_POINTS = ["request:imds:1", "request:goalstate:1", "request:health:1"]
STEP_POINTS = ["after:ready", "during:useradd", "during:ssh-keygen", "during:format",
               "during:fstab", "during:grub"]
POINTS = STAGE_POINTS + REQUEST_POINTS + STEP_POINTS
SMOKE = {("default", "during:useradd"), ("default", "during:fstab"),
         ("default", "request:health:1")}
# The disk holds a user's file: it is never formatted, fstab never edited.
NOT_REACHED = {("user-files", "during:format"), ("user-files", "during:fstab")}
FAILURE_POINTS = ["after:init-local", "request:health:1", "during:useradd"]

SCENARIOS = {
    # The default first boot, on an image with Debian's grub defaults.
    "default": {"image_files": {"/etc/default/grub": DEBIAN_GRUB}},
    "user-files": {"image_files": {"/etc/default/grub": DEBIAN_GRUB},
                   "resource_disk": {"files": ["dataloss_warning_readme.txt",
                                               "projects.txt"]}},
    "failure": {"ovf_xml": "<Environment><bad", "expect": "failure"},
}


def _cases():
    for kind in ("default", "user-files"):
        for at in POINTS:
            if (kind, at) in NOT_REACHED:
                continue
            marks = [] if (kind, at) in SMOKE else [pytest.mark.powercut]
            yield pytest.param(kind, at, marks=marks, id=f"{kind}-{at}")
    for at in FAILURE_POINTS:
        yield pytest.param("failure", at, marks=[pytest.mark.powercut], id=f"failure-{at}")


@pytest.mark.parametrize(("kind", "at"), list(_cases()))
def test_power_cut_then_recovery(run_boot, cloud_init, kind, at, tmp_path):
    scenario = {"name": f"power-cut-{kind}-{at}", **SCENARIOS[kind],
                "power_cut": {"boot": 1, "at": at}}
    r = run_boot(yaml.safe_dump(scenario), cloud_init=cloud_init, datasource="plugin",
                 logs_to=str(tmp_path / "logs"))
    assert r["sim_error"] is None, (r["sim_error"], r.get("cloud_init_log_tail"))
    cut = r["power_cut"]
    assert cut["why"], cut
    assert r["verdict"]["ok"], (r["verdict"], cut)
    assert [s["boot"] for s in r["stages"]].count(2) == 5  # the recovery boot ran whole
    if kind == "failure":
        assert r["ready_count"] == 0
        assert sum(h["state"] != "Ready" for h in r["health_reports"]) == 1
        return
    assert r["ready_count"] == 1, r["health_reports"]
    assert r["user"]["exists"] and r["user"]["authorized_keys"]
    if kind == "user-files":
        assert cut["user_files"]["intact"], cut["user_files"]
        assert r["resource_disk"]["fstype"] != "ext4"
    else:
        assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}
