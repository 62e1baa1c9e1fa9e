"""azure-sim documents: what the platform serves, read back by the plug-in's parsers."""

from __future__ import annotations

import base64
import json

import pytest

from azure_sim import documents
from azure_sim.scenario import DEFAULT_KEY, DEFAULT_MAC, DEFAULT_VM_ID, load_scenario
from cloudinit_azure.ovf import parse_ovf
from cloudinit_azure.report import OvfError
from cloudinit_azure.wireserver import parse_goal_state

FULL = """
ovf:
  hostname: host-a
  username: alice
  password: "s3cret <&> 'pw'"
  disable_ssh_password_auth: false
  public_keys: ["ssh-ed25519 AAAAkey1 a@b", "ssh-rsa AAAAkey2 c@d"]
  key_fingerprints: ["abcdef0123"]
  custom_data: "#cloud-config\\nruncmd: [true]\\n"
  preprovisioned_vm: true
  preprovisioned_vm_type: Savable
  namespace_prefix: {prefix}
"""


def _full(prefix: str) -> dict:
    return load_scenario(FULL.format(prefix=f'"{prefix}"'))


@pytest.mark.parametrize("prefix", [
    "ns1",
    "wa",
    "",
])
def test_render_ovf_parses_back(prefix):
    ovf = _full(prefix)["ovf"]
    xml = documents.render_ovf(ovf)
    if prefix:
        assert f"<{prefix}:ProvisioningSection>".encode() in xml
    env = parse_ovf(xml)
    assert env.hostname == "host-a"
    assert env.username == "alice"
    assert env.password == "s3cret <&> 'pw'"
    assert env.disable_ssh_password_auth is False
    assert env.custom_data == b"#cloud-config\nruncmd: [true]\n"
    values = [k.value for k in env.public_keys if k.value]
    assert values == ["ssh-ed25519 AAAAkey1 a@b", "ssh-rsa AAAAkey2 c@d"]
    assert all(k.path == "/home/alice/.ssh/authorized_keys" for k in env.public_keys)
    assert [k.fingerprint for k in env.public_keys if not k.value] == ["ABCDEF0123"]
    assert env.preprovisioned_vm is True
    assert env.preprovisioned_vm_type == "Savable"
    assert env.provision_guest_agent is False


def test_render_ovf_default_scenario():
    env = parse_ovf(documents.render_ovf(load_scenario()["ovf"]))
    assert env.hostname == "sim-vm-01"
    assert env.username == "azureuser"
    assert env.password is None
    assert env.disable_ssh_password_auth is None  # default scenario: sshd left alone
    assert [k.value for k in env.public_keys] == [DEFAULT_KEY]
    assert env.custom_data.startswith(b"#cloud-config\n")
    assert env.preprovisioned_vm is False
    assert env.preprovisioned_vm_type is None


def test_render_ovf_without_optional_elements():
    ovf = load_scenario("ovf: {hostname: h, username: u, public_keys: [], custom_data: null}"
                        )["ovf"]
    xml = documents.render_ovf(ovf)
    assert b"UserPassword" not in xml
    assert b"SSH>" not in xml
    assert b"CustomData" not in xml
    env = parse_ovf(xml)
    assert (env.password, env.custom_data, env.public_keys, env.disable_ssh_password_auth
            ) == (None, None, (), None)


def test_render_ovf_custom_data_raw_is_not_encoded():
    ovf = load_scenario("ovf: {custom_data_raw: 'not base64 !!'}")["ovf"]
    xml = documents.render_ovf(ovf)
    assert b"<ns1:CustomData>not base64 !!</ns1:CustomData>" in xml
    with pytest.raises(OvfError, match="invalid base64 in CustomData"):
        parse_ovf(xml)


def test_render_ovf_key_pairs():
    sha1 = "AB12" * 10  # what the boot puts there: the certificate's SHA-1
    text = f"ovf: {{key_pairs: [{{fingerprint: {sha1}, path: /home/azureuser/.ssh/id_rsa}}]}}"
    ovf = load_scenario(text)["ovf"]
    env = parse_ovf(documents.render_ovf(ovf))
    assert [(p.fingerprint, p.path) for p in env.key_pairs] == [
        (sha1, "/home/azureuser/.ssh/id_rsa")]


