"""azure-sim platform server: dnsmasq command, health parsing, and the HTTP handler.

The handler is served on ephemeral 127.0.0.1 ports only (never the platform
addresses, which exist only inside the simulator's namespaces).
"""

from __future__ import annotations

import http.client
import json
import threading
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from azure_sim import documents, fabric
from azure_sim.scenario import DEFAULT_VM_ID, load_scenario
from cloudinit_azure.report import Report
from cloudinit_azure.wireserver import GoalState, parse_goal_state, render_health

# --- dnsmasq -------------------------------------------------------------------


def _dns_cfg(nics: int = 1, **dhcp):
    return {
        "dhcp": {"log": "/w/dnsmasq.log", "leases": "/w/leases", "pid": "/w/pid", **dhcp},
        "nics": [{"name": f"eth{i}", "peer": f"azplat{i}", "mac": documents.nic_mac(i),
                  "ip": documents.nic_ip(i), "gateway": f"10.0.{i}.1"}
                 for i in range(nics)],
    }


def test_dnsmasq_command_basics():
    cmd = fabric.dnsmasq_command(_dns_cfg(), dnsmasq="/layer/dnsmasq")
    assert cmd[0] == "/layer/dnsmasq"
    for flag in ("--keep-in-foreground", "--no-ping", "--port=0", "--bind-interfaces",
                 "--conf-file=/dev/null", "--log-facility=/w/dnsmasq.log",
                 "--dhcp-leasefile=/w/leases", "--pid-file=/w/pid",
                 "--interface=azplat0", "--except-interface=lo",
                 "--dhcp-host=00:0d:3a:12:34:56,10.0.0.4",
                 "--dhcp-option=tag:nic0,option:router,10.0.0.1"):
        assert flag in cmd, flag


def test_dnsmasq_option_245_forced_only_when_enabled():
    on = fabric.dnsmasq_command(_dns_cfg(option_245=True, option_121=True))
    assert "--dhcp-option-force=tag:nic0,245,168.63.129.16" in on
    # dhclient never asks for 245: plain --dhcp-option would not be sent.
    assert not any(a.startswith("--dhcp-option=") and ",245," in a for a in on)
    off = fabric.dnsmasq_command(_dns_cfg(option_245=False, option_121=True))
    assert not any("245" in a for a in off)


def test_dnsmasq_option_121_routes_and_default_route_on_nic0_only():
    cmd = fabric.dnsmasq_command(_dns_cfg(nics=2, option_245=True, option_121=True))
    routes = [a for a in cmd if ",121," in a]
    assert routes == [
        "--dhcp-option=tag:nic0,121,168.63.129.16/32,10.0.0.1,"
        "169.254.169.254/32,10.0.0.1,0.0.0.0/0,10.0.0.1",
        "--dhcp-option=tag:nic1,121,168.63.129.16/32,10.0.1.1,"
        "169.254.169.254/32,10.0.1.1",
    ]
    assert "--dhcp-option-force=tag:nic1,245,168.63.129.16" in cmd
    assert "--interface=azplat1" in cmd
    off = fabric.dnsmasq_command(_dns_cfg(nics=2, option_245=True, option_121=False))
    assert not any(",121," in a for a in off)


# --- health --------------------------------------------------------------------

GS = GoalState("1", "cid-1", "iid-1")


def test_parse_health_ready():
    parsed = fabric.parse_health(render_health(GS, "Ready"))
    assert parsed == {"incarnation": "1", "container_id": "cid-1", "instance_id": "iid-1",
                      "state": "Ready", "substatus": None, "description": None}


def test_parse_health_not_ready_with_encoded_description():
    desc = Report("error", "bad ovf | really", {"k": "v"}, "vm").encode()
    parsed = fabric.parse_health(render_health(GS, "NotReady", "ProvisioningFailed", desc))
    assert parsed["state"] == "NotReady"
    assert parsed["substatus"] == "ProvisioningFailed"
    assert parsed["description"] == desc


