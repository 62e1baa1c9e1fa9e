"""Decisions of the provisioning core: precedence, failures, module placement."""

from __future__ import annotations

import base64

import pytest

from cloudinit_azure import provision
from cloudinit_azure.imds import parse_instance_metadata
from cloudinit_azure.ovf import parse_ovf
from cloudinit_azure.report import ProvisioningError, UserConfigError
from tests.fakes import openssl_runner

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL8T2XkRHWuLWH8ZeEvdQNcpuUOskXzqOUzOPG02ufb0 "
       "azureuser@sim")
OTHER_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKmu8uvPy4pcZpgc1yAAY64x6ob1Khv2EJL/"
             "rjxnMwvx other@sim")
UUID = "6bd2a1c7-3f0e-4b8a-9c51-2d7e8f4a1b30"
WA = "http://schemas.microsoft.com/windowsazure"


def plan(*args, **kwargs):
    """:func:`provision.plan` with the shared fake runner (openssl played in Python)."""
    return provision.plan(*args, runner=openssl_runner(), **kwargs)


def ovf_doc(*, hostname="ovf-host", username="ovfuser", password=None, keys=(),
            fingerprints=(), custom=None, disable=None, key_pairs=()):
    parts = [f"<HostName>{hostname}</HostName>", f"<UserName>{username}</UserName>"]
    if password:
        parts.append(f"<UserPassword>{password}</UserPassword>")
    if disable is not None:
        parts.append(f"<DisableSshPasswordAuthentication>{str(disable).lower()}"
                     "</DisableSshPasswordAuthentication>")
    pks = "".join(f"<PublicKey><Fingerprint></Fingerprint><Path>/p</Path><Value>{k}</Value>"
                  "</PublicKey>" for k in keys)
    pks += "".join(f"<PublicKey><Fingerprint>{f}</Fingerprint><Path>/p</Path></PublicKey>"
                   for f in fingerprints)
    kps = "".join(f"<KeyPair><Fingerprint>{f}</Fingerprint><Path>{p}</Path></KeyPair>"
                  for f, p in key_pairs)
    parts.append(f"<SSH><PublicKeys>{pks}</PublicKeys><KeyPairs>{kps}</KeyPairs></SSH>")
    if custom is not None:
        parts.append(f"<CustomData>{base64.b64encode(custom).decode()}</CustomData>")
    body = "".join(parts)
    return parse_ovf(
        f'<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"><ProvisioningSection '
        f'xmlns="{WA}"><LinuxProvisioningConfigurationSet>{body}'
        "</LinuxProvisioningConfigurationSet></ProvisioningSection></Environment>".encode())


def imds_doc(*, computer="imds-host", admin="imdsuser", keys=(), user_data=None,
             has_custom=False, disable="true"):
    import json

    doc = {"compute": {"vmId": UUID, "location": "westeurope", "zone": "2",
                       "osProfile": {"computerName": computer, "adminUsername": admin,
                                     "disablePasswordAuthentication": disable},
                       "publicKeys": [{"keyData": k, "path": "/p"} for k in keys],
                       "userData": base64.b64encode(user_data).decode() if user_data else ""},
           "network": {"interface": []},
           "extended": {"compute": {"hasCustomData": has_custom}}}
    return parse_instance_metadata(json.dumps(doc).encode())


def test_imds_wins_for_host_user_and_keys_ovf_for_password_and_custom_data():
    ovf = ovf_doc(password="S3cret-pass!", keys=[OTHER_KEY], custom=b"#cloud-config\n")
    imds = imds_doc(keys=[KEY], user_data=b"#!/bin/sh\nimds\n", disable="false")
    p = plan(ovf, imds, system_uuid=UUID.upper(), existing_users={})
    assert p.hostname == "imds-host"
    assert p.username == "imdsuser"
    assert p.public_keys == (KEY,)
    assert p.userdata == b"#cloud-config\n"
    user = p.config["system_info"]["default_user"]
    assert user["name"] == "imdsuser"
    assert user["hashed_passwd"].startswith("$6$")
    assert user["lock_passwd"] is False
    assert p.config["ssh_pwauth"] is True  # no OVF flag: IMDS says password auth is on
    assert p.instance_id == UUID
    assert p.metadata["imds"]["compute"]["location"] == "westeurope"
    assert "S3cret-pass!" not in repr(p)


def test_imds_flag_applies_when_ovf_has_none():
    p = plan(ovf_doc(password="S3cret-pass!"), imds_doc(disable="true"),
                       system_uuid=UUID)
    assert p.config["ssh_pwauth"] is False