def test_imds_document_defaults_follow_the_scenario():
    s = load_scenario("ovf: {hostname: h1, username: bob, public_keys: [k1], custom_data: null}"
                      "\nnics: 2")
    doc = documents.imds_document(s)
    c = doc["compute"]
    assert c["vmId"] == DEFAULT_VM_ID
    assert c["name"] == c["osProfile"]["computerName"] == "h1"
    assert c["osProfile"]["adminUsername"] == "bob"
    assert c["osProfile"]["disablePasswordAuthentication"] == "true"
    assert c["publicKeys"] == [{"keyData": "k1",
                                "path": "/home/bob/.ssh/authorized_keys"}]
    macs = [i["macAddress"] for i in doc["network"]["interface"]]
    assert macs == ["000D3A123456", "000D3A123457"]
    ips = [i["ipv4"]["ipAddress"][0]["privateIpAddress"]
           for i in doc["network"]["interface"]]
    assert ips == ["10.0.0.4", "10.0.1.4"]
    assert doc["extended"]["compute"]["hasCustomData"] is False


def test_imds_password_flag_follows_password():
    doc = documents.imds_document(load_scenario("ovf: {password: pw}"))
    assert doc["compute"]["osProfile"]["disablePasswordAuthentication"] == "false"


def test_imds_document_deep_merges_overlay():
    s = load_scenario("""
imds:
  compute:
    vmSize: Standard_B1s
    osProfile: {adminUsername: carol}
    tags: "a:b"
  extra: {x: 1}
""")
    doc = documents.imds_document(s)
    c = doc["compute"]
    assert c["vmSize"] == "Standard_B1s"
    assert c["osProfile"]["adminUsername"] == "carol"
    # Siblings of overridden keys survive.
    assert c["osProfile"]["computerName"] == "sim-vm-01"
    assert c["vmId"] == DEFAULT_VM_ID
    assert c["tags"] == "a:b"
    assert doc["extra"] == {"x": 1}
    assert doc["network"]["interface"][0]["macAddress"] == "000D3A123456"


def test_imds_overlay_replaces_lists():
    s = load_scenario("imds: {compute: {publicKeys: []}}")
    assert documents.imds_document(s)["compute"]["publicKeys"] == []


def test_imds_body_drops_extended_for_2019_api():
    doc = documents.imds_document(load_scenario())
    old = json.loads(documents.imds_body(doc, "2019-06-01"))
    new = json.loads(documents.imds_body(doc, "2021-08-01"))
    assert "extended" not in old
    assert new["extended"] == doc["extended"]
    assert old["compute"] == new["compute"] == doc["compute"]
    # The source document is not modified.
    assert "extended" in doc


def test_goal_state_parses_with_plugin_parser():
    xml = documents.goal_state(documents.INCARNATION, documents.CONTAINER_ID,
                               documents.role_instance_id(), None)
    gs = parse_goal_state(xml)
    assert gs.incarnation == "1"
    assert gs.container_id == documents.CONTAINER_ID
    assert gs.instance_id == f"{DEFAULT_VM_ID}.sim-vm-01"
    assert gs.certificates_url is None


def test_goal_state_with_certificates_url():
    url = "http://168.63.129.16:80/machine/x/y?comp=certificates&incarnation=1"
    xml = documents.goal_state("7", "cid", "iid", url)
    gs = parse_goal_state(xml)
    assert (gs.incarnation, gs.container_id, gs.instance_id) == ("7", "cid", "iid")
    assert gs.certificates_url == url


def test_nic_mac_and_ip():
    assert documents.nic_mac(0) == DEFAULT_MAC
    assert documents.nic_mac(1) == "00:0d:3a:12:34:57"
    assert documents.nic_mac(3) == "00:0d:3a:12:34:59"
    assert [documents.nic_ip(i) for i in range(3)] == ["10.0.0.4", "10.0.1.4", "10.0.2.4"]
    assert len({documents.nic_mac(i) for i in range(4)}) == 4


def test_custom_data_is_base64_of_the_text():
    ovf = load_scenario("ovf: {custom_data: héllo}")["ovf"]
    xml = documents.render_ovf(ovf)
    assert base64.b64encode("héllo".encode()) in xml
