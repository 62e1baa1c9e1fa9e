"""Routes to the platform, NIC classification, host name publishing, module adapter."""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from defusedxml.ElementTree import fromstring

from cloudinit_azure import network
from cloudinit_azure.network import (
    Route,
    classify_nics,
    detect_dhcp_client,
    ensure_dhclient_hostname,
    ensure_dhcpcd_hostname,
    mask_persistent_net_rules,
    names_by_mac,
    parse_classless_routes,
    parse_lease,
    platform_routes,
    render_role_properties,
)
from cloudinit_azure.report import ConfigError
from cloudinit_azure.runner import Result
from tests.fakes import FakeRunner, fake_host

LOG = logging.getLogger("test")

# ---------------------------------------------------------------- fakes ----


def _no_kill(pid, sig):
    raise AssertionError(f"unexpected kill({pid}, {sig})")


def _publish(*args, **kwargs):
    return network.publish_hostname(*args, kill=_no_kill, **kwargs)


def _configure(*args, **kwargs):
    return network.configure(*args, kill=_no_kill, **kwargs)


def make_nic(net: Path, name, mac, driver=None, master=None, ifindex=None):
    d = net / name
    d.mkdir(parents=True)
    (d / "address").write_text(mac + "\n")
    (d / "type").write_text("772\n" if name == "lo" else "1\n")
    if ifindex is not None:
        (d / "ifindex").write_text(f"{ifindex}\n")
    if driver:
        (d / "device").mkdir()
        os.symlink(f"../../../../bus/vmbus/drivers/{driver}", d / "device" / "driver")
    if master:
        os.symlink(f"../{master}", d / "master")


DHCLIENT_LEASES = """\
lease {
  interface "eth0";
  fixed-address 10.0.0.4;
  option subnet-mask 255.255.255.0;
  option routers 10.0.0.254;
  option unknown-245 a8:3f:81:11;
  renew 4 2023/01/01 00:00:00;
}
lease {
  interface "eth1";
  fixed-address 10.0.1.4;
  option routers 10.0.1.1;
}
lease {
  interface "eth0";
  fixed-address 10.0.0.4;
  option subnet-mask 255.255.255.0;
  option routers 10.0.0.1;
  option rfc3442-classless-static-routes @R121@;
  option dhcp-lease-time 4294967295;
  option domain-name-servers 168.63.129.16;
  option unknown-245 a8:3f:81:10;
  renew 6 2135/02/07 09:25:20;
}
""".replace("@R121@", "0,10,0,0,1,32,168,63,129,16,10,0,0,1,32,169,254,169,254,10,0,0,1")

DHCPCD_DUMP = """\
broadcast_address='10.0.0.255'
dhcp_lease_time='4294967295'
dhcp_server_identifier='168.63.129.16'
domain_name_servers='168.63.129.16'
ip_address='10.0.0.4'
network_number='10.0.0.0'
routers='10.0.0.1'
classless_static_routes='0.0.0.0/0 10.0.0.1 168.63.129.16/32 10.0.0.1'
subnet_cidr='24'
subnet_mask='255.255.255.0'
"""

NETWORKD_LEASE = """\
# This is private data. Do not parse.
ADDRESS=10.0.0.4
NETMASK=255.255.255.0
ROUTER=10.0.0.1
SERVER_ADDRESS=168.63.129.16
LIFETIME=4294967295
DNS=168.63.129.16
CLASSLESS_ROUTES=0.0.0.0/0,10.0.0.1 169.254.169.254/32,10.0.0.1
OPTION_245=A83F8110
"""

# --------------------------------------------------------- lease parsing ----


def test_dhclient_lease_newest_block_for_the_interface():
    lease = parse_lease(DHCLIENT_LEASES, "dhclient", "eth0")
    assert lease["interface"] == "eth0"
    assert lease["address"] == "10.0.0.4"
    assert lease["routers"] == ["10.0.0.1"]
    assert lease["classless_routes"] == [
        ("0.0.0.0/0", "10.0.0.1"), ("168.63.129.16/32", "10.0.0.1"),
        ("169.254.169.254/32", "10.0.0.1")]
    assert lease["wireserver"] == "168.63.129.16"
    assert parse_lease(DHCLIENT_LEASES, "dhclient", "eth1")["routers"] == ["10.0.1.1"]
    assert parse_lease(DHCLIENT_LEASES, "dhclient")["interface"] == "eth0"


def test_dhclient_unknown_121_hex_and_one_digit_245():
    text = ('lease {\n interface "eth0";\n option routers 10.0.0.1;\n'
            ' option unknown-121 20:a8:3f:81:10:a:0:0:1;\n option unknown-245 a8:3f:81:a;\n}\n')
    lease = parse_lease(text, "dhclient", "eth0")
    assert lease["classless_routes"] == [("168.63.129.16/32", "10.0.0.1")]
    assert lease["wireserver"] == "168.63.129.10"


def test_dhcpcd_dump():
    lease = parse_lease(DHCPCD_DUMP, "dhcpcd", "eth0")
    assert lease["interface"] == "eth0"
    assert lease["address"] == "10.0.0.4"
    assert lease["routers"] == ["10.0.0.1"]
    assert lease["classless_routes"] == [("0.0.0.0/0", "10.0.0.1"),
                                         ("168.63.129.16/32", "10.0.0.1")]
    assert lease["wireserver"] is None


def test_networkd_lease():
    lease = parse_lease(NETWORKD_LEASE, "networkd", "eth0")
    assert lease["address"] == "10.0.0.4"
    assert lease["routers"] == ["10.0.0.1"]
    assert lease["classless_routes"] == [("0.0.0.0/0", "10.0.0.1"),
                                         ("169.254.169.254/32", "10.0.0.1")]
    assert lease["wireserver"] == "168.63.129.16"


@pytest.mark.parametrize("kind", ["dhclient", "dhcpcd", "networkd"])
def test_empty_lease_text_gives_empty_fields(kind):
    lease = parse_lease("", kind, "eth0")
    assert lease["routers"] == [] and lease["classless_routes"] == []
    assert lease["wireserver"] is None


