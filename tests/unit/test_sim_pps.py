"""azure-sim preprovisioning: the pps scenario key, the documents, the pool flow.

The platform side runs on 127.0.0.1 ephemeral ports with a command recorder
instead of ``ip``: nothing here touches a network namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from azure_sim import documents, fabric, power, pps
from azure_sim.scenario import (
    DEFAULT_KEY,
    PLACEHOLDER_KEY,
    ScenarioError,
    load_scenario,
)
from cloudinit_azure.ovf import parse_ovf

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


# --- the scenario key -------------------------------------------------------------


def test_pps_top_level_ovf_is_the_placeholder_and_pps_ovf_the_customer():
    s = load_scenario("pps: {type: running, ovf: {username: alice}}")
    assert s["ovf"]["username"] == "ppsplaceholder"
    assert s["ovf"]["public_keys"] == [PLACEHOLDER_KEY]
    assert s["ovf"]["preprovisioned_vm"] is True
    assert s["ovf"]["preprovisioned_vm_type"] == "Running"
    customer = s["pps"]["ovf"]
    assert customer["username"] == "alice"
    # The customer gets the default scenario's key, host name and customData.
    assert customer["public_keys"] == [DEFAULT_KEY]
    assert customer["hostname"] == "sim-vm-01"
    assert customer["preprovisioned_vm"] is False
    assert s["pps"]["assign_after_s"] == 2.0
    assert s["pps"]["kind"] == "running"


@pytest.mark.parametrize("kind,ovf_type,played_as", [
    ("running", "Running", "running"), ("savable", "Savable", "savable"),
    ("os_disk", "PreprovisionedOSDisk", "os_disk"), ("Frobnicated", "Frobnicated", "unknown"),
])
def test_pps_types(kind, ovf_type, played_as):
    s = load_scenario(f"pps: {{type: {kind}}}")
    assert s["pps"]["ovf_type"] == ovf_type
    assert s["pps"]["kind"] == played_as
    assert s["ovf"]["preprovisioned_vm_type"] == ovf_type


def test_pps_top_level_ovf_overrides_the_placeholder():
    s = load_scenario("ovf: {username: pooluser, preprovisioned_vm_type: Other}\n"
                      "pps: {type: running}")
    assert s["ovf"]["username"] == "pooluser"
    assert s["ovf"]["preprovisioned_vm_type"] == "Other"


@pytest.mark.parametrize("text,message", [
    ("pps: {type: running, bogus: 1}", "unknown key 'pps.bogus'"),
    ("pps: {type: running, ovf: {usrname: x}}", "unknown key 'pps.ovf.usrname'"),
    ("pps: {assign_after_s: 1}", "'type' is a required property"),
    ("pps: {type: running, assign_after_s: -1}", "'pps.assign_after_s'"),
    ("pps: {type: running}\nnics: 2", "a pool VM has one NIC"),
    ("pps: {type: running}\nmedia: seed", "a pool VM boots with a DVD"),
    ("pps: {type: running}\nboots: 2", "'boots'"),
    ("pps: {type: running, assign_after_s: 1, reboot_after_s: 2}", "'pps.reboot_after_s'"),
    ("pps: {type: os_disk, assign_after_s: 1, shutdown_after_s: 1}",
     "'pps.shutdown_after_s'"),
    ("pps: {type: running, ovf: {}, ovf_xml: x}", "'pps.ovf' or 'pps.ovf_xml'"),
])
def test_pps_validation_names_the_key(text, message):
    with pytest.raises(ScenarioError, match="scenario: .*" + message.replace("(", r"\(")):
        load_scenario(text)


@pytest.mark.parametrize("name", ["pps-running", "pps-savable", "pps-os-disk"])
def test_example_scenarios_load(name):
    s = load_scenario((SCENARIOS / f"{name}.yaml").read_text())
    assert s["pps"]["ovf"]["username"] != s["ovf"]["username"]


# --- documents ---------------------------------------------------------------------


def test_placeholder_ovf_says_preprovisioned():
    s = load_scenario("pps: {type: savable}")
    env = parse_ovf(documents.render_ovf(s["ovf"]))
    assert env.preprovisioned_vm is True
    assert env.preprovisioned_vm_type == "Savable"
    assert env.username == "ppsplaceholder"


def test_pps_documents_before_and_after_assignment():
    s = load_scenario("pps: {type: running, ovf: {username: alice, hostname: cust}}")
    docs = documents.pps_documents(s)
    assert docs["pool_imds"]["extended"]["compute"]["ppsType"] == "Running"
    assert docs["pool_imds"]["compute"]["osProfile"]["adminUsername"] == "ppsplaceholder"
    customer = docs["customer_imds"]
    assert customer["extended"]["compute"]["ppsType"] == "None"
    assert customer["compute"]["osProfile"]["adminUsername"] == "alice"
    assert customer["compute"]["osProfile"]["computerName"] == "cust"
    env = parse_ovf(docs["customer_ovf"])
    assert (env.username, env.hostname, env.preprovisioned_vm) == ("alice", "cust", False)
    # Running keeps its NIC.
    assert docs["customer_mac"] == documents.nic_mac(0)


def test_savable_customer_gets_a_new_nic_mac():
    docs = documents.pps_documents(load_scenario("pps: {type: savable}"))
    mac = documents.customer_nic_mac()
    assert docs["customer_mac"] == mac != documents.nic_mac(0)
    assert docs["customer_imds"]["network"]["interface"][0]["macAddress"] == \
        mac.replace(":", "").upper()


def test_literal_customer_document_is_served_verbatim():
    docs = documents.pps_documents(load_scenario('pps: {type: running, ovf_xml: "<nope"}'))
    assert docs["customer_ovf"] == b"<nope"
    assert docs["customer_imds"]["compute"]["osProfile"]["adminUsername"] == "azureuser"


# --- the timeline ------------------------------------------------------------------


def _pps(text: str) -> dict:
    return load_scenario(text)["pps"]


def test_timeline_running_and_unknown_end_the_wait_with_a_vnet_switch():
    for kind in ("running", "Frobnicated"):
        assert pps.timeline(_pps(f"pps: {{type: {kind}, assign_after_s: 3}}")) == [
            (3.0, "assign"), (3.0, "vnet_switch")]


def test_timeline_savable_detaches_then_attaches_after_assignment():
    steps = pps.timeline(_pps("pps: {type: savable, assign_after_s: 3, detach_after_s: 0.5, "
                              "nic_attach_after_s: 2}"))
    assert steps == [(0.5, "detach_nic"), (3.0, "assign"), (5.0, "attach_nic")]


def test_timeline_os_disk_powers_off_then_on_with_the_customer():
    steps = pps.timeline(_pps("pps: {type: os_disk, assign_after_s: 3}"))
    assert steps == [(0.2, "power_off"), (3.0, "assign"), (3.0, "power_on")]


def test_timeline_reboot_during_the_wait():
    steps = pps.timeline(_pps("pps: {type: running, assign_after_s: 3, reboot_after_s: 1}"))
    assert steps == [(1.0, "restart"), (3.0, "assign"), (3.0, "vnet_switch")]


# --- the platform ------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []

    def __call__(self, cmd, vm_fd=False):
        self.calls.append((cmd, vm_fd))


def _platform(tmp_path: Path, text: str, timeline=None):
    scenario = load_scenario(text)
    docs = documents.pps_documents(scenario)
    (tmp_path / "pool.xml").write_bytes(documents.render_ovf(scenario["ovf"]))
    (tmp_path / "customer.xml").write_bytes(docs["customer_ovf"])
    cfg = {
        "journal": str(tmp_path / "journal.jsonl"), "imds_doc": docs["pool_imds"],
        "ovf_path": str(tmp_path / "pool.xml"), "vm_id": "x", "faults": [],
        "nics": [{"name": "eth0", "peer": "azplat0", "mac": documents.nic_mac(0),
                  "ip": documents.nic_ip(0), "gateway": "10.0.0.1", "index": 2}],
        "pps": {"kind": scenario["pps"]["kind"], "ovf_type": scenario["pps"]["ovf_type"],
                "timeline": timeline if timeline is not None else pps.timeline(scenario["pps"]),
                "customer_ovf_path": str(tmp_path / "customer.xml"),
                "customer_imds": docs["customer_imds"], "customer_mac": docs["customer_mac"],
                "power_file": str(tmp_path / "power")},
    }
    plat = fabric.Platform(cfg)
    rec = Recorder()
    assert plat.pps is not None
    plat.pps.run = rec
    dhcp: list = []
    plat.restart_dhcp = lambda mac=None: dhcp.append(mac)
    return plat, rec, dhcp


def _serve(plat):
    handler = type("imdsHandler", (fabric.Handler,), {"platform": plat, "role": "imds"})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    wire = type("wireHandler", (fabric.Handler,), {"platform": plat, "role": "wireserver"})
    wsrv = ThreadingHTTPServer(("127.0.0.1", 0), wire)
    wsrv.daemon_threads = True
    threading.Thread(target=wsrv.serve_forever, args=(0.05,), daemon=True).start()
    return srv, wsrv


def _get(srv, path, method="GET", body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {"Metadata": "true"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()




def _ready_body() -> bytes:
    from cloudinit_azure.wireserver import GoalState, render_health

    return render_health(GoalState("1", documents.CONTAINER_ID, "x.sim-vm-01", None),
                         "Ready")


def _wait_for(pred, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return False


REPROVISION = "/metadata/reprovisiondata?api-version=2019-06-01"
IMDS = "/metadata/instance?api-version=2021-08-01&extended=true"


def test_reprovisiondata_is_404_until_assignment_then_the_customer_ovf(tmp_path):
    plat, rec, _ = _platform(tmp_path, "pps: {type: running, ovf: {username: alice}}",
                             timeline=[(0.1, "assign"), (0.1, "vnet_switch")])
    plat.pps.vm_link_down = lambda: True
    srv, wsrv = _serve(plat)
    try:
        assert _get(srv, REPROVISION)[0] == 404
        status, body = _get(srv, IMDS)
        assert json.loads(body)["extended"]["compute"]["ppsType"] == "Running"
        assert _get(wsrv, "/machine?comp=health", "POST", _ready_body(),
                    {"Content-Type": "text/xml"})[0] == 200
        assert _wait_for(lambda: plat.pps.assigned.is_set())
        status, body = _get(srv, REPROVISION)
        assert status == 200
        assert parse_ovf(body).username == "alice"
        doc = json.loads(_get(srv, IMDS)[1])
        assert doc["extended"]["compute"]["ppsType"] == "None"
        assert doc["compute"]["osProfile"]["adminUsername"] == "alice"
        assert _wait_for(lambda: len(rec.calls) == 2)
    finally:
        srv.shutdown()
        wsrv.shutdown()
    # The vnet switch: our end of the NIC loses its carrier and gets it back.
    assert [c for c, _ in rec.calls] == [["ip", "link", "set", "azplat0", "down"],
                                        ["ip", "link", "set", "azplat0", "up"]]
    events = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    steps = [e["event"] for e in events if e["endpoint"] == "pps"]
    assert steps == ["pool_ready", "assign", "vnet_switch"]


def test_a_second_ready_does_not_restart_the_flow(tmp_path):
    plat, _, _ = _platform(tmp_path, "pps: {type: running}", timeline=[])
    plat.pps.on_ready()
    plat.pps.on_ready()
    events = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["pool_ready"]


def test_savable_detach_and_attach_commands(tmp_path, monkeypatch):
    plat, rec, dhcp = _platform(tmp_path, "pps: {type: savable}")
    plat.cfg["vm_netns_fd"] = 99
    monkeypatch.setattr(plat.pps, "vm_netns", lambda: "/proc/self/fd/99")
    plat.pps.detach_nic()
    plat.pps.attach_nic()
    cmds = [c for c, _ in rec.calls]
    assert cmds[0] == ["ip", "link", "del", "azplat0"]
    add = cmds[1]
    assert add[:3] == ["ip", "link", "add"]
    # A new device: a new ifindex, the same on both ends, and a new MAC.
    assert add.count("index") == 2 and add[add.index("index") + 1] == "3"
    assert documents.customer_nic_mac() in add
    assert add[-2:] == ["netns", "/proc/self/fd/99"]
    assert rec.calls[1][1] is True  # the namespace handle is passed to ip
    assert cmds[2:] == [["ip", "addr", "add", "10.0.0.1/24", "dev", "azplat0"],
                        ["ip", "link", "set", "azplat0", "up"]]
    # dnsmasq restarted for the new MAC, the old NIC's lease forgotten.
    assert dhcp == [documents.nic_mac(0)]
    assert plat.cfg["nics"][0]["mac"] == documents.customer_nic_mac()


def test_vm_netns_refuses_our_own_namespace(tmp_path):
    plat, _, _ = _platform(tmp_path, "pps: {type: savable}")
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        plat.cfg["vm_netns_fd"] = fd
        with pytest.raises(RuntimeError, match="refusing"):
            plat.pps.vm_netns()
    finally:
        os.close(fd)
    plat.cfg["vm_netns_fd"] = None
    with pytest.raises(RuntimeError, match="no handle"):
        plat.pps.vm_netns()


def test_a_failing_step_is_journalled_and_the_flow_goes_on(tmp_path):
    plat, rec, _ = _platform(tmp_path, "pps: {type: savable}",
                             timeline=[(0, "detach_nic"), (0, "assign")])

    def broken(cmd, vm_fd=False):
        raise OSError("no ip here")

    plat.pps.run = broken
    plat.pps.on_ready()
    plat.pps.thread.join(5)
    events = [json.loads(x) for x in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert [(e["event"], e.get("error")) for e in events] == [
        ("pool_ready", None), ("detach_nic", "no ip here"), ("assign", None)]


def test_power_requests_are_written_for_the_sandbox(tmp_path):
    plat, _, _ = _platform(tmp_path, "pps: {type: os_disk}")
    plat.pps.power_off()
    plat.pps.power_on()
    assert (tmp_path / "power").read_text() == "off\non\n"


# --- the sandbox's power watch -------------------------------------------------------


def test_power_watch_cuts_the_stage_and_waits_for_power_on(tmp_path):
    kills: list[float] = []
    watch = power.PowerWatch.for_plan({"pps": {"power_file": str(tmp_path / "power")}},
                                    tmp_path, lambda: kills.append(time.time()))
    assert watch is not None
    try:
        assert watch.stage_was_cut() is False
        (tmp_path / "power").write_text("off\n")
        assert _wait_for(lambda: kills)
        threading.Timer(0.2, lambda: (tmp_path / "power").write_text("off\non\n")).start()
        start = time.time()
        assert watch.stage_was_cut(timeout=5) is True
        assert time.time() - start >= 0.15  # it waited for the power-on
        assert watch.stage_was_cut() is False
    finally:
        result = watch.stop()
    assert [r["what"] for r in result["power_requests"]] == ["off", "on"]
    assert len(kills) == 1


def test_power_watch_restart_needs_no_power_on(tmp_path):
    watch = power.PowerWatch.for_plan({"pps": {"power_file": str(tmp_path / "power")}},
                                    tmp_path, lambda: None)
    try:
        (tmp_path / "power").write_text("restart\n")
        assert _wait_for(lambda: watch.cut.is_set())
        assert watch.stage_was_cut(timeout=0.1) is True
    finally:
        watch.stop()


def test_no_power_watch_without_a_pool(tmp_path):
    assert power.PowerWatch.for_plan({}, tmp_path, lambda: None) is None


def test_observe_placeholder_user(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                         "ppsplaceholder:x:1000:1000::/home/p:/bin/sh\n")
    assert pps.observe({"placeholder_user": "ppsplaceholder"}, tmp_path) == {
        "placeholder_user_exists": True}
    assert pps.observe({"placeholder_user": "alice"}, tmp_path) == {
        "placeholder_user_exists": False}
    assert pps.observe({}, tmp_path) == {}


# --- the report ----------------------------------------------------------------------


def _journal():
    ready = {"endpoint": "health", "health": {"state": "Ready"}, "method": "POST"}
    return [
        {"t": 100.5, **ready},
        {"t": 100.5, "endpoint": "pps", "event": "pool_ready"},
        {"t": 100.7, "endpoint": "pps", "event": "detach_nic"},
        {"t": 101.0, "endpoint": "reprovisiondata", "status": 404, "method": "GET"},
        {"t": 102.5, "endpoint": "pps", "event": "assign"},
        {"t": 102.6, "endpoint": "pps", "event": "attach_nic"},
        {"t": 102.8, "endpoint": "reprovisiondata", "status": 200, "method": "GET"},
        {"t": 103.0, **ready},
    ]


def test_report_block_times():
    scenario = load_scenario("pps: {type: savable}")
    block = pps.report_block(scenario, _journal(), 100.0)
    times = {k: v for k, v in block.items() if k != "steps"}
    assert times == {"type": "savable", "pool_ready_t": 0.5, "nic_detached_t": 0.7,
                     "assigned_t": 2.5, "nic_attached_t": 2.6, "reprovision_fetched_t": 2.8,
                     "customer_ready_t": 3.0, "assignment_to_ready_s": 0.5,
                     "assignment_to_login_s": None}
    assert pps.report_block(scenario, _journal(), 100.0, 104.5)["assignment_to_login_s"] == 2.0
    assert pps.report_block(load_scenario(""), _journal(), 100.0) is None


def test_problems_name_what_went_wrong():
    scenario = load_scenario("pps: {type: savable}")
    journal = _journal()[:-1]  # no customer Ready
    report = {"pps": pps.report_block(scenario, journal, 100.0),
              "placeholder_user_exists": True, "placeholder_custom_data_applied": False}
    assert pps.problems(report, "ready") == ["the placeholder's user exists",
                                             "no Ready for the customer"]
    report = {"pps": pps.report_block(scenario, _journal(), 100.0),
              "placeholder_user_exists": False, "placeholder_custom_data_applied": True}
    assert pps.problems(report, "failure") == ["the placeholder's customData ran",
                                               "Ready was reported for the customer"]


# --- the bench row -----------------------------------------------------------------------


def test_bench_row_and_ratio_for_assignment_to_ready():
    from azure_sim import bench
    from tests.unit.test_sim_bench import _report

    def report(assign_to_ready):
        return dict(_report(), pps={"assignment_to_ready_s": assign_to_ready,
                                    "assignment_to_login_s": 2.0})

    p, b = ("22.4.2", "dhclient", "plugin"), ("22.4.2", "dhclient", "builtin")
    rows = [bench.row_from_report(report(0.1), run=1, combo=p),
            bench.row_from_report(report(0.3), run=2, combo=p),
            bench.row_from_report(report(0.2), run=1, combo=b)]
    summary = bench.aggregate(rows, [p, b])
    assert [s["pps_ready_s"] for s in summary] == [pytest.approx(0.2), 0.2]
    ready, login = [r for r in bench.ratios(summary) if "assign->ready" in r["ratio"]]
    assert ready["value"] == pytest.approx(1.0) and ready["met"] is True
    assert login["ratio"].endswith("builtin assign->login")
    assert login["value"] == pytest.approx(0.1)
    assert "assign->ready s" in bench.render_table(summary)
    # Without a pool flow there is no such ratio.
    plain = bench.aggregate([dict(r, pps_assign_to_ready_s=None) for r in rows], [p, b])
    assert not [r for r in bench.ratios(plain) if "assign->ready" in r["ratio"]]
