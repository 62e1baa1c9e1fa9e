"""Debian's waagent (the Azure Linux Agent) beside the plug-in, on both real images.

``waagent: true`` installs Debian's package (2.7.3 in Debian 12, 2.12.0.2 in Debian
13) with its packaged /etc/waagent.conf (``Provisioning.Agent=cloud-init``); the
platform serves what the agent needs (tools/azure_sim/waagent.py). The platform must
hear one story: our Ready and nothing contradicting it, or our ProvisioningFailed and
never a Ready after it. Each (scenario, version) boots once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.tiers import skip_or_fail
from tests.vm.test_doctor_images import RELEASES, _no_vm_needed, _tree, doctor_with_packages

REPO = Path(__file__).resolve().parents[2]
VERSIONS = ["22.4.2", "25.1.4"]
_REPORTS: dict[tuple, dict] = {}

WAAGENT = """
name: vm-waagent
description: Debian's waagent beside the plug-in; customData counts its runs
waagent: true
timeout_s: 600
ovf:
  custom_data: |
    #cloud-config
    write_files:
      - path: /var/tmp/custom-data-applied
        content: "customData reached the VM\\n"
    runcmd:
      - [sh, -c, "echo ran >> /var/tmp/custom-data-runs"]
"""
FAILURES = {
    "broken-ovf": (REPO / "scenarios/broken-ovf.yaml").read_text()
    + "\nwaagent: true\ntimeout_s: 600\n",
    "reserved-user": """
name: vm-waagent-reserved-user
waagent: true
timeout_s: 600
ovf: {username: root}
imds: {compute: {osProfile: {adminUsername: root}}}
expect: failure
""",
}


def _boot(name, version, text):
    from azure_sim import vm
    from azure_sim.scenario import load_scenario

    key = (name, version)
    if key not in _REPORTS:
        _REPORTS[key] = vm.boot(load_scenario(text), cloud_init=version)
    return _REPORTS[key]


def _why(r):
    vm = r.get("vm") or {}
    return json.dumps({"verdict": r["verdict"], "waagent": r.get("waagent"),
                       "warnings": (r.get("warnings") or [])[:10],
                       "platform_requests": vm.get("platform_requests"),
                       "console_tail": vm.get("console_tail")}, indent=1)[:9000]


@pytest.fixture(params=VERSIONS)
def version(request):
    return request.param


def test_waagent_reaches_its_extension_loop_and_the_platform_hears_one_ready(version):
    r = _boot("waagent", version, WAAGENT)
    wa = r["waagent"]
    assert r["verdict"]["ok"], _why(r)
    # one story: our Ready, and the agent reported no health of its own
    assert [(h["state"], h["by"]) for h in wa["health_reports"]] == [("Ready", "cloud-init")]
    assert r["ready_count"] == 1 and wa["agent_health_reports"] == [] and \
        wa["story_problems"] == []
    # its marker holds this VM's id, so its cloud-init handler skipped provisioning
    assert wa["marker_matches_vm"] and wa["provisioning_skipped"], _why(r)
    # the extension loop: the first goal state processed, status uploaded as Ready
    assert wa["reached_extension_loop"] and wa["status_uploads"] >= 1, _why(r)
    assert wa["last_status"]["status"] == "Ready" and wa["last_status"]["extensions"] == 0
    assert {"extensionsconfig", "hostingenv", "sharedconfig", "certificates",
            "hostplugin-status"} <= set(wa["agent_requests"]), wa["agent_requests"]
    assert wa["custom_data_runs"] == 1 and r["custom_data_applied"]
    assert r["vm"]["failed_units"] == [], r["vm"]["failed_units"]
    assert r["cloud_init_status"] == "done", _why(r)


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_failures_stay_failed_with_the_agent_beside(version, name):
    r = _boot(name, version, FAILURES[name])
    wa = r["waagent"]
    assert r["verdict"]["ok"], _why(r)
    assert not r["ready"] and r["failure"]["substatus"] == "ProvisioningFailed"
    assert wa["story_problems"] == [] and wa["agent_health_reports"] == []
    # nothing left that lets the agent report Ready: it is still waiting for the copy
    assert wa["provisioned_marker"] is None and wa["ovf_copy"] is None, _why(r)
    assert wa["settled"] == "waiting", _why(r)


@_no_vm_needed
@pytest.mark.parametrize("release", RELEASES)
def test_doctor_judges_debians_packaged_waagent_conf(release, tmp_path):
    from azure_sim import waagent_image

    if os.geteuid() != 0:
        skip_or_fail("fetching waagent and installing the .debs into an overlay needs root")
    _tree(release)  # skips (or fails under CI) without the release's tree
    extras = waagent_image.fetch_debs(release)
    for who, (rc, report) in doctor_with_packages(release, tmp_path, extras).items():
        checks = {c["id"]: c for c in report["checks"]}
        bad = {i: c["why"] for i, c in checks.items() if c["status"] != "ok"}
        # Provisioning.Agent=cloud-init is fine beside the plug-in; its
        # ResourceDisk.Format=y is the one warning
        assert list(bad) == ["waagent"] and checks["waagent"]["status"] == "warning", bad
        assert "/mnt/resource" in bad["waagent"] and rc == 1, who
