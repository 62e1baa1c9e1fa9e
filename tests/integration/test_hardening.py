"""Unusual and hostile input, booted: real cloud-init 22.4.2 and 25.1.4 in the simulator.

Each scenario is something an image author, a user or the platform can hand
the VM (issue 13): every boot ends in Ready with the documented behaviour or
in one ProvisioningFailed with a reason, never in silence.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

pytestmark = pytest.mark.integration

LEGACY_CFG = """\
# as images built for the built-in datasource carry it
datasource:
  Azure:
    agent_command: __builtin__
    set_hostname: true
    hostname_bounce: {interface: eth0, policy: true, command: builtin, hostname_command: hostname}
    disk_aliases: {ephemeral0: /dev/disk/cloud/azure_resource}
    dhclient_lease_file: /var/lib/dhcp/dhclient.eth0.leases
    data_dir: /var/lib/waagent
"""
LEGACY_KEYS = """
name: legacy-datasource-keys
image_files:
  /etc/cloud/cloud.cfg.d/50_legacy_azure.cfg: |
""" + textwrap.indent(LEGACY_CFG, "    ")
UNKNOWN_KEY = """
name: unknown-datasource-key
image_files:
  /etc/cloud/cloud.cfg.d/50_typo.cfg: |
    datasource: {Azure: {agent_comand: __builtin__}}
"""


def _ready(r):
    assert r["sim_error"] is None, r.get("traceback")
    assert r["datasource"] == "plugin"
    assert r["ready"] and r["ready_count"] == 1 and r["failure"] is None, r["verdict"]
    assert r["user"]["exists"]


def _one_failure(r):
    assert r["sim_error"] is None, r.get("traceback")
    assert not r["ready"]
    failures = [h for h in r["health_reports"] if h["state"] == "NotReady"]
    assert len(failures) == 1, r["health_reports"]
    assert failures[0]["substatus"] == "ProvisioningFailed"
    kvp = [k["value"] for k in r["kvp"] if k["key"] == "PROVISIONING_REPORT"]
    assert len(kvp) == 1 and kvp[0].startswith("result=error|")
    return failures[0]["decoded"]


def test_legacy_builtin_datasource_keys_still_provision_quietly(run_boot, cloud_init):
    r = run_boot(LEGACY_KEYS, cloud_init=cloud_init, datasource="plugin")
    _ready(r)
    assert r["verdict"]["ok"], r["verdict"]
    assert not [w for w in r["warnings"] if "datasource.Azure" in w], r["warnings"]


def test_an_unknown_datasource_key_warns_once_by_name_and_provisions(run_boot, cloud_init):
    r = run_boot(UNKNOWN_KEY, cloud_init=cloud_init, datasource="plugin")
    _ready(r)
    named = [w for w in r["warnings"] if "unknown key 'agent_comand'" in w]
    assert len(named) == 1, r["warnings"]


BAD_VALUE = """
name: bad-datasource-value
image_files:
  /etc/cloud/cloud.cfg.d/50_bad.cfg: |
    datasource: {Azure: {set_hostname: maybe}}