def test_unknown_lease_kind_is_an_error():
    with pytest.raises(ValueError):
        parse_lease("", "pump")


@pytest.mark.parametrize("value, expected", [
    ("32,168,63,129,16,10,0,0,1", [("168.63.129.16/32", "10.0.0.1")]),
    ("24,10,1,2,10,0,0,1", [("10.1.2.0/24", "10.0.0.1")]),
    ("0,10,0,0,1;", [("0.0.0.0/0", "10.0.0.1")]),
    ("32.168.63.129.16 10.0.0.1,0 10.0.0.1",
     [("168.63.129.16/32", "10.0.0.1"), ("0.0.0.0/0", "10.0.0.1")]),
    ("20:a8:3f:81:10:a:0:0:1", [("168.63.129.16/32", "10.0.0.1")]),
    ("168.63.129.16/32,10.0.0.1 0.0.0.0/0,10.0.0.1",
     [("168.63.129.16/32", "10.0.0.1"), ("0.0.0.0/0", "10.0.0.1")]),
    # truncated second entry: keep what parsed
    ("32,168,63,129,16,10,0,0,1,32,169,254", [("168.63.129.16/32", "10.0.0.1")]),
    ("33,1,2,3,4,5,6,7,8,9", []),
    ("garbage", []),
])
def test_classless_route_formats(value, expected):
    assert parse_classless_routes(value) == expected


def test_dhcp_packet_option_reads_245_from_a_binary_lease():
    packet = bytes(236) + b"\x63\x82\x53\x63" + b"\x35\x01\x05" + b"\x00" \
        + b"\xf5\x04\xa8\x3f\x81\x10" + b"\xff"
    assert network.dhcp_packet_option(packet, 245) == b"\xa8\x3f\x81\x10"
    assert network.dhcp_packet_option(packet, 121) is None

# ------------------------------------------------------- route decisions ----


def test_no_option_121_routes_both_endpoints_via_the_router():
    lease = {"interface": "eth0", "routers": ["10.0.0.1"], "classless_routes": []}
    assert platform_routes(lease, "168.63.129.16") == [
        Route("168.63.129.16/32", "10.0.0.1", "eth0"),
        Route("169.254.169.254/32", "10.0.0.1", "eth0"),
    ]


def test_option_121_covering_both_adds_nothing():
    lease = parse_lease(DHCLIENT_LEASES, "dhclient", "eth0")
    assert platform_routes(lease, "168.63.129.16") == []


def test_partial_option_121_adds_only_the_missing_route():
    lease = parse_lease(DHCPCD_DUMP, "dhcpcd", "eth0")  # wireserver only
    assert platform_routes(lease, "168.63.129.16") == [
        Route("169.254.169.254/32", "10.0.0.1", "eth0")]


def test_default_route_in_option_121_does_not_cover_and_gives_the_gateway():
    lease = {"interface": "eth0", "routers": [], "classless_routes": [("0.0.0.0/0", "10.0.0.9")]}
    assert [r.gateway for r in platform_routes(lease, "168.63.129.16")] == ["10.0.0.9"] * 2


def test_a_wider_specific_route_covers():
    lease = {"routers": ["10.0.0.1"], "classless_routes": [("168.63.0.0/16", "10.0.0.1")]}
    assert [r.destination for r in platform_routes(lease, "168.63.129.16")] == [
        "169.254.169.254/32"]


def test_other_wireserver_address_and_no_gateway():
    lease = {"routers": ["10.0.0.1"], "classless_routes": [("168.63.129.16/32", "10.0.0.1")]}
    dsts = [r.destination for r in platform_routes(lease, "168.63.129.17", interface="eth2")]
    assert dsts == ["168.63.129.17/32", "169.254.169.254/32"]
    assert platform_routes({"routers": [], "classless_routes": []}, "168.63.129.16") == []


def test_routes_render_as_v2_and_as_idempotent_ip_route_replace():
    route = Route("168.63.129.16/32", "10.0.0.1", "eth0")
    assert route.v2() == {"to": "168.63.129.16/32", "via": "10.0.0.1"}
    assert route.command() == ["ip", "route", "replace", "168.63.129.16/32",
                               "via", "10.0.0.1", "dev", "eth0"]


def test_apply_routes_reports_failures_and_survives_a_missing_ip():
    routes = [Route("168.63.129.16/32", "10.0.0.1", "eth0"),
              Route("169.254.169.254/32", "10.0.0.1", "eth0")]
    runner = FakeRunner({("ip", "route", "replace", "169.254.169.254/32"):
                         Result(2, "", "RTNETLINK answers: Network is unreachable")})
    assert network.apply_routes(routes, runner, LOG) == routes[:1]
    assert network.apply_routes(routes, FakeRunner(missing={"ip"}), LOG) == []


def test_parse_default_gateway():
    out = "default via 10.0.0.1 dev eth0 proto dhcp src 10.0.0.4 metric 100\n"
    assert network.parse_default_gateway(out) == "10.0.0.1"
    assert network.parse_default_gateway("") is None

# ------------------------------------------------------------------ NICs ----


def test_vf_sharing_the_synthetic_mac_is_flagged_and_excluded(tmp_path):
    net = tmp_path / "sys/class/net"
    make_nic(net, "lo", "00:00:00:00:00:00", ifindex=1)
    make_nic(net, "eth0", "00:0d:3a:12:34:56", "hv_netvsc", ifindex=2)
    make_nic(net, "enP1s1", "00:0d:3a:12:34:56", "mlx5_core", master="eth0", ifindex=4)
    make_nic(net, "eth1", "00:0d:3a:65:43:21", "hv_netvsc", ifindex=3)
    nics = classify_nics(net)
    assert [(n.name, n.driver, n.is_vf, n.master) for n in nics] == [
        ("eth0", "hv_netvsc", False, None),
        ("eth1", "hv_netvsc", False, None),
        ("enP1s1", "mlx5_core", True, "eth0"),
    ]
    assert names_by_mac(net) == {"00:0d:3a:12:34:56": "eth0", "00:0d:3a:65:43:21": "eth1"}
    assert network.primary_nic(nics).name == "eth0"
    assert network.primary_nic(nics, "000D3A654321").name == "eth1"


