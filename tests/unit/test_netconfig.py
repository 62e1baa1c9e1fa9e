"""IMDS network data -> network config v2."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from cloudinit_azure.network import netconfig
from cloudinit_azure.network.netconfig import fallback_config, network_config, normalize_mac
from cloudinit_azure.report import ImdsParseError


def nic(mac, v4=(), v6=(), prefix="24", prefix6="128"):
    return {
        "macAddress": mac,
        "ipv4": {
            "ipAddress": [{"privateIpAddress": a, "publicIpAddress": ""} for a in v4],
            "subnet": [{"address": "10.0.0.0", "prefix": prefix}],
        },
        "ipv6": {
            "ipAddress": [{"privateIpAddress": a} for a in v6],
            "subnet": [{"address": "fd00::", "prefix": prefix6}] if v6 else [],
        },
    }


ONE = {"interface": [nic("000D3A123456", ["10.0.0.4"])]}
TWO = {"interface": [
    nic("000D3A123456", ["10.0.0.4", "10.0.0.5", "10.0.0.6"]),
    nic("000D3A654321", ["10.0.1.4", "10.0.1.9"], prefix="26"),
]}


def test_one_nic_dhcp_matched_by_mac_and_driver_without_rename():
    cfg = network_config(ONE)
    assert cfg == {"version": 2, "ethernets": {"nic-000d3a123456": {
        "match": {"macaddress": "00:0d:3a:12:34:56", "driver": "hv_netvsc"},
        "dhcp4": True,
        "dhcp4-overrides": {"route-metric": 100},
        "dhcp6": False,
        # Azure's gateway is the subnet's first host: routes to the platform
        # are rendered by default, so they survive reboots without option 121.
        "routes": [{"to": "168.63.129.16/32", "via": "10.0.0.1"},
                   {"to": "169.254.169.254/32", "via": "10.0.0.1"}],
    }}}
    assert "set-name" not in str(cfg)


def test_current_names_become_ids_and_imds_order_sets_metrics_not_names():
    # Kernel order differs from IMDS order: names stay as the kernel gave them.
    names = {"00:0d:3a:65:43:21": "eth0", "00:0d:3a:12:34:56": "eth1"}
    eth = network_config(TWO, names=names)["ethernets"]
    assert set(eth) == {"eth0", "eth1"}
    primary, secondary = eth["eth1"], eth["eth0"]
    assert primary["match"]["macaddress"] == "00:0d:3a:12:34:56"
    assert primary["dhcp4-overrides"] == {"route-metric": 100}
    assert secondary["dhcp4-overrides"] == {"route-metric": 200, "use-dns": False}
    assert all("set-name" not in dev for dev in eth.values())


def test_secondary_ips_are_static_with_the_subnet_prefix():
    eth = network_config(TWO)["ethernets"]
    assert eth["nic-000d3a123456"]["addresses"] == ["10.0.0.5/24", "10.0.0.6/24"]
    assert eth["nic-000d3a654321"]["addresses"] == ["10.0.1.9/26"]


def test_secondary_ips_can_be_turned_off():
    eth = network_config(TWO, apply_secondary_ips=False)["ethernets"]
    assert all("addresses" not in dev for dev in eth.values())


def test_ipv6_enables_dhcp6_with_the_same_metric_and_static_secondaries():
    data = {"interface": [
        nic("000D3A123456", ["10.0.0.4"], ["fd00::4", "fd00::5"], prefix6="64"),
        nic("000D3A654321", ["10.0.1.4"], ["fd00:1::4"]),
    ]}
    eth = network_config(data)["ethernets"]
    first, second = eth["nic-000d3a123456"], eth["nic-000d3a654321"]
    assert first["dhcp6"] is True
    assert first["dhcp6-overrides"] == {"route-metric": 100}
    assert first["addresses"] == ["fd00::5/64"]
    assert second["dhcp6-overrides"] == {"route-metric": 200, "use-dns": False}


def test_nic_driver_is_configurable_and_can_be_omitted():
    assert network_config(ONE, nic_driver="veth")["ethernets"]["nic-000d3a123456"][
        "match"] == {"macaddress": "00:0d:3a:12:34:56", "driver": "veth"}
    assert network_config(ONE, nic_driver=None)["ethernets"]["nic-000d3a123456"][
        "match"] == {"macaddress": "00:0d:3a:12:34:56"}


def test_interface_without_addresses_is_left_alone():
    data = {"interface": [nic("000D3A123456"), nic("000D3A654321", ["10.0.1.4"])]}
    eth = network_config(data)["ethernets"]
    assert list(eth) == ["nic-000d3a654321"]
    # Its position in IMDS still sets its metric.
    assert eth["nic-000d3a654321"]["dhcp4-overrides"]["route-metric"] == 200


def test_routes_to_the_platform_go_on_the_primary_only():
    eth = network_config(TWO, routes_to_platform=True, gateway="10.0.0.1",
                         wireserver="168.63.129.16")["ethernets"]
    assert eth["nic-000d3a123456"]["routes"] == [
        {"to": "168.63.129.16/32", "via": "10.0.0.1"},
        {"to": "169.254.169.254/32", "via": "10.0.0.1"},
    ]
    assert "routes" not in eth["nic-000d3a654321"]


def test_routes_need_a_gateway_and_explicit_routes_are_merged():
    no_subnet = {"interface": [{"macAddress": "000D3A123456",
                                "ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.4"}]}}]}
    assert "routes" not in network_config(no_subnet)["ethernets"]["nic-000d3a123456"]
    eth = network_config(ONE, routes_to_platform=False,
                         routes=[{"to": "169.254.169.254/32", "via": "10.0.0.1"}])
    assert eth["ethernets"]["nic-000d3a123456"]["routes"] == [
        {"to": "169.254.169.254/32", "via": "10.0.0.1"}]


def test_platform_routes_can_be_turned_off():
    assert "routes" not in network_config(ONE, routes_to_platform=False)["ethernets"][
        "nic-000d3a123456"]


@pytest.mark.parametrize("subnet, gateway", [
    ({"address": "10.0.0.0", "prefix": "24"}, "10.0.0.1"),
    ({"address": "10.1.2.64", "prefix": "26"}, "10.1.2.65"),
    ({"address": "10.1.2.77", "prefix": "26"}, "10.1.2.65"),  # host bits ignored
    ({"address": "10.0.0.0", "prefix": "31"}, None),
    ({"address": "fd00::", "prefix": "64"}, None),
    ({"address": "bogus", "prefix": "24"}, None),
    ({}, None),
])
def test_azure_gateway_is_the_first_host_of_the_subnet(subnet, gateway):
    assert netconfig.azure_gateway({"subnet": [subnet]}) == gateway
    assert netconfig.azure_gateway({}) is None


def test_derived_routes_use_the_primary_nics_subnet_and_the_given_wireserver():
    eth = network_config(TWO, wireserver="168.63.129.99")["ethernets"]
    assert eth["nic-000d3a123456"]["routes"] == [
        {"to": "168.63.129.99/32", "via": "10.0.0.1"},
        {"to": "169.254.169.254/32", "via": "10.0.0.1"}]
    assert "routes" not in eth["nic-000d3a654321"]


def test_the_config_is_valid_for_cloud_init_25_network_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import json
    base = Path(__file__).resolve().parents[2] / ".cache/cloud-init/25.1.4"
    found = list(base.glob("usr/lib/python3/dist-packages/cloudinit/config/schemas/"
                           "schema-network-config-v2.json"))
    if not found:
        pytest.skip("cloud-init 25.1.4 not unpacked")
    schema = json.loads(found[0].read_text())
    cfg = network_config(TWO, routes_to_platform=True, gateway="10.0.0.1")
    jsonschema.validate({"network": cfg}, schema)


@pytest.mark.parametrize("data", [None, {}, {"interface": []}])
def test_missing_network_data_falls_back_to_one_dhcp_nic(data):
    cfg = network_config(data, primary_mac="00:0D:3A:12:34:56",
                         names={"00:0d:3a:12:34:56": "eth0"})
    assert cfg == {"version": 2, "ethernets": {"eth0": {
        "dhcp4": True,
        "match": {"macaddress": "00:0d:3a:12:34:56", "driver": "hv_netvsc"}}}}


def test_fallback_uses_the_first_known_nic_then_eth0():
    cfg = network_config(None, names={"00:0d:3a:aa:bb:cc": "enp0s1"}, nic_driver=None)
    assert cfg["ethernets"] == {"enp0s1": {"dhcp4": True,
                                           "match": {"macaddress": "00:0d:3a:aa:bb:cc"}}}
    assert fallback_config() == {"version": 2, "ethernets": {"eth0": {"dhcp4": True}}}


@pytest.mark.parametrize("data, field", [
    ([], "network"),
    ({"interface": {"macAddress": "x"}}, "network.interface"),
    ({"interface": ["eth0"]}, "network.interface[0]"),
    ({"interface": [{"macAddress": "00:0d"}]}, "network.interface[0].macAddress"),
    ({"interface": [{"macAddress": None}]}, "network.interface[0].macAddress"),
    ({"interface": [{"macAddress": "000D3A123456",
                     "ipv4": {"ipAddress": [{"privateIpAddress": "10.0.0.300"}]}}]},
     "network.interface[0].ipv4.ipAddress[0].privateIpAddress"),
    ({"interface": [{"macAddress": "000D3A123456",
                     "ipv4": {"ipAddress": [{"privateIpAddress": "fd00::1"}]}}]},
     "network.interface[0].ipv4.ipAddress[0].privateIpAddress"),
    ({"interface": [nic("000D3A123456", ["10.0.0.4", "10.0.0.5"], prefix="x")]},
     "network.interface[0].ipv4.subnet[0].prefix"),
    ({"interface": [nic("000D3A123456", ["10.0.0.4"]), nic("000d3a123456", ["10.0.0.5"])]},
     "network.interface[1]"),
])
def test_malformed_imds_shapes_raise_imds_parse_error_naming_the_field(data, field):
    with pytest.raises(ImdsParseError) as err:
        network_config(data)
    assert err.value.supporting_data["detail"].startswith(field + " ")
    assert err.value.reason == "error parsing IMDS metadata"
    # The datasource's path: the same parser, the same rule, a fall-back, no failure.
    cfg, problem = netconfig.network_config_or_fallback(data, primary_mac="00:0d:3a:00:00:01")
    assert problem == str(err.value)
    assert cfg == fallback_config(mac="00:0d:3a:00:00:01")


@pytest.mark.parametrize("prefix", [float("inf"), float("nan"), "\u00b2", "\u2460",
                                    "9" * 5000, -1, 129, True, "24.0", None])
def test_any_prefix_is_rendered_or_falls_back_never_raises(prefix):
    data = {"interface": [nic("000D3A123456", ["10.0.0.4", "10.0.0.5"], prefix=prefix)]}
    cfg, problem = netconfig.network_config_or_fallback(data, primary_mac="00:0d:3a:12:34:56")
    dev = next(iter(cfg["ethernets"].values()))
    assert dev["match"]["macaddress"] == "00:0d:3a:12:34:56"
    if problem is None:
        assert prefix is None and dev["addresses"] == ["10.0.0.5/24"]
    else:
        assert "prefix" in problem and "addresses" not in dev


def test_a_broken_primary_mac_still_gives_a_fallback():
    cfg, problem = netconfig.network_config_or_fallback([], primary_mac="zz")
    assert problem and cfg == fallback_config()


def test_normalize_mac_forms():
    assert normalize_mac("000D3A123456") == "00:0d:3a:12:34:56"
    assert normalize_mac("00-0D-3A-12-34-56") == "00:0d:3a:12:34:56"
    assert normalize_mac("00:0d:3a:12:34:56") == "00:0d:3a:12:34:56"


def test_names_by_mac_reexported_for_the_datasource(tmp_path):
    net = tmp_path / "sys/class/net"
    for name, mac, driver in (("eth0", "00:0d:3a:12:34:56", "hv_netvsc"),
                              ("enP1s1", "00:0d:3a:12:34:56", "mlx5_core")):
        (net / name / "device").mkdir(parents=True)
        (net / name / "address").write_text(mac + "\n")
        os.symlink(f"../../../bus/drivers/{driver}", net / name / "device" / "driver")
    assert netconfig.names_by_mac(net) == {"00:0d:3a:12:34:56": "eth0"}


def test_pure_core_does_not_import_cloudinit():
    import subprocess
    code = ("import sys, cloudinit_azure.network.netconfig, cloudinit_azure.network;"
            "sys.exit(any(m == 'cloudinit' or m.startswith('cloudinit.') for m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_unusable_imds_network_falls_back_to_dhcp_on_the_primary_nic():
    cfg, problem = netconfig.network_config_or_fallback(
        {"interface": "not a list"}, primary_mac="00:0d:3a:12:34:56", nic_driver=None)
    assert problem and "network.interface" in problem
    assert cfg == {"version": 2, "ethernets": {"eth0": {
        "dhcp4": True, "match": {"macaddress": "00:0d:3a:12:34:56"}}}}
    good, problem = netconfig.network_config_or_fallback(None, primary_mac=None)
    assert problem is None and good["version"] == 2