expect: failure
"""


def test_a_known_key_with_a_bad_value_is_one_provisioning_failed_naming_it(run_boot,
                                                                          cloud_init):
    r = run_boot(BAD_VALUE, cloud_init=cloud_init, datasource="plugin")
    decoded = _one_failure(r)
    assert decoded["reason"] == "invalid cloudinit-azure configuration"
    assert decoded["key"] == "datasource.Azure.set_hostname"


# --- admin user names and sudo (issue 13 items 4 and 8) ---------------------------

UPPER_CASE_ADMIN = """
name: upper-case-admin
ovf: {username: AzureOps}
"""
# Debian 12's useradd (shadow 4.13, also the sandbox's) creates at most 32 characters.
LONG_ADMIN = """
name: long-admin
ovf: {username: %s}
expect: failure
""" % ("a" * 40)
PASSWORD_ADMIN = """
name: password-admin
ovf: {password: "Sim-Passw0rd!x"}
"""


def _sudoers(keep):
    found = sorted((keep / "etc/sudoers.d").glob("*"))
    return "".join(p.read_text() for p in found)


def test_an_upper_case_admin_name_is_created_with_its_key(run_boot, cloud_init, tmp_path):
    r = run_boot(UPPER_CASE_ADMIN, cloud_init=cloud_init, datasource="plugin",
                 keep=str(tmp_path / "upper"))
    _ready(r)
    assert r["verdict"]["ok"], r["verdict"]
    assert r["user"]["name"] == "AzureOps" and r["user"]["authorized_keys"]
    # No password given: key-only sudo cannot ask for one.
    assert "AzureOps ALL=(ALL) NOPASSWD:ALL" in _sudoers(tmp_path / "upper")


def test_a_name_longer_than_useradd_creates_is_refused_with_the_reason(run_boot,
                                                                       cloud_init):
    decoded = _one_failure(run_boot(LONG_ADMIN, cloud_init=cloud_init, datasource="plugin"))
    assert decoded["reason"] == "invalid user name"
    assert decoded["problem"] == "longer than 32 characters"


def test_sudo_asks_for_the_password_the_user_gave(run_boot, cloud_init, tmp_path):
    r = run_boot(PASSWORD_ADMIN, cloud_init=cloud_init, datasource="plugin",
                 keep=str(tmp_path / "upper"))
    _ready(r)
    sudoers = _sudoers(tmp_path / "upper")
    assert "azureuser ALL=(ALL) ALL" in sudoers and "NOPASSWD" not in sudoers


# --- hostile platform documents (issue 13 item 11, issue 15) ----------------------

def _nic(mac, ip="10.0.0.4", prefix="24"):
    return {"macAddress": mac, "ipv4": {
        "ipAddress": [{"privateIpAddress": ip, "publicIpAddress": ""}],
        "subnet": [{"address": "10.0.0.0", "prefix": prefix}]}}


@pytest.mark.parametrize("nic", [
    _nic("NOT-A-MAC"), _nic("000D3A123456", ip="10.0.0.999"), _nic("000D3A123456",
                                                                  prefix="\u2460"),
], ids=["bad-mac", "bad-ip", "unicode-prefix"])
def test_bad_imds_network_data_falls_back_to_dhcp_and_provisions(run_boot, cloud_init,
                                                                  tmp_path, nic):
    scenario = yaml.safe_dump({"name": "bad-imds-network",
                               "imds": {"network": {"interface": [nic]}}})
    keep = tmp_path / "upper"
    r = run_boot(scenario, cloud_init=cloud_init, datasource="plugin", keep=str(keep))
    _ready(r)
    assert r["user"]["authorized_keys"]
    assert any("IMDS network data unusable" in w for w in r["warnings"]), r["warnings"]
    # The fall-back: DHCP on the primary NIC matched by its MAC, nothing from IMDS
    # (the IMDS rendering carries a route metric and the platform routes).
    rendered = (keep / "etc/systemd/network/10-cloud-init-eth0.network").read_text()
    assert "MACAddress=00:0d:3a:12:34:56" in rendered and "DHCP=ipv4" in rendered
    assert "Metric" not in rendered and "[Route]" not in rendered


@pytest.mark.parametrize("path", ["adminUsername", "computerName", "vmId"])
def test_a_lone_surrogate_in_imds_is_one_provisioning_failed_that_can_be_read(
        run_boot, cloud_init, path):
    where = {"vmId": {"vmId": "x\ud800y"}}.get(path, {"osProfile": {path: "x\ud800y"}})
    scenario = yaml.safe_dump({"name": "surrogate", "imds": {"compute": where},
                               "expect": "failure"})
    decoded = _one_failure(run_boot(scenario, cloud_init=cloud_init, datasource="plugin"))
    assert decoded["reason"] == "error parsing IMDS metadata"
    assert "is not valid Unicode text" in decoded["detail"]
    assert decoded["documentation_url"] == "https://aka.ms/linuxprovisioningerror"


def test_garbage_in_provision_guest_agent_still_provisions(run_boot, cloud_init):
    from azure_sim.documents import render_ovf
    from azure_sim.scenario import load_scenario

    xml = render_ovf(load_scenario()["ovf"]).decode()
    marker = "ProvisionGuestAgent>false<"
    assert marker in xml
    xml = xml.replace(marker, "ProvisionGuestAgent>not-a-boolean<")
    r = run_boot(yaml.safe_dump({"name": "guest-agent-garbage", "ovf_xml": xml}),
                 cloud_init=cloud_init, datasource="plugin")
    assert r["sim_error"] is None, r.get("traceback")
    assert r["ready"] and r["ready_count"] == 1 and r["failure"] is None


def test_a_73_character_password_is_refused_72_is_set(run_boot, cloud_init):
    """Azure's limit for a Linux admin password is 72 characters."""
    ok = run_boot(yaml.safe_dump({"name": "password-72", "ovf": {"password": "Pw-1" * 18}}),
                  cloud_init=cloud_init, datasource="plugin")
    _ready(ok)
    assert ok["user"]["password_verifies"] is True
    decoded = _one_failure(run_boot(yaml.safe_dump(
        {"name": "password-73", "ovf": {"password": "Pw-1" * 18 + "x"},
         "expect": "failure"}), cloud_init=cloud_init, datasource="plugin"))
    assert decoded["reason"] == "password too long" and decoded["max_length"] == "72"


def test_a_600_character_vm_id_keeps_the_documentation_url_in_the_report(run_boot,
                                                                         cloud_init):
    scenario = yaml.safe_dump({"name": "long-vm-id", "ovf": {"username": "root"},
                               "imds": {"compute": {"vmId": "v" * 600,
                                                    "osProfile": {"adminUsername": "root"}}},
                               "expect": "failure"})
    r = run_boot(scenario, cloud_init=cloud_init, datasource="plugin")
    decoded = _one_failure(r)
    assert decoded["reason"] == "reserved user name"
    assert decoded["documentation_url"] == "https://aka.ms/linuxprovisioningerror"
    assert len(decoded["vm_id"]) <= 64
    kvp = [k["value"] for k in r["kvp"] if k["key"] == "PROVISIONING_REPORT"]
    assert kvp[0].endswith("|documentation_url=https://aka.ms/linuxprovisioningerror")