def test_parse_health_rejects_garbage():
    with pytest.raises(Exception):  # noqa: B017 - any parse error
        fabric.parse_health(b"<Health><unclosed")


# --- the HTTP handler ------------------------------------------------------------


class Sim:
    """IMDS and wireserver handlers on 127.0.0.1 ephemeral ports."""

    def __init__(self, tmp_path: Path, faults=(), scenario_text: str | None = None,
                 imds_raw: str | None = None) -> None:
        scenario = load_scenario(scenario_text)
        ovf = tmp_path / "ovf-env.xml"
        ovf.write_bytes(documents.render_ovf(scenario["ovf"]))
        self.journal_path = tmp_path / "journal.jsonl"
        self.platform = fabric.Platform({
            "journal": str(self.journal_path),
            "imds_doc": documents.imds_document(scenario),
            "imds_raw": imds_raw,
            "ovf_path": str(ovf),
            "vm_id": DEFAULT_VM_ID,
            "faults": list(faults),
            "timeout_hold_s": 0,
        })
        self.servers: dict[str, ThreadingHTTPServer] = {}
        self.threads: list[threading.Thread] = []

    def start(self) -> Sim:
        for role in ("imds", "wireserver"):
            handler = type(f"{role}Handler", (fabric.Handler,),
                           {"platform": self.platform, "role": role})
            srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            srv.daemon_threads = True
            t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
            t.start()
            self.servers[role] = srv
            self.threads.append(t)
        return self

    def stop(self) -> None:
        for srv in self.servers.values():
            srv.shutdown()
            srv.server_close()
        for t in self.threads:
            t.join(5)

    def request(self, role: str, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.servers[role].server_port,
                                          timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def imds(self, path: str, metadata: str | None = "true"):
        headers = {"Metadata": metadata} if metadata is not None else {}
        return self.request("imds", "GET", path, headers=headers)

    def journal(self) -> list[dict]:
        if not self.journal_path.exists():
            return []
        return [json.loads(line) for line in self.journal_path.read_text().splitlines()]


@contextmanager
def running(tmp_path, **kw):
    sim = Sim(tmp_path, **kw).start()
    try:
        yield sim
    finally:
        sim.stop()


IMDS = "/metadata/instance?api-version=2021-08-01&extended=true"


def test_imds_requires_metadata_header(tmp_path):
    with running(tmp_path) as sim:
        status, _, body = sim.imds(IMDS, metadata=None)
        assert status == 400
        assert b"metadata header" in body.lower()
        assert sim.imds(IMDS, metadata="false")[0] == 400
        assert sim.imds(IMDS, metadata="True")[0] == 200
        assert sim.imds(IMDS, metadata="TRUE")[0] == 200
    assert [e["status"] for e in sim.journal()] == [400, 400, 200, 200]


def test_imds_api_version_checked(tmp_path):
    with running(tmp_path) as sim:
        status, _, body = sim.imds("/metadata/instance?api-version=2099-01-01")
        assert status == 400
        assert "newest-versions" in json.loads(body)
        assert sim.imds("/metadata/instance")[0] == 400
        assert sim.imds("/metadata/instance?api-version=2019-06-01")[0] == 200


def test_imds_2019_body_has_no_extended(tmp_path):
    with running(tmp_path) as sim:
        status, headers, body = sim.imds("/metadata/instance?api-version=2019-06-01")
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        old = json.loads(body)
        new = json.loads(sim.imds(IMDS)[2])
    assert "extended" not in old
    assert "extended" in new
    assert old["compute"]["vmId"] == new["compute"]["vmId"] == DEFAULT_VM_ID
    assert old["network"]["interface"][0]["macAddress"] == "000D3A123456"


def test_imds_sub_path(tmp_path):
    with running(tmp_path) as sim:
        status, _, body = sim.imds(
            "/metadata/instance/compute/vmId?api-version=2021-08-01")
        assert status == 200
        assert json.loads(body) == DEFAULT_VM_ID
        status, _, body = sim.imds(
            "/metadata/instance/compute/osProfile?api-version=2021-08-01")
        assert json.loads(body)["adminUsername"] == "azureuser"
        assert sim.imds("/metadata/instance/compute/nope?api-version=2021-08-01")[0] == 404
        assert sim.imds("/metadata/other?api-version=2021-08-01")[0] == 404
    assert [e["endpoint"] for e in sim.journal()] == ["imds"] * 3 + ["imds-other"]


def test_imds_raw_served_verbatim(tmp_path):
    with running(tmp_path, imds_raw="{not json") as sim:
        status, _, body = sim.imds(IMDS)
    assert (status, body) == (200, b"{not json")


def test_reprovisiondata_serves_the_ovf(tmp_path):
    with running(tmp_path) as sim:
        status, _, body = sim.imds("/metadata/reprovisiondata?api-version=2019-06-01")
    assert status == 200
    assert body == (tmp_path / "ovf-env.xml").read_bytes()


@pytest.mark.parametrize("path", ["/machine/?comp=goalstate", "/machine?comp=goalstate"])
def test_goal_state_with_and_without_slash(tmp_path, path):
    with running(tmp_path) as sim:
        status, headers, body = sim.request("wireserver", "GET", path,
                                            headers={"x-ms-version": "2012-11-30"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/xml")
    gs = parse_goal_state(body)
    assert gs.instance_id == f"{DEFAULT_VM_ID}.sim-vm-01"
    assert gs.container_id == documents.CONTAINER_ID
    [entry] = sim.journal()
    assert (entry["endpoint"], entry["method"], entry["path"], entry["status"]) == (
        "goalstate", "GET", path, 200)
    assert entry["headers"]["x-ms-version"] == "2012-11-30"


def test_versions_and_unknown_wireserver_path(tmp_path):
    with running(tmp_path) as sim:
        status, _, body = sim.request("wireserver", "GET", "/?comp=versions")
        assert status == 200
        assert b"<Versions>" in body
        assert sim.request("wireserver", "GET", "/nothing")[0] == 404
    assert [(e["endpoint"], e["status"]) for e in sim.journal()] == [
        ("versions", 200), ("wireserver-other", 404)]


def test_health_post_journalled_with_parsed_state(tmp_path):
    gs = GoalState("1", documents.CONTAINER_ID, documents.role_instance_id())
    desc = Report("error", "missing UserName in ovf-env.xml", {}, DEFAULT_VM_ID).encode()
    with running(tmp_path) as sim:
        ready = render_health(gs, "Ready")
        assert sim.request("wireserver", "POST", "/machine?comp=health", ready,
                           {"Content-Type": "text/xml"})[0] == 200
        failed = render_health(gs, "NotReady", "ProvisioningFailed", desc)
        assert sim.request("wireserver", "POST", "/machine/?comp=health", failed)[0] == 200
        assert sim.request("wireserver", "POST", "/machine?comp=health",
                           b"<Health><oops")[0] == 400
    first, second, bad = sim.journal()
    assert first["endpoint"] == "health"
    assert first["health"]["state"] == "Ready"
    assert first["health"]["instance_id"] == documents.role_instance_id()
    assert first["body"] == ready.decode()
    assert second["health"]["state"] == "NotReady"
    assert second["health"]["substatus"] == "ProvisioningFailed"
    assert second["health"]["description"] == desc
    assert bad["status"] == 400
    assert "health" not in bad
    assert bad["health_error"]


def test_fault_script_500_twice_then_200(tmp_path):
    faults = [{"endpoint": "imds", "status": 500, "count": 2}]
    with running(tmp_path, faults=faults) as sim:
        statuses = [sim.imds(IMDS)[0] for _ in range(3)]
        # Other endpoints are not affected.
        assert sim.request("wireserver", "GET", "/machine/?comp=goalstate")[0] == 200
    assert statuses == [500, 500, 200]
    j = sim.journal()
    assert [(e["endpoint"], e["status"], e.get("fault", False)) for e in j] == [
        ("imds", 500, True), ("imds", 500, True), ("imds", 200, False),
        ("goalstate", 200, False)]


def test_fault_applies_before_header_check(tmp_path):
    # A scripted fault answers whatever the request looks like (as an
    # overloaded front end would), so a request without Metadata still gets it.
    with running(tmp_path, faults=[{"endpoint": "imds", "status": 503}]) as sim:
        assert sim.imds(IMDS, metadata=None)[0] == 503
        assert sim.imds(IMDS, metadata=None)[0] == 400


def test_fault_retry_after_header(tmp_path):
    faults = [{"endpoint": "goalstate", "status": 429, "retry_after": 7}]
    with running(tmp_path, faults=faults) as sim:
        status, headers, _ = sim.request("wireserver", "GET", "/machine/?comp=goalstate")
        assert (status, headers.get("Retry-After")) == (429, "7")
        status, headers, _ = sim.request("wireserver", "GET", "/machine/?comp=goalstate")
        assert status == 200
        assert "Retry-After" not in headers


def test_fault_reset_closes_the_connection(tmp_path):
    faults = [{"endpoint": "health", "status": "reset"}]
    body = render_health(GS, "Ready")
    with running(tmp_path, faults=faults) as sim:
        with pytest.raises(ConnectionError):
            sim.request("wireserver", "POST", "/machine?comp=health", body)
        assert sim.request("wireserver", "POST", "/machine?comp=health", body)[0] == 200
    j = sim.journal()
    assert [(e["status"], e.get("fault", False)) for e in j] == [("reset", True),
                                                                (200, False)]
    assert "health" not in j[0]  # the faulted report was never accepted


def test_fault_timeout_answers_nothing(tmp_path):
    # timeout_hold_s is 0 here: the server closes without answering.
    with running(tmp_path, faults=[{"endpoint": "imds", "status": "timeout"}]) as sim:
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            sim.imds(IMDS)
        assert sim.imds(IMDS)[0] == 200
    assert [e["status"] for e in sim.journal()] == ["timeout", 200]


def test_every_request_journalled_with_method_path_status(tmp_path):
    gs = GoalState("1", "c", "i")
    requests = [
        ("imds", "GET", IMDS, {"Metadata": "true"}, None, 200),
        ("imds", "GET", IMDS, {}, None, 400),
        ("imds", "GET", "/metadata/instance?api-version=1999", {"Metadata": "true"},
         None, 400),
        ("imds", "GET", "/x", {}, None, 404),
        ("wireserver", "GET", "/machine/?comp=goalstate", {}, None, 200),
        ("wireserver", "POST", "/machine?comp=health", {}, render_health(gs, "Ready"),
         200),
        ("wireserver", "POST", "/machine?comp=roleProperties", {}, b"<x/>", 200),
        ("wireserver", "GET", "/?comp=versions", {}, None, 200),
    ]
    with running(tmp_path) as sim:
        for role, method, path, headers, body, want in requests:
            assert sim.request(role, method, path, body, headers)[0] == want, path
    j = sim.journal()
    assert [(e["method"], e["path"], e["status"]) for e in j] == [
        (m, p, s) for _, m, p, _, _, s in requests]
    for e in j:
        assert e["t"] <= e["t_end"]
        assert isinstance(e["headers"], dict)


def test_certificates_without_transport_cert_is_400(tmp_path):
    with running(tmp_path) as sim:
        status = sim.request("wireserver", "GET", "/machine/x?comp=certificates")[0]
    assert status == 400
    assert [(e["endpoint"], e["status"]) for e in sim.journal()] == [("certificates", 400)]


def test_fault_on_versions_endpoint_applied(tmp_path):
    with running(tmp_path, faults=[{"endpoint": "versions", "status": 503}]) as sim:
        assert sim.request("wireserver", "GET", "/?comp=versions")[0] == 503
