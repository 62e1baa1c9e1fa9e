"""Issue 6: routes, NIC names and host name publishing in real boots (22.4.2, 25.1.4).

The report shows the VM's routes, links (name, MAC), link events from
``ip -ts monitor link`` and dnsmasq's leases; the kept upper layer holds the
network config cloud-init rendered from our datasource.
"""

from __future__ import annotations

import pytest

from azure_sim.scenario import DEFAULT_MAC

pytestmark = pytest.mark.integration

_REPORTS: dict = {}
MAC2 = "00:0d:3a:12:34:57"


def _boot(run_boot, tmp_path_factory, text, cloud_init):
    key = (text, cloud_init)
    if key not in _REPORTS:
        work = tmp_path_factory.mktemp("net")
        report = run_boot(text, cloud_init=cloud_init, datasource="plugin",
                          keep=str(work / "keep"))
        _REPORTS[key] = (report, work / "keep")
    return _REPORTS[key]


def _ok(r):
    assert r["sim_error"] is None, r.get("traceback")
    assert r["datasource"] == "plugin"
    assert r["verdict"]["ok"], r["verdict"]
    assert r["ready"] and r["ready_count"] == 1
    assert r["cloud_init_status"] == "done", (r["cloud_init_errors"], r["warnings"])


def _main_routes(r):
    return [x.strip() for x in r["routes"] if "table local" not in x]


def _rendered(keep):
    """cloud-init's rendered OS network config, whichever renderer wrote it."""
    files = sorted((keep / "etc/systemd/network").glob("*.network"))
    files += sorted((keep / "etc/network/interfaces.d").glob("*"))
    files += sorted((keep / "etc/netplan").glob("*.yaml"))
    return {f.name: f.read_text() for f in files}


def test_lease_carries_the_host_name_and_no_link_drops_after_the_os_network_is_up(
        run_boot, tmp_path_factory, cloud_init):
    r, _ = _boot(run_boot, tmp_path_factory, None, cloud_init)
    _ok(r)
    assert {"mac": DEFAULT_MAC, "ip": "10.0.0.4", "hostname": "sim-vm-01"} in r["dhcp_leases"]
    os_net = next(s["start"] for s in r["stages"]
                  if s["stage"] == "os-network" and s["boot"] == 1)
    events = [e for e in r["link_events"] if e["name"] == "eth0"]
    print("os-network at", os_net, "eth0 events:",
          [(e["t"], "down" if e["down"] else "up") for e in events])
    up = next(e["t"] for e in events if e["t"] >= os_net and not e["down"])
    later_downs = [e for e in events if e["t"] > up and e["down"]]
    assert later_downs == [], later_downs
    assert {"name": "eth0", "mac": DEFAULT_MAC, "state": "UP"} in r["links"]


NO_121 = """
name: net-no-option-121
dhcp: {option_121: false}
"""


def test_without_option_121_routes_exist_and_are_in_the_rendered_config(
        run_boot, tmp_path_factory, cloud_init):
    r, keep = _boot(run_boot, tmp_path_factory, NO_121, cloud_init)
    _ok(r)
    routes = _main_routes(r)
    assert "168.63.129.16 via 10.0.0.1 dev eth0" in routes
    assert "169.254.169.254 via 10.0.0.1 dev eth0" in routes
    rendered = _rendered(keep)
    assert rendered, "cloud-init rendered no network config"
    text = "\n".join(rendered.values())
    print(rendered)
    for dst in ("168.63.129.16/32", "169.254.169.254/32"):
        assert (f"Destination={dst}" in text or f"to: {dst}" in text
                or f"{dst} gw 10.0.0.1" in text or f"{dst} via 10.0.0.1" in text), text
    assert "10.0.0.1" in text


NO_121_TWO_BOOTS = """
name: net-no-option-121-two-boots
boots: 2
dhcp: {option_121: false}
"""