def test_vf_seen_before_it_is_enslaved_is_still_a_vf(tmp_path):
    net = tmp_path / "sys/class/net"
    make_nic(net, "enP2s2", "00:0d:3a:12:34:56", "mana", ifindex=2)
    make_nic(net, "eth0", "00:0d:3a:12:34:56", "hv_netvsc", ifindex=3)
    assert [(n.name, n.is_vf) for n in classify_nics(net)] == [
        ("enP2s2", True), ("eth0", False)]
    assert names_by_mac(net) == {"00:0d:3a:12:34:56": "eth0"}


def test_virtual_nic_has_no_driver_and_is_not_a_vf(tmp_path):
    net = tmp_path / "sys/class/net"
    make_nic(net, "eth0", "0e:11:22:33:44:55")
    (nic,) = classify_nics(net)
    assert nic.driver is None and not nic.is_vf
    assert classify_nics(tmp_path / "missing") == []


def test_mask_persistent_net_rules_is_idempotent(tmp_path):
    for _ in range(3):
        assert mask_persistent_net_rules(tmp_path, LOG) is True
    link = tmp_path / network.PERSISTENT_NET_GENERATOR
    assert os.readlink(link) == "/dev/null"


def test_mask_persistent_net_rules_leaves_a_real_file(tmp_path):
    path = tmp_path / network.PERSISTENT_NET_GENERATOR
    path.parent.mkdir(parents=True)
    path.write_text("# distro rules\n")
    assert mask_persistent_net_rules(tmp_path, LOG) is False
    assert path.read_text() == "# distro rules\n"


STALE_RULES = ('SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="00:0d:3a:00:00:01", '
               'NAME="eth0"\n')


def test_stale_persistent_net_rules_are_moved_aside_not_deleted(tmp_path):
    path = tmp_path / network.PERSISTENT_NET_RULES
    path.parent.mkdir(parents=True)
    path.write_text(STALE_RULES)
    moved = network.remove_stale_net_rules(tmp_path, LOG)
    assert not path.exists()
    assert moved == tmp_path / "var/lib/cloudinit-azure/70-persistent-net.rules.stale"
    assert moved.read_text() == STALE_RULES
    assert network.remove_stale_net_rules(tmp_path, LOG) is None  # nothing left to move


def test_a_masked_persistent_net_rules_link_is_left_alone(tmp_path):
    path = tmp_path / network.PERSISTENT_NET_RULES
    path.parent.mkdir(parents=True)
    path.symlink_to("/dev/null")
    assert network.remove_stale_net_rules(tmp_path, LOG) is None
    assert os.readlink(path) == "/dev/null"

# ------------------------------------------------------------- host name ----


def test_detect_client_prefers_running_processes(tmp_path):
    for pid, comm in ((1, "systemd"), (300, "dhclient"), (200, "NetworkManager")):
        (tmp_path / "proc" / str(pid)).mkdir(parents=True)
        (tmp_path / "proc" / str(pid) / "comm").write_text(comm + "\n")
    assert detect_dhcp_client(tmp_path) == "networkmanager"


@pytest.mark.parametrize("comm, kind", [
    ("systemd-network", "networkd"), ("dhcpcd", "dhcpcd"), ("dhclient", "dhclient"),
    ("udhcpc", "udhcpc"),
])
def test_detect_client_by_process(tmp_path, comm, kind):
    (tmp_path / "proc/42").mkdir(parents=True)
    (tmp_path / "proc/42/comm").write_text(comm + "\n")
    assert detect_dhcp_client(tmp_path) == kind


def test_detect_client_by_lease_files_then_binaries_then_none(tmp_path):
    assert detect_dhcp_client(tmp_path) is None
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/sbin/dhcpcd").write_text("")
    assert detect_dhcp_client(tmp_path) == "dhcpcd"
    (tmp_path / "var/lib/dhcp").mkdir(parents=True)
    (tmp_path / "var/lib/dhcp/dhclient.eth0.leases").write_text(DHCLIENT_LEASES)
    assert detect_dhcp_client(tmp_path) == "dhclient"


DEBIAN_DHCLIENT_CONF = """\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;

send host-name = gethostname();
request subnet-mask, broadcast-address, time-offset, routers;
"""


@pytest.mark.parametrize("start", ["", DEBIAN_DHCLIENT_CONF, 'send host-name "old";',
                                   "timeout 300;"])
def test_dhclient_conf_edit_is_idempotent_over_three_runs(start):
    once = ensure_dhclient_hostname(start)
    assert ensure_dhclient_hostname(ensure_dhclient_hostname(once)) == once
    assert once.count("send host-name = gethostname();") == 1
    assert "old" not in once
    if start == DEBIAN_DHCLIENT_CONF:
        assert once == DEBIAN_DHCLIENT_CONF  # already right: untouched
    if start == "timeout 300;":
        assert once.startswith("timeout 300;\n")


def test_dhclient_conf_literal_name():
    text = ensure_dhclient_hostname(DEBIAN_DHCLIENT_CONF, "vm1")
    assert 'send host-name "vm1";' in text and "gethostname" not in text


@pytest.mark.parametrize("start", ["", "hostname\n", "hostname old\n",
                                   "# hostname\nduid\n", "hostname_short\n"])
def test_dhcpcd_conf_edit_is_idempotent_over_three_runs(start):
    once = ensure_dhcpcd_hostname(start)
    assert ensure_dhcpcd_hostname(ensure_dhcpcd_hostname(once)) == once
    lines = once.splitlines()
    assert lines.count("hostname") == 1
    if "# hostname" in start:
        assert "# hostname" in lines
    if start == "hostname_short\n":
        assert "hostname_short" in lines


def _root_with(tmp_path, comm=None):
    net = tmp_path / "sys/class/net"
    make_nic(net, "eth0", "00:0d:3a:12:34:56", "hv_netvsc", ifindex=2)
    if comm:
        (tmp_path / "proc/99").mkdir(parents=True)
        (tmp_path / "proc/99/comm").write_text(comm + "\n")
    return tmp_path


