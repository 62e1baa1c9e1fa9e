"""IMDS parsing (pure) and fetching against a scripted loopback server."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudinit_azure.http import RetryPolicy
from cloudinit_azure.imds import (
    FALLBACK_INSTANCE_PATH,
    INSTANCE_PATH,
    REPROVISION_PATH,
    InstanceMetadata,
    NetworkInterface,
    fetch_instance_metadata,
    fetch_reprovision_data,
    imds_client,
    parse_instance_metadata,
)
from cloudinit_azure.report import ImdsError, ImdsParseError
from tests.fuzz import fuzz
from tests.unit.test_http import HANG, FakeClock, Reply, ScriptedServer

DOC = {
    "compute": {
        "location": "westeurope",
        "name": "vm0",
        "osProfile": {
            "adminUsername": "azureuser",
            "computerName": "vm0",
            "disablePasswordAuthentication": "true",
        },
        "platformFaultDomain": "0",
        "publicKeys": [
            {"keyData": "ssh-ed25519 AAAAC3Nz user@host",
             "path": "/home/azureuser/.ssh/authorized_keys"},
        ],
        "userData": base64.b64encode(b"#cloud-config\n{}\n").decode(),
        "vmId": "5c1d8bc5-0e4e-4b0e-9d2a-2f1f1b0c6a11",
        "vmSize": "Standard_D2s_v5",
        "zone": "",
    },
    "extended": {"compute": {"ppsType": "Running", "hasCustomData": True}},
    "network": {
        "interface": [
            {
                "macAddress": "000D3A123ABC",
                "ipv4": {
                    "ipAddress": [{"privateIpAddress": "10.0.0.4", "publicIpAddress": ""},
                                  {"privateIpAddress": "10.0.0.5", "publicIpAddress": ""}],
                    "subnet": [{"address": "10.0.0.0", "prefix": "24"}],
                },
                "ipv6": {"ipAddress": [{"privateIpAddress": "fd00::4"}]},
            },
            {"macAddress": "000D3A123ABD", "ipv4": {"ipAddress": [], "subnet": []},
             "ipv6": {"ipAddress": []}},
        ]
    },
}


def body(doc=DOC) -> bytes:
    return json.dumps(doc).encode()


def changed(path: str, value):
    doc = copy.deepcopy(DOC)
    node = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


_DELETE = object()


# --- parsing -----------------------------------------------------------------

def test_parses_every_field():
    md = parse_instance_metadata(body())
    assert md == InstanceMetadata(
        vm_id="5c1d8bc5-0e4e-4b0e-9d2a-2f1f1b0c6a11",
        computer_name="vm0",
        admin_username="azureuser",
        disable_password_authentication=True,
        public_keys=(("ssh-ed25519 AAAAC3Nz user@host",
                      "/home/azureuser/.ssh/authorized_keys"),),
        user_data=b"#cloud-config\n{}\n",
        location="westeurope",
        zone=None,
        platform_fault_domain="0",
        vm_size="Standard_D2s_v5",
        pps_type="Running",
        has_custom_data=True,
        interfaces=(
            NetworkInterface("00:0d:3a:12:3a:bc", ("10.0.0.4", "10.0.0.5"),
                             (("10.0.0.0", 24),), ("fd00::4",)),
            NetworkInterface("00:0d:3a:12:3a:bd"),
        ),
    )
    assert md.raw == DOC
    assert "raw" not in repr(md) and "cloud-config" not in repr(md)


def test_raw_does_not_take_part_in_equality():
    a = parse_instance_metadata(body())
    b = parse_instance_metadata(body(changed("compute.name", "other")))
    assert a == b and a.raw != b.raw


@pytest.mark.parametrize("given,expected", [("true", True), ("false", False),
                                             ("False", False), (True, True), (_DELETE, None)])
def test_disable_password_authentication(given, expected):
    doc = changed("compute.osProfile.disablePasswordAuthentication", given)
    assert parse_instance_metadata(body(doc)).disable_password_authentication is expected


def test_absent_optional_fields_have_defaults():
    md = parse_instance_metadata(b'{"compute": {"vmId": "x"}}')
    assert md.vm_id == "x" and md.pps_type == "None" and md.user_data is None
    assert md.has_custom_data is None and md.interfaces == () and md.public_keys == ()


def test_empty_user_data_is_none():
    assert parse_instance_metadata(body(changed("compute.userData", ""))).user_data is None


def test_zone_kept_when_present():
    assert parse_instance_metadata(body(changed("compute.zone", "2"))).zone == "2"


def test_bad_base64_user_data_is_a_parse_error():
    with pytest.raises(ImdsParseError) as info:
        parse_instance_metadata(body(changed("compute.userData", "not base64!!")))
    assert info.value.reason == "error parsing IMDS metadata"
    assert "compute.userData" in info.value.supporting_data["detail"]


@pytest.mark.parametrize("raw", [b"", b"{not json", b"\xff\xfe", b"[1, 2]", b'"text"'])
def test_bad_json_is_a_parse_error(raw):
    with pytest.raises(ImdsParseError) as info:
        parse_instance_metadata(raw)
    assert info.value.reason == "error parsing IMDS metadata"
    assert info.value.supporting_data["detail"]


@pytest.mark.parametrize("path,value,field", [
    ("compute", [], "compute"),
    ("compute.vmId", {"a": 1}, "compute.vmId"),
    ("compute.osProfile", "x", "compute.osProfile"),
    ("compute.osProfile.disablePasswordAuthentication", "maybe",
     "compute.osProfile.disablePasswordAuthentication"),
    ("compute.publicKeys", {}, "compute.publicKeys"),
    ("compute.publicKeys.0.keyData", 5.5, "compute.publicKeys[0].keyData"),
    ("extended.compute.hasCustomData", 3, "extended.compute.hasCustomData"),
    ("compute.vmId", "x\ud800y", "compute.vmId"),
    ("compute.osProfile.adminUsername", "x\ud800y", "compute.osProfile.adminUsername"),
    ("compute.osProfile.computerName", "\udfff", "compute.osProfile.computerName"),
])
def test_wrong_types_name_the_field(path, value, field):
    with pytest.raises(ImdsParseError) as info:
        parse_instance_metadata(body(changed(path, value)))
    assert info.value.supporting_data["detail"].startswith(field + " ")
    str(info.value).encode("utf-8")


@pytest.mark.parametrize("path,value,field", [
    ("network", "eth0", "network"),
    ("network.interface", "eth0", "network.interface"),
    ("network.interface.0.macAddress", "00:0d:3a", "network.interface[0].macAddress"),
    ("network.interface.0.macAddress", "x\ud800y", "network.interface[0].macAddress"),
    ("network.interface.0.ipv4", [], "network.interface[0].ipv4"),
    ("network.interface.0.ipv4.subnet", [{"address": "10.0.0.0", "prefix": "x"}],
     "network.interface[0].ipv4.subnet[0].prefix"),
    ("network.interface.0.ipv4.subnet", [{"address": "10.0.0.0", "prefix": "\u00b2"}],
     "network.interface[0].ipv4.subnet[0].prefix"),
    ("network.interface.0.ipv4.subnet", [{"address": "10.0.0.0", "prefix": "\u2460"}],
     "network.interface[0].ipv4.subnet[0].prefix"),
    ("network.interface.0.ipv4.subnet", [{"address": "10.0.0.0", "prefix": "9" * 5000}],
     "network.interface[0].ipv4.subnet[0].prefix"),
    ("network.interface.0.ipv4.subnet", [{"address": "10.0.0.0", "prefix": float("inf")}],
     "network.interface[0].ipv4.subnet[0].prefix"),
    ("network.interface.0.ipv4.subnet", [{"address": "10.0.0.0", "prefix": 33}],
     "network.interface[0].ipv4.subnet[0].prefix"),
    ("network.interface.0.ipv4.subnet", [{"address": "::1", "prefix": 24}],
     "network.interface[0].ipv4.subnet[0].address"),
    ("network.interface.1.ipv6.ipAddress", [7], "network.interface[1].ipv6.ipAddress[0]"),
    ("network.interface.0.ipv4.ipAddress", [{"privateIpAddress": "10.0.0.999"}],
     "network.interface[0].ipv4.ipAddress[0].privateIpAddress"),
    ("network.interface.0.ipv4.ipAddress", [{"privateIpAddress": 167772164}],
     "network.interface[0].ipv4.ipAddress[0].privateIpAddress"),
    ("network.interface.0.ipv4.ipAddress", [{"privateIpAddress": "fe80::1"}],
     "network.interface[0].ipv4.ipAddress[0].privateIpAddress"),
])
def test_bad_network_data_is_a_network_problem_never_a_failure(path, value, field):
    """One rule (issue 15): the netconfig fall-back handles it, provisioning goes on."""
    md = parse_instance_metadata(body(changed(path, value)))
    assert md.interfaces == () and md.admin_username
    assert field + " " in md.network_problem
    md.network_problem.encode("utf-8")


def test_a_duplicate_mac_is_a_network_problem():
    doc = json.loads(body())
    doc["network"]["interface"].append(doc["network"]["interface"][0])
    md = parse_instance_metadata(json.dumps(doc).encode())
    assert md.interfaces == () and "duplicate MAC" in md.network_problem


def test_prefixes_as_ints_or_ascii_digits():
    md = parse_instance_metadata(body(changed(
        "network.interface.0.ipv4.subnet", [{"address": "10.0.0.0", "prefix": 24},
                                            {"address": "10.1.0.0", "prefix": " 16 "}])))
    assert md.interfaces[0].ipv4_subnets == (("10.0.0.0", 24), ("10.1.0.0", 16))
    assert md.network_problem is None


def test_deeply_nested_json_is_a_parse_error_not_a_recursion_error():
    with pytest.raises(ImdsParseError) as info:
        parse_instance_metadata(b"[" * 100_000)
    assert info.value.reason == "error parsing IMDS metadata"
    assert info.value.supporting_data["exception"] == "RecursionError"


@fuzz
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats()
                    | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(
                        ["compute", "network", "interface", "ipv4", "ipv6", "subnet",
                         "ipAddress", "prefix", "address", "privateIpAddress",
                         "macAddress", "osProfile", "vmId", "adminUsername"]), inner,
                        max_size=4), max_leaves=25))
def test_any_json_is_metadata_or_an_imds_parse_error(doc):
    try:
        md = parse_instance_metadata(json.dumps(doc).encode())
    except ImdsParseError as err:
        str(err).encode("utf-8")
    else:
        assert md.network_problem is None or md.interfaces == ()


def test_mac_with_colons_is_normalised():
    doc = changed("network.interface.0.macAddress", "00:0D:3A:12:3A:BC")
    assert parse_instance_metadata(body(doc)).interfaces[0].mac == "00:0d:3a:12:3a:bc"


# --- fetching ----------------------------------------------------------------

def fetch(url, clock, **policy):
    policy.setdefault("client_request_id", True)
    return fetch_instance_metadata(url, policy=RetryPolicy(**policy), clock=clock,
                                   sleep=clock.sleep)


def test_fetch_retries_500_three_times_then_parses():
    clock = FakeClock()
    with ScriptedServer([Reply(500), Reply(500), Reply(500), Reply(200, body())]) as srv:
        md = fetch(srv.url, clock)
    assert md.vm_id == DOC["compute"]["vmId"]
    assert clock.sleeps == [1.0, 1.0, 1.0]
    assert [s.path for s in srv.seen] == [INSTANCE_PATH] * 4
    assert all(s.headers["metadata"] == "true" and s.method == "GET" for s in srv.seen)
    ids = {s.headers["x-ms-client-request-id"] for s in srv.seen}
    assert len(ids) == 4


def test_fetch_falls_back_to_2019_api_on_400_only():
    clock = FakeClock()
    with ScriptedServer([Reply(400), Reply(200, body())]) as srv:
        md = fetch(srv.url, clock)
    assert md.computer_name == "vm0"
    assert [s.path for s in srv.seen] == [INSTANCE_PATH, FALLBACK_INSTANCE_PATH]
    assert "extended" not in srv.seen[1].path
    assert clock.sleeps == []


def test_fallback_is_retried_too():
    clock = FakeClock()
    with ScriptedServer([Reply(400), Reply(503), Reply(200, body())]) as srv:
        fetch(srv.url, clock)
    assert [s.path for s in srv.seen] == [INSTANCE_PATH] + [FALLBACK_INSTANCE_PATH] * 2


def test_fetch_403_fails_at_once():
    clock = FakeClock()
    with ScriptedServer([Reply(403), Reply(200, body())]) as srv:
        with pytest.raises(ImdsError) as info:
            fetch(srv.url, clock)
    assert len(srv.seen) == 1 and clock.sleeps == []
    assert info.value.supporting_data["status"] == 403
    assert not isinstance(info.value, ImdsParseError)


def test_fetch_honours_retry_after_on_429():
    clock = FakeClock()
    script = [Reply(429, headers={"Retry-After": "5"}), Reply(200, body())]
    with ScriptedServer(script) as srv:
        fetch(srv.url, clock)
    assert clock.sleeps == [5.0]


def test_fetch_server_never_answers_deadline_on_fake_clock():
    clock = FakeClock()
    with ScriptedServer([HANG]) as srv:
        with pytest.raises(ImdsError) as info:
            fetch(srv.url, clock, timeout_s=0.05, deadline_s=300.0, interval_s=100.0)
    data = info.value.supporting_data
    assert data["exception"] == "ReadTimeout" and data["elapsed_s"] == 300.0
    assert data["attempts"] == 4  # t=0, 100, 200, 300
    assert len(srv.seen) == 4


def test_fetch_with_default_policy_runs_300s_deadline_on_fake_clock():
    clock = FakeClock()
    with ScriptedServer([Reply(410)]) as srv:
        with pytest.raises(ImdsError) as info:
            fetch_instance_metadata(srv.url, clock=clock, sleep=clock.sleep)
    assert info.value.supporting_data["elapsed_s"] == 300.0
    assert len(srv.seen) == 301 and sum(clock.sleeps) == 300.0


def test_fetch_bad_json_is_parse_error():
    clock = FakeClock()
    with ScriptedServer([Reply(200, b"<html>oops</html>")]) as srv:
        with pytest.raises(ImdsParseError) as info:
            fetch(srv.url, clock)
    assert info.value.reason == "error parsing IMDS metadata"


def test_fetch_wrong_types_is_parse_error():
    clock = FakeClock()
    with ScriptedServer([Reply(200, body(changed("compute.publicKeys", "k")))]) as srv:
        with pytest.raises(ImdsParseError) as info:
            fetch(srv.url, clock)
    assert info.value.supporting_data["detail"] == "compute.publicKeys is not a list"


def test_fetch_accepts_a_prebuilt_client():
    clock = FakeClock()
    with ScriptedServer([Reply(200, body())]) as srv:
        c = imds_client(srv.url, clock=clock, sleep=clock.sleep)
        assert fetch_instance_metadata(c).vm_size == "Standard_D2s_v5"
    assert "x-ms-client-request-id" in srv.seen[0].headers


def test_fetch_reprovision_data_returns_raw_bytes():
    clock = FakeClock()
    ovf = b"<?xml version='1.0'?><Environment/>"
    with ScriptedServer([Reply(404), Reply(200, ovf)]) as srv:
        got = fetch_reprovision_data(srv.url, clock=clock, sleep=clock.sleep)
    assert got == ovf
    assert [s.path for s in srv.seen] == [REPROVISION_PATH] * 2
    assert srv.seen[0].headers["metadata"] == "true"