def test_without_option_121_routes_are_back_after_a_reboot(run_boot, tmp_path_factory,
                                                           cloud_init):
    r, _ = _boot(run_boot, tmp_path_factory, NO_121_TWO_BOOTS, cloud_init)
    _ok(r)
    routes = _main_routes(r)
    assert "168.63.129.16 via 10.0.0.1 dev eth0" in routes
    assert "169.254.169.254 via 10.0.0.1 dev eth0" in routes


TWO_NICS = """
name: net-two-nics
nics: 2
"""


def test_two_nics_keep_their_names_by_mac(run_boot, tmp_path_factory, cloud_init):
    r, keep = _boot(run_boot, tmp_path_factory, TWO_NICS, cloud_init)
    _ok(r)
    by_name = {link["name"]: link["mac"] for link in r["links"]}
    assert by_name["eth0"] == DEFAULT_MAC and by_name["eth1"] == MAC2
    # Nothing renamed: every link event names one of the original devices.
    assert {e["name"] for e in r["link_events"]} <= {"eth0", "eth1"}
    rendered = _rendered(keep)
    print(rendered)
    text = "\n".join(rendered.values())
    assert "set-name" not in text
    for name, mac in (("eth0", DEFAULT_MAC), ("eth1", MAC2)):
        match = [t for t in rendered.values() if f"MACAddress={mac}" in t or mac in t]
        assert len(match) == 1, rendered
        assert f"Name={name}" in match[0] or name in match[0]


BAD_HOSTNAME = """
name: net-bad-hostname
ovf: {hostname: "bad_host.-x"}
imds: {compute: {name: "bad_host.-x", osProfile: {computerName: "bad_host.-x"}}}
expect: failure
"""


def test_invalid_host_name_ends_in_provisioning_failed(run_boot, tmp_path_factory,
                                                       cloud_init):
    r, _ = _boot(run_boot, tmp_path_factory, BAD_HOSTNAME, cloud_init)
    assert r["sim_error"] is None, r.get("traceback")
    assert r["verdict"]["ok"], r["verdict"]
    assert not r["ready"]
    failures = [h for h in r["health_reports"] if h["state"] == "NotReady"]
    assert len(failures) == 1 and failures[0]["substatus"] == "ProvisioningFailed"
    assert failures[0]["decoded"]["reason"] == "invalid host name"
    assert failures[0]["decoded"]["hostname"] == "bad_host.-x"
    assert r["hostname"] != "bad_host.-x"
    assert not any(lease["hostname"] == "bad_host.-x" for lease in r["dhcp_leases"])


HOST_KEY = """
name: net-host-key-fingerprint
cloud_config: {azure_network: {report_host_key_fingerprints: true}}
"""


def test_host_key_fingerprint_reported_only_when_asked(run_boot, tmp_path_factory, cloud_init):
    r, _ = _boot(run_boot, tmp_path_factory, HOST_KEY, cloud_init)
    _ok(r)
    posts = [q for q in r["requests"] if q["endpoint"] == "roleproperties"]
    assert len(posts) == 1 and posts[0]["status"] == 200
    assert posts[0]["t"] > r["time_to_ready_s"]  # never in Ready's way
    default, _ = _boot(run_boot, tmp_path_factory, None, cloud_init)
    assert not [q for q in default["requests"] if q["endpoint"] == "roleproperties"]


STALE_RULES = (
    'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{address}=="00:0d:3a:00:00:01", '
    'NAME="eth0"\n')
STALE = f"""
name: net-stale-persistent-net-rules
image_files:
  /etc/udev/rules.d/70-persistent-net.rules: '{STALE_RULES.strip()}'
"""