def test_publish_with_dhclient_never_releases_and_is_idempotent(tmp_path):
    root = _root_with(tmp_path, "dhclient")
    (root / "etc/dhcp").mkdir(parents=True)
    (root / "etc/dhcp/dhclient.conf").write_text("timeout 300;\n")
    (root / "var/lib/dhcp").mkdir(parents=True)
    (root / "var/lib/dhcp/dhclient.eth0.leases").write_text(DHCLIENT_LEASES)
    results = []
    for _ in range(3):
        runner = FakeRunner()
        results.append(_publish(root, "eth0", "vm1", runner, LOG))
    assert results[0].files_changed == (str(root / "etc/dhcp/dhclient.conf"),)
    assert results[1].files_changed == results[2].files_changed == ()
    assert all(r.renewed and r.client == "dhclient" for r in results)
    conf = (root / "etc/dhcp/dhclient.conf").read_text()
    assert conf.count("send host-name = gethostname();") == 1
    request, stop = runner.calls
    assert request[:3] == ["dhclient", "-1", "-v"] and request[-1] == "eth0"
    assert request[request.index("-sf") + 1] == "/bin/true"
    assert request[request.index("-cf") + 1] == str(root / "etc/dhcp/dhclient.conf")
    assert stop[:2] == ["dhclient", "-x"]
    assert all("-r" not in call for call in runner.calls)
    # the one-shot starts from the current lease (INIT-REBOOT keeps the address)
    copied = Path(request[request.index("-lf") + 1]).read_text()
    assert "fixed-address 10.0.0.4" in copied and "10.0.0.254" not in copied


def test_publish_with_dhcpcd_rebinds_only_when_running(tmp_path):
    root = _root_with(tmp_path, "dhcpcd")
    runner = FakeRunner()
    result = _publish(root, "eth0", "vm1", runner, LOG)
    assert result.renewed and runner.calls == [["dhcpcd", "--rebind", "eth0"]]
    assert "hostname" in (root / "etc/dhcpcd.conf").read_text().splitlines()
    runner = FakeRunner()
    result = _publish(root, "eth0", "vm1", runner, LOG, client="dhcpcd")
    assert result.files_changed == ()


# What Debian 13's netplan 1.1 generates (netplan generate over the image's
# 90-default.yaml and the 50-cloud-init.yaml cloud-init 25.1.4 renders from our
# network config): the default's wildcard files sort before cloud-init's.
NETPLAN_ALL_ETH = ("[Match]\nName=eth*\n\n[Network]\nDHCP=yes\nLinkLocalAddressing=ipv6\n\n"
                   "[DHCP]\nRouteMetric=100\nUseMTU=true\nUseDomains=true\n")
NETPLAN_ETH0 = ("[Match]\nDriver=virtio_net\nPermanentMACAddress=00:0d:3a:12:34:56\n\n"
                "[Network]\nDHCP=ipv4\nLinkLocalAddressing=ipv6\n\n"
                "[Route]\nDestination=168.63.129.16/32\nGateway=10.0.0.1\n")
NETWORKD_LINK_STATE = """\
# This is private data. Do not parse.
ADMIN_STATE=configured
OPER_STATE=routable
NETWORK_FILE=/run/systemd/network/10-netplan-all-eth.network
NETWORK_FILE_DROPINS=""
"""


def _netplan_root(tmp_path, files=("all-en", "all-eth", "eth0"), state=None):
    root = _root_with(tmp_path, "systemd-network")
    run = root / "run/systemd/network"
    run.mkdir(parents=True)
    texts = {"all-en": NETPLAN_ALL_ETH.replace("eth*", "en*"), "all-eth": NETPLAN_ALL_ETH,
             "eth0": NETPLAN_ETH0}
    for name in files:
        (run / f"10-netplan-{name}.network").write_text(texts[name])
    if state is not None:
        (root / "run/systemd/netif/links").mkdir(parents=True)
        (root / "run/systemd/netif/links/2").write_text(state)
    return root


def test_networkd_publish_reads_networkds_own_state_and_needs_no_dbus(tmp_path, caplog):
    # cloud-init's network stage runs before dbus.socket: any networkctl call
    # there fails with "Failed to connect to system bus" (the Debian 13 boot's
    # WARNING). The state file networkd writes names the file it applied.
    root = _netplan_root(tmp_path, state=NETWORKD_LINK_STATE)
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            runner = FakeRunner()
            result = _publish(root, "eth0", "vm1", runner, LOG)
            assert runner.calls == []  # no networkctl: no D-Bus needed, no renewal
    dropin = root / "etc/systemd/network/10-netplan-all-eth.network.d/50-azure-hostname.conf"
    assert dropin.read_text().endswith("[DHCPv4]\nSendHostname=yes\nHostname=vm1\n")
    assert result.client == "networkd" and result.files_changed == () and not result.renewed
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_networkd_file_found_by_scanning_what_netplan_generates(tmp_path):
    # No state file yet: the scan follows networkd's rules, so the wildcard
    # Name=eth* file that sorts first wins, as it does for networkd.
    root = _netplan_root(tmp_path)
    assert network.network_file_for(root, "eth0") == "10-netplan-all-eth.network"
    # cloud-init's file alone: netplan matches by PermanentMACAddress= and Driver=
    root = _netplan_root(tmp_path / "own", files=("eth0",))
    assert network.network_file_for(root, "eth0") is None  # driver hv_netvsc != virtio_net
    assert network.find_network_file(root, "eth0", "00:0d:3a:12:34:56",
                                     "virtio_net") == "10-netplan-eth0.network"
    assert network.find_network_file(root, "eth0", "00:0d:3a:12:34:57", "virtio_net") is None


def test_networkd_etc_file_hides_the_run_file_of_the_same_name(tmp_path):
    root = _netplan_root(tmp_path, files=("all-eth",))
    etc = root / "etc/systemd/network"
    etc.mkdir(parents=True)
    (etc / "10-netplan-all-eth.network").write_text("[Match]\nName=eth9\n")
    (etc / "20-eth0.network").write_text("[Match]\nName=eth0\n")
    assert network.find_network_file(root, "eth0") == "20-eth0.network"