def test_ovf_flag_beats_imds_flag_and_no_password_locks_account():
    p = plan(ovf_doc(keys=[KEY], disable=True), imds_doc(disable="false"),
                       system_uuid=UUID)
    assert p.config["ssh_pwauth"] is False
    assert p.config["system_info"]["default_user"]["lock_passwd"] is True
    assert "hashed_passwd" not in p.config["system_info"]["default_user"]


def test_ovf_only_values_used_when_imds_has_none():
    p = plan(ovf_doc(keys=[KEY]), imds_doc(computer="", admin="", keys=()),
                       system_uuid=UUID)
    assert (p.hostname, p.username, p.public_keys) == ("ovf-host", "ovfuser", (KEY,))


def test_imds_user_data_used_without_custom_data():
    p = plan(ovf_doc(keys=[KEY]), imds_doc(user_data=b"ud"), system_uuid=UUID)
    assert p.userdata == b"ud"


def test_fingerprint_keys_come_from_certificates():
    ovf = ovf_doc(fingerprints=["abcdef"])
    imds = imds_doc(keys=())
    assert provision.fingerprints_needed(ovf, imds) == ("ABCDEF",)
    p = plan(ovf, imds, system_uuid=UUID, cert_keys={"ABCDEF": KEY})
    assert p.public_keys == (KEY,)
    with pytest.raises(UserConfigError, match="certificate for SSH key not found"):
        plan(ovf, imds, system_uuid=UUID, cert_keys={})


def test_no_certificates_needed_when_imds_has_keys_unless_key_pairs():
    pair = "CD" * 20  # a key pair's fingerprint is a SHA-1: 40 hex digits
    ovf = ovf_doc(fingerprints=["AB"], key_pairs=[(pair, "/home/u/.ssh/id_rsa")])
    assert provision.fingerprints_needed(ovf, imds_doc(keys=[KEY])) == (pair,)
    assert provision.fingerprints_needed(None, imds_doc()) == ()


def test_lost_custom_data_is_a_failure_not_a_silent_imds_only_boot():
    with pytest.raises(provision.MissingCustomDataError):
        plan(None, imds_doc(has_custom=True), system_uuid=UUID)
    p = plan(None, imds_doc(keys=[KEY]), system_uuid=UUID)
    assert p.username == "imdsuser"


def test_nothing_at_all_is_a_failure():
    with pytest.raises(ProvisioningError, match="no provisioning data"):
        plan(None, None, system_uuid=UUID)


def test_reserved_user_and_bad_host_fail_with_reasons():
    with pytest.raises(UserConfigError, match="reserved user name"):
        plan(ovf_doc(username="root"), imds_doc(admin=""), system_uuid=UUID)
    with pytest.raises(UserConfigError, match="invalid host name"):
        plan(ovf_doc(hostname="bad_host!"), imds_doc(computer=""),
                       system_uuid=UUID)


def test_instance_id_kept_across_gen1_gen2_byte_order():
    swapped = "c7a1d26b-0e3f-8a4b-9c51-2d7e8f4a1b30"
    p = plan(ovf_doc(keys=[KEY]), imds_doc(), system_uuid=swapped,
                       previous_instance_id=UUID)
    assert p.instance_id == UUID


DEBIAN_22 = ["migrator", "seed_random", "bootcmd", "write-files", "growpart", "resizefs",
             "disk_setup", "mounts", "set_hostname", "update_hostname", "update_etc_hosts",
             "ca-certs", "rsyslog", "users-groups", "ssh"]


def test_modules_placed_around_the_distro_list():
    out = provision.place_modules(DEBIAN_22)
    assert out.index("azure_kernel") == out.index("seed_random") + 1
    assert out.index("azure_kernel") < out.index("ssh")
    assert out[-4:] == ["ssh", "azure_ready", "azure_network", "azure_resource_disk"]
    assert [m for m in out if not m.startswith("azure_")] == DEBIAN_22


def test_modules_already_listed_stay_where_the_author_put_them():
    listed = ["azure_ready", "users_groups", ["ssh", "always"]]
    out = provision.place_modules(listed)
    assert out.index("azure_ready") == 0
    assert out.count("azure_ready") == 1
    assert out.index("azure_kernel") == out.index(["ssh", "always"]) - 1


def test_modules_appended_when_no_anchor():
    assert provision.place_modules(["foo"]) == [
        "foo", "azure_kernel", "azure_ready", "azure_network", "azure_resource_disk"]