def test_stale_persistent_net_rules_are_moved_aside_on_a_new_instance(
        run_boot, tmp_path_factory, cloud_init):
    r, keep = _boot(run_boot, tmp_path_factory, STALE, cloud_init)
    _ok(r)
    # image_files lives in the upper layer: moved away, it is gone from it.
    assert not (keep / "etc/udev/rules.d/70-persistent-net.rules").exists()
    moved = keep / "var/lib/cloudinit-azure/70-persistent-net.rules.stale"
    assert moved.read_text().strip() == STALE_RULES.strip()
    generator = keep / "etc/udev/rules.d/75-persistent-net-generator.rules"
    assert generator.is_symlink() and str(generator.readlink()) == "/dev/null"


# Host name publishing, discriminating: images whose stock DHCP client config
# does NOT send the host name (Debian's dhcpcd.conf has no `hostname` line;
# dhclient.conf stripped of `send host-name`; udhcpc sends none unless told),
# so the platform's DHCP server can only learn the name from our module.
# Each is booted with the module and, as the control, with publishing off.
DHCLIENT_CONF_WITHOUT_SEND = (
    "option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;\n"
    "request subnet-mask, broadcast-address, time-offset, routers,\n"
    "        domain-name, domain-name-servers, host-name, interface-mtu,\n"
    "        rfc3442-classless-static-routes;\n")
DHCPCD_CONF_WITHOUT_HOSTNAME = (
    "duid\npersistent\nvendorclassid\n"
    "option domain_name_servers, domain_name, domain_search\n"
    "option classless_static_routes\noption interface_mtu\noption host_name\n"
    "option rapid_commit\nrequire dhcp_server_identifier\nslaac private\n")
CLIENT_VARIANTS = {
    "dhclient": {"image_files": {"/etc/dhcp/dhclient.conf": DHCLIENT_CONF_WITHOUT_SEND}},
    "dhcpcd": {"dhcp_client": "dhcpcd",
               "image_files": {"/etc/dhcpcd.conf": DHCPCD_CONF_WITHOUT_HOSTNAME}},
    "udhcpc": {"dhcp_client": "udhcpc"},
}


def _variant(client, publish):
    import yaml

    spec = {"name": f"net-publish-{client}-{'on' if publish else 'off'}",
            **CLIENT_VARIANTS[client]}
    if not publish:
        spec["cloud_config"] = {"azure_network": {"publish_hostname": {"enabled": False}}}
    return yaml.safe_dump(spec)


def _server_names(r):
    return {lease["hostname"] for lease in r["dhcp_leases"] if lease["mac"] == DEFAULT_MAC}


@pytest.mark.parametrize("client", sorted(CLIENT_VARIANTS))
def test_host_name_reaches_the_dhcp_server_only_through_the_module(
        run_boot, tmp_path_factory, cloud_init, client):
    control, _ = _boot(run_boot, tmp_path_factory, _variant(client, False), cloud_init)
    _ok(control)
    assert "sim-vm-01" not in _server_names(control), control["dhcp_leases"]
    r, keep = _boot(run_boot, tmp_path_factory, _variant(client, True), cloud_init)
    _ok(r)
    assert _server_names(r) == {"sim-vm-01"}, r["dhcp_leases"]
    # Publishing never took a link down once the OS network was up.
    os_net = next(s["start"] for s in r["stages"] if s["stage"] == "os-network")
    events = [e for e in r["link_events"] if e["name"] == "eth0"]
    up = next(e["t"] for e in events if e["t"] >= os_net and not e["down"])
    assert [e for e in events if e["t"] > up and e["down"]] == []
    assert {"name": "eth0", "mac": DEFAULT_MAC, "state": "UP"} in r["links"]


ZERO_245 = """
name: net-option-245-zero
dhcp: {option_121: false, option_245_address: "0.0.0.0"}
"""


def test_option_245_zero_means_the_default_wireserver(run_boot, tmp_path_factory, cloud_init):
    r, _ = _boot(run_boot, tmp_path_factory, ZERO_245, cloud_init)
    _ok(r)  # Ready reached the real wireserver
    routes = _main_routes(r)
    assert "168.63.129.16 via 10.0.0.1 dev eth0" in routes, routes
    assert not [x for x in routes if x.startswith("0.0.0.0 ")], routes