@pytest.mark.parametrize("match, expected", [
    ("", True),                                      # no [Match]: every link
    ("[Match]\nName=en* eth*\n", True),
    ("[Match]\nName=!eth*\n", False),
    ("[Match]\nName=eth*\nDriver=mlx5_core\n", False),  # every condition must hold
    ("[Match]\nMACAddress=00:0D:3A:12:34:56\n", True),
    ("[Match]\nPermanentMACAddress=00:0d:3a:12:34:57\n", False),
    ("[Match]\nName=eth0\nPath=pci-0000:00:03.0\n", None),  # cannot tell: not chosen
    ("[Network]\nName=eth9\n[Match]\nType=ether\n", True),   # only [Match] counts
])
def test_networkd_match_rules(match, expected):
    assert network.file_matches(match, "eth0", "00:0d:3a:12:34:56", "hv_netvsc") is expected


def test_networkd_without_a_file_for_the_nic_is_one_clear_warning(tmp_path, caplog):
    root = _netplan_root(tmp_path, files=("all-en",))
    runner = FakeRunner()
    with caplog.at_level(logging.INFO):
        result = _publish(root, "eth0", "vm1", runner, LOG)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["systemd-networkd runs but no .network file matches eth0: host name "
                        "not published to Azure DNS"]
    assert result.files_changed == () and runner.calls == []
    assert not (root / "etc/systemd/network").exists()


def test_networkd_state_parser_ignores_comments_and_quotes():
    state = network.parse_state(NETWORKD_LINK_STATE)
    assert state["NETWORK_FILE"] == "/run/systemd/network/10-netplan-all-eth.network"
    assert state["NETWORK_FILE_DROPINS"] == "" and "# This is private data. Do not parse." \
        not in state


def test_publish_with_networkmanager_sets_the_profile_and_does_not_reapply(tmp_path):
    root = _root_with(tmp_path, "NetworkManager")
    runner = FakeRunner({("nmcli", "-g", "GENERAL.CONNECTION"): Result(0, "cloud-init eth0\n",
                                                                       "")})
    result = _publish(root, "eth0", "vm1", runner, LOG)
    assert ["nmcli", "connection", "modify", "cloud-init eth0", "ipv4.dhcp-send-hostname",
            "yes", "ipv4.dhcp-hostname", "vm1"] in runner.calls
    assert not any("reapply" in call or "down" in call for call in runner.calls)
    assert not result.renewed


def test_publish_without_a_client_is_an_info_line(tmp_path, caplog):
    runner = FakeRunner()
    with caplog.at_level(logging.INFO):
        assert _publish(tmp_path, "eth0", "vm1", runner, LOG).client is None
    assert runner.calls == []
    assert "host name" in caplog.text


def _busybox(root):
    path = root / "usr/bin/busybox"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF...\0ash\0udhcpc\0vi\0")
    path.chmod(0o755)
    return path


def test_udhcpc_is_detected_by_busybox_applet_and_sends_the_name_once(tmp_path):
    busybox = _busybox(tmp_path)
    assert detect_dhcp_client(tmp_path) == "udhcpc"
    runner = FakeRunner({("ip", "-4", "-o", "addr", "show", "dev", "eth0"): Result(
        0, "2: eth0    inet 10.0.0.4/24 brd 10.0.0.255 scope global eth0\n", "")})
    result = _publish(tmp_path, "eth0", "vm1", runner, LOG)
    assert result.client == "udhcpc" and result.renewed
    assert runner.calls[-1] == [str(busybox), "udhcpc", "-i", "eth0", "-n", "-q", "-f",
                                "-t", "3", "-T", "1", "-r", "10.0.0.4",
                                "-x", "hostname:vm1", "-s", "/bin/true"]
    # Never a release, never a script that configures the NIC.
    assert not any("-R" in c or "release" in c for c in runner.calls)


def test_udhcpc_without_an_address_or_name_sends_nothing(tmp_path, caplog):
    _busybox(tmp_path)
    runner = FakeRunner()
    with caplog.at_level(logging.INFO):
        result = _publish(tmp_path, "eth0", "vm1", runner, LOG)
    assert not result.renewed and "no IPv4 address on eth0" in caplog.text
    assert [c[0] for c in runner.calls] == ["ip"]


def test_publish_with_dhclient_missing_binary_does_not_crash(tmp_path):
    root = _root_with(tmp_path, "dhclient")
    result = _publish(root, "eth0", None, FakeRunner(missing={"dhclient"}), LOG)
    assert result.client == "dhclient" and not result.renewed


def test_hostname_helpers():
    assert network.hostname_from("vm1.example.com") == "vm1"
    assert network.hostname_from(SimpleNamespace(hostname="vm2", is_default=False)) == "vm2"
    assert network.hostname_from(("vm3", False)) == "vm3"
    assert network.hostname_from("") is None
    assert network.configured_hostname({"fqdn": "a.b.c"}) == "a"
    assert network.configured_hostname({}, lambda: ("vm4", False)) == "vm4"
    assert network.configured_hostname({}, None) is None

    def broken():
        raise RuntimeError("no host name")
    assert network.configured_hostname({}, broken) is None


def test_check_hostname_uses_the_account_validator():
    from cloudinit_azure.report import UserConfigError
    assert network.check_hostname("vm-1") == "vm-1"
    with pytest.raises(UserConfigError):
        network.check_hostname('vm"; evil')

# --------------------------------------------------------------- watcher ----


def test_watcher_units_are_written_once_and_enabled_by_link(tmp_path):
    assert network.install_watcher(tmp_path, "/usr/bin/python3") is True
    assert network.install_watcher(tmp_path, "/usr/bin/python3") is False
    assert network.install_watcher(tmp_path, "/usr/bin/python3") is False
    units = tmp_path / "etc/systemd/system"
    path_unit = (units / "azure-hostname-publish.path").read_text()
    assert "PathChanged=/etc/hostname" in path_unit
    assert "Unit=azure-hostname-publish.service" in path_unit
    service = (units / "azure-hostname-publish.service").read_text()
    assert "Type=oneshot" in service
    assert "ExecStart=/usr/bin/python3 -m cloudinit_azure.network publish" in service
    assert os.readlink(units / "multi-user.target.wants/azure-hostname-publish.path") == \
        "/etc/systemd/system/azure-hostname-publish.path"


