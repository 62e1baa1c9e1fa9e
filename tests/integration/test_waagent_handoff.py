"""The plug-in's hand-off to the Azure Linux Agent, on a real cloud-init in the sandbox.

The agent itself needs a VM (tests/vm/test_vm_waagent.py); here: what the plug-in
leaves in /var/lib/waagent for it, read from the boot's upper layer.
"""

from __future__ import annotations

import stat

import pytest

from azure_sim.scenario import DEFAULT_VM_ID
from azure_sim.waagent_report import marker_matches

RESERVED_USER = """
name: reserved-user
ovf: {username: root}
imds: {compute: {osProfile: {adminUsername: root}}}
expect: failure
"""
BROKEN = "name: broken\novf_xml: '<Environment><bad'\nexpect: failure\n"
AGENT_OFF = "name: agent-off\novf: {provision_guest_agent: false}\n"


def _boot(run_boot, text, cloud_init, tmp_path):
    keep = tmp_path / "upper"
    r = run_boot(text, cloud_init=cloud_init, datasource="plugin", keep=str(keep))
    assert r["sim_error"] is None and r["verdict"]["ok"], r["verdict"]
    return r, keep / "var/lib/waagent"


def test_after_our_ready_the_agent_finds_its_marker(run_boot, cloud_init, tmp_path):
    r, lib = _boot(run_boot, "name: agent-on\novf: {provision_guest_agent: true}\n",
                   cloud_init, tmp_path)
    assert r["ready_count"] == 1
    marker = lib / "provisioned"
    assert marker_matches(marker.read_text(), DEFAULT_VM_ID)
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600
    assert (lib / "ovf-env.xml").exists() and not (lib / "disable_agent").exists()


def test_provision_guest_agent_false_disables_the_agent(run_boot, cloud_init, tmp_path):
    _, lib = _boot(run_boot, AGENT_OFF, cloud_init, tmp_path)
    assert (lib / "disable_agent").exists() and (lib / "provisioned").exists()


@pytest.mark.parametrize("text", [BROKEN, RESERVED_USER], ids=["broken-ovf", "reserved-user"])
def test_after_our_failure_nothing_lets_the_agent_report_ready(run_boot, cloud_init,
                                                               tmp_path, text):
    r, lib = _boot(run_boot, text, cloud_init, tmp_path)
    assert not r["ready"] and r["failure"]["substatus"] == "ProvisioningFailed"
    assert r["waagent_ovf"] is None
    assert not (lib / "provisioned").exists() and not (lib / "ovf-env.xml").exists()