def test_main_publish_reads_etc_hostname(tmp_path):
    root = _root_with(tmp_path, "dhcpcd")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("vm9\n")
    runner = FakeRunner()
    from cloudinit_azure.network.__main__ import main

    assert main(["publish", "--root", str(root)], fake_host(root, runner)) == 0
    assert runner.calls == [["dhcpcd", "--rebind", "eth0"]]

# --------------------------------------------------- host key thumbprint ----


def test_thumbprint_and_role_properties_xml():
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(range(32))
    import base64
    pub = f"ssh-ed25519 {base64.b64encode(blob).decode()} root@vm\n"
    thumb = network.host_key_thumbprint(pub)
    assert thumb == hashlib.sha1(blob).hexdigest().upper()  # noqa: S324
    body = render_role_properties("c-1", "i<1>", thumb)
    root = fromstring(body)
    assert root.tag == "RoleProperties"
    assert root.findtext("Container/ContainerId") == "c-1"
    inst = root.find("Container/RoleInstances/RoleInstance")
    assert inst.findtext("Id") == "i<1>"
    prop = inst.find("Properties/Property")
    assert prop.attrib == {"name": "CertificateThumbprint", "value": thumb}
    with pytest.raises(ValueError):
        network.host_key_thumbprint("ssh-ed25519 not!base64")


def test_report_host_key_posts_with_the_injected_callable(tmp_path):
    sent = []
    assert network.report_host_key(tmp_path, sent.append, "c", "i", log=LOG) is False
    (tmp_path / "etc/ssh").mkdir(parents=True)
    (tmp_path / "etc/ssh/ssh_host_rsa_key.pub").write_text("ssh-rsa AAAAB3NzaC1yc2E= x\n")
    assert network.report_host_key(tmp_path, sent.append, "c", "i", log=LOG) is True
    assert b"<ContainerId>c</ContainerId>" in sent[0]


def test_wireserver_role_properties_uses_the_project_client(monkeypatch):
    from cloudinit_azure.wireserver import WireserverClient

    posted = []
    client = WireserverClient(http=SimpleNamespace(post=lambda path, body, headers: posted.append(
        (path, body, headers))))
    goal = SimpleNamespace(container_id="c-9", instance_id="i-9")
    monkeypatch.setattr(client, "goal_state", lambda: goal)
    post, cid, iid = network.wireserver_role_properties("168.63.129.16", client=client)
    post(b"<x/>")
    assert (cid, iid) == ("c-9", "i-9")
    assert posted[0][:2] == ("/machine?comp=roleProperties", b"<x/>")
    assert posted[0][2]["x-ms-version"] == "2012-11-30"
    assert posted[0][2]["Content-Type"].startswith("text/xml")

# ------------------------------------------------- orchestration, schema ----


def _settings(**override):
    from cloudinit_azure import settings
    return settings.load("azure_network", {"azure_network": override})


def test_schema_defaults():
    assert _settings() == {
        "platform_routes": {"enabled": True},
        "publish_hostname": {"enabled": True, "watch": False},
        "mask_persistent_net_rules": True,
        "report_host_key_fingerprints": False,
        "host_key_type": None,
    }


@pytest.mark.parametrize("cfg, key", [
    ({"bogus": 1}, "azure_network"),
    ({"platform_routes": {"enabled": "yes"}}, "azure_network.platform_routes.enabled"),
    ({"publish_hostname": {"watch": 1}}, "azure_network.publish_hostname.watch"),
    ({"publish_hostname": {"enable": True}}, "azure_network.publish_hostname"),
    ({"mask_persistent_net_rules": "no"}, "azure_network.mask_persistent_net_rules"),
    ({"report_host_key_fingerprints": None}, "azure_network.report_host_key_fingerprints"),
])
def test_schema_errors_name_the_key(cfg, key):
    with pytest.raises(ConfigError) as err:
        _settings(**cfg)
    assert f"at {key}:" in str(err.value)


def test_configure_adds_missing_routes_publishes_and_masks(tmp_path):
    root = _root_with(tmp_path, "dhclient")
    (root / "var/lib/dhcp").mkdir(parents=True)
    (root / "var/lib/dhcp/dhclient.eth0.leases").write_text(
        'lease {\n interface "eth0";\n fixed-address 10.0.0.4;\n option routers 10.0.0.1;\n'
        ' option unknown-245 a8:3f:81:11;\n}\n')
    runner = FakeRunner()
    out = _configure(_settings(publish_hostname={"watch": True}), root=root,
                            runner=runner, hostname="vm1", python="/usr/bin/python3", log=LOG)
    assert out.masked is True
    # option 245 from the lease names the wireserver when the datasource does not
    assert [r.destination for r in out.routes] == ["168.63.129.17/32", "169.254.169.254/32"]
    assert ["ip", "route", "replace", "168.63.129.17/32", "via", "10.0.0.1", "dev",
            "eth0"] in runner.calls
    assert out.published.renewed and out.watcher_changed is True
    assert ["systemctl", "start", "--no-block", "azure-hostname-publish.path"] in runner.calls
    assert out.key_reported is None


def test_configure_uses_the_datasource_wireserver_and_ip_route_fallback(tmp_path):
    root = _root_with(tmp_path, "udhcpc")
    runner = FakeRunner({("ip", "-4", "route", "show", "default"): Result(
        0, "default via 10.0.0.1 dev eth0 metric 100\n", "")})
    out = _configure(_settings(mask_persistent_net_rules=False,
                                      publish_hostname={"enabled": False}),
                            root=root, runner=runner, wireserver="168.63.129.16", log=LOG)
    assert out.masked is None and out.published is None
    assert [r.destination for r in out.routes] == ["168.63.129.16/32", "169.254.169.254/32"]
    assert not (root / network.PERSISTENT_NET_GENERATOR).exists()


def test_configure_reports_a_key_only_when_enabled_and_never_crashes(tmp_path):
    from cloudinit_azure.report import WireserverError
    root = _root_with(tmp_path)
    settings = _settings(platform_routes={"enabled": False},
                         publish_hostname={"enabled": False},
                         report_host_key_fingerprints=True)
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_rsa_key.pub").write_text("ssh-rsa AAAAB3NzaC1yc2E= x\n")
    sent = []
    out = _configure(settings, root=root, runner=FakeRunner(),
                            post=sent.append, container_id="c",
                            instance_id="i", log=LOG)
    assert out.key_reported is True and b"RoleProperties" in sent[0]

    def failing(body):
        raise WireserverError(detail="unreachable")
    out = _configure(settings, root=root, runner=FakeRunner(), post=failing,
                            container_id="c", instance_id="i", log=LOG)
    assert out.key_reported is False


def test_configure_with_an_invalid_hostname_publishes_the_live_one(tmp_path):
    root = _root_with(tmp_path, "systemd-network")
    (root / "etc/systemd/network").mkdir(parents=True)
    (root / "etc/systemd/network/10-eth0.network").write_text("[Match]\nName=eth0\n")
    out = _configure(_settings(platform_routes={"enabled": False}), root=root,
                            runner=FakeRunner(), hostname="bad name",
                            log=LOG)
    dropin = root / "etc/systemd/network/10-eth0.network.d/50-azure-hostname.conf"
    assert out.published.client == "networkd" and "\nHostname=" not in dropin.read_text()


NO_121_LEASE = "ADDRESS=10.0.0.4\nNETMASK=255.255.255.0\nROUTER=10.0.0.1\nOPTION_245=A83F8110\n"
ROUTES_DROPIN = "50-azure-platform-routes.conf"


def _networkd_without_121(tmp_path, state=NETWORKD_LINK_STATE, **kw):
    root = _netplan_root(tmp_path, state=state, **kw)
    (root / "run/systemd/netif/leases").mkdir(parents=True)
    (root / "run/systemd/netif/leases/2").write_text(NO_121_LEASE)
    return root


def test_configure_keeps_missing_routes_for_networkd_across_reboots(tmp_path, caplog):
    # Debian 13: networkd applies netplan's Name=eth* default, which hides the
    # rendered config's [Route]s; ip(8) routes are foreign to networkd and
    # gone at the next boot, so networkd must be told about them.
    root = _networkd_without_121(tmp_path)
    with caplog.at_level(logging.INFO):
        for _ in range(2):
            runner = FakeRunner()
            out = _configure(_settings(publish_hostname={"enabled": False}), root=root,
                             runner=runner, log=LOG)
    assert [c[:4] for c in runner.calls] == [["ip", "route", "replace", "168.63.129.16/32"],
                                             ["ip", "route", "replace", "169.254.169.254/32"]]
    assert len(out.routes) == 2
    dropin = root / f"etc/systemd/network/10-netplan-all-eth.network.d/{ROUTES_DROPIN}"
    sections = dropin.read_text().split("\n\n")[1:]
    assert sections == ["[Route]\nDestination=168.63.129.16/32\nGateway=10.0.0.1",
                        "[Route]\nDestination=169.254.169.254/32\nGateway=10.0.0.1\n"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_configure_writes_no_route_dropin_when_networkds_file_has_the_routes(tmp_path):
    state = NETWORKD_LINK_STATE.replace("all-eth", "eth0")
    root = _networkd_without_121(tmp_path, state=state)
    eth0 = root / "run/systemd/network/10-netplan-eth0.network"
    eth0.write_text(NETPLAN_ETH0 + "\n[Route]\nDestination=169.254.169.254/32\n"
                    "Gateway=10.0.0.1\n")
    _configure(_settings(publish_hostname={"enabled": False}), root=root, runner=FakeRunner(),
               log=LOG)
    assert not (root / "etc/systemd/network").exists()


def test_configure_does_not_put_one_nics_routes_on_another(tmp_path, caplog):
    root = _networkd_without_121(tmp_path)
    make_nic(root / "sys/class/net", "eth1", "00:0d:3a:12:34:57", "hv_netvsc", ifindex=3)
    with caplog.at_level(logging.INFO):
        out = _configure(_settings(publish_hostname={"enabled": False}), root=root,
                         runner=FakeRunner(), log=LOG)
    assert len(out.routes) == 2  # in place now
    assert not (root / "etc/systemd/network").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["routes to the platform are in place on eth0 until the next boot only: "
                        "10-netplan-all-eth.network, the .network file networkd applies to it, "
                        "also configures eth1"]


def test_configure_on_debian_13_networkd_warns_nothing_and_runs_no_networkctl(tmp_path, caplog):
    # The Debian 13 boot, option 121 given (the default scenario): routes
    # covered, the host name drop-in written, not one WARNING.
    root = _netplan_root(tmp_path, state=NETWORKD_LINK_STATE)
    (root / "run/systemd/netif/leases").mkdir(parents=True)
    (root / "run/systemd/netif/leases/2").write_text(NETWORKD_LEASE.replace(
        "169.254.169.254/32,10.0.0.1", "169.254.169.254/32,10.0.0.1 168.63.129.16/32,10.0.0.1"))
    runner = FakeRunner()
    with caplog.at_level(logging.INFO):
        out = _configure(_settings(), root=root, runner=runner, hostname="sim-vm-01", log=LOG)
    assert runner.calls == [] and out.routes == ()
    assert out.published.files_changed == (str(
        root / "etc/systemd/network/10-netplan-all-eth.network.d/50-azure-hostname.conf"),)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_module_adapter_meta_and_handle_on_both_signatures(monkeypatch):
    from cloudinit_azure.modules import network as mod
    assert mod.meta["frequency"] == "once-per-instance" and mod.meta["distros"] == ["all"]
    assert not hasattr(mod, "schema")
    seen = []
    monkeypatch.setattr(mod.network, "configure", lambda cfg, **kw: seen.append((cfg, kw)))
    ds = SimpleNamespace(wireserver_address="168.63.129.20")
    cloud = SimpleNamespace(datasource=ds, get_hostname=lambda: ("vm7", False))
    cfg = {"azure_network": {"publish_hostname": {"watch": True}}}
    mod.handle("azure_network", cfg, cloud, LOG, [])
    mod.handle(name="azure_network", cfg=cfg, cloud=cloud, args=[])
    for settings, kw in seen:
        assert settings["publish_hostname"] == {"enabled": True, "watch": True}
        assert kw["hostname"] == "vm7" and kw["wireserver"] == "168.63.129.20"
        assert kw["root"] == Path("/")
    with pytest.raises(ConfigError):
        mod.handle("azure_network", {"azure_network": {"nope": 1}}, cloud, LOG, [])


def test_shim_exposes_handle_and_meta():
    import cc_azure_network
    from cloudinit_azure.modules import network as mod
    assert cc_azure_network.handle is mod.handle and cc_azure_network.meta is mod.meta


def test_report_host_key_takes_the_first_present_type_unless_told(tmp_path):
    sent = []
    (tmp_path / "etc/ssh").mkdir(parents=True)
    ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL8T2XkRHWuLWH8ZeEvdQNcpuUOskXzqOUzOPG02ufb0 h"
    (tmp_path / "etc/ssh/ssh_host_ed25519_key.pub").write_text(ed + "\n")
    assert network.report_host_key(tmp_path, sent.append, "c", "i",
                                   log=LOG) is True
    assert network.host_key_thumbprint(ed).encode() in sent[0]
    assert network.report_host_key(tmp_path, sent.append, "c", "i",
                                   key_type="rsa", log=LOG) is False
    assert len(sent) == 1


def test_one_shot_dhclient_is_stopped_by_pid_only_when_it_is_ours(tmp_path, monkeypatch):
    root = _root_with(tmp_path, "dhclient")
    (root / "etc/dhcp").mkdir(parents=True)
    (root / "etc/dhcp/dhclient.conf").write_text("send host-name = gethostname();\n")
    pid_file = root / "run/cloudinit-azure/dhclient.eth0.pid"
    killed = []

    def kill(pid, sig):
        killed.append((pid, sig))

    class Runner(FakeRunner):
        def __call__(self, cmd, **kw):
            if "-1" in cmd:  # the one-shot daemonises and writes its pid file
                pid_file.write_text("4242\n")
                proc = root / "proc/4242"
                proc.mkdir(parents=True, exist_ok=True)
                (proc / "cmdline").write_bytes(b"\0".join(c.encode() for c in cmd) + b"\0")
            return super().__call__(cmd, **kw)

    runner = Runner()
    assert network.publish_hostname(root, "eth0", "vm1", runner, LOG, kill=kill).renewed
    import signal as _signal

    assert killed == [(4242, _signal.SIGTERM)]
    assert not any("-x" in call for call in runner.calls)
    # a pid file naming somebody else's process: no signal, `dhclient -x` instead
    (root / "proc/4242/cmdline").write_bytes(b"sshd\0")
    runner = FakeRunner()
    killed.clear()
    network.publish_hostname(root, "eth0", "vm1", runner, LOG, kill=kill)
    assert killed == [] and any("-x" in call for call in runner.calls)


# --- hostile option 121 (issue 13, item 11) -----------------------------------

@pytest.mark.parametrize("value", [
    "-1,168,63,129,16,10,0,0,1",
    "-100000000000,168,63,129,16,10,0,0,1",  # was an 8 GB list allocation
    "32,300,63,129,16,10,0,0,1",
    "²,168,63,129,16,10,0,0,1",
    "1" * 5000,
    "20:-1:3f:81:10:a:0:0:1",
])
def test_option_121_with_bad_widths_or_octets_is_refused_whole(value):
    assert network.parse_classless_routes(value) == []


def test_one_dhclient_lease_parser_keeps_quoted_separators():
    text = ('lease {\n  interface "eth0";\n  option domain-name "x;y}z";\n'
            '  fixed-address 10.0.0.4;\n}\nlease {\n  interface "eth1";\n'
            '  fixed-address 10.0.1.4;\n}\n')
    blocks = network.dhclient_blocks(text)
    assert [b.values["fixed-address"] for b in blocks] == ["10.0.0.4", "10.0.1.4"]
    assert blocks[0].values["domain-name"] == '"x;y}z"'
    assert network.newest_dhclient_block(text, "eth0").values["fixed-address"] == "10.0.0.4"
    assert network.dhclient_blocks("lease {" * 1000) == []


# --- one rule for the primary NIC (issue 15) ---------------------------------

def test_one_primary_rule_for_the_datasource_and_the_module(tmp_path):
    from cloudinit_azure import ephemeral

    net = tmp_path / "sys/class/net"
    make_nic(net, "br0", "00:0d:3a:00:00:02", ifindex=2)
    (net / "br0/bridge").mkdir()
    make_nic(net, "veth9a", "00:0d:3a:00:00:05", ifindex=3)
    make_nic(net, "eth10", "00:0d:3a:00:00:10", "hv_netvsc", ifindex=4)
    make_nic(net, "eth2", "00:0d:3a:00:00:20", "hv_netvsc", ifindex=5)
    make_nic(net, "enP1s1", "00:0d:3a:00:00:30", "mana", ifindex=6)  # a VF, not yet enslaved
    nics = classify_nics(net)
    # Kernel (ifindex) order, not name order (eth10 < eth2 by name); no bridge,
    # no host-side veth, no VF: the module and the ephemeral run agree.
    assert network.primary_nic(nics).name == "eth10"
    assert ephemeral.primary_nic(net) == "eth10"
    assert network.primary_nic(nics, "00:0d:3a:00:00:20").name == "eth2"
    assert ephemeral.primary_nic(net, "000d3a000020") == "eth2"
    for mac in ("00:0d:3a:00:00:02", "00:0d:3a:00:00:05", "00:0d:3a:00:00:30"):
        assert network.primary_nic(nics, mac).name == "eth10"  # never br0, veth or the VF
    assert [n.name for n in nics if n.may_be_primary] == ["eth10", "eth2"]
