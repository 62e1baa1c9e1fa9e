"""azure-sim: what the platform serves the Azure Linux Agent (``waagent: true``).

The fields checked are the ones waagent 2.7.3 / 2.12 read (facts from its code,
restated here). Served on ephemeral 127.0.0.1 ports only.
"""

from __future__ import annotations

import base64
import json
import subprocess
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from defusedxml import ElementTree

from azure_sim import documents, fabric, waagent
from azure_sim.scenario import DEFAULT_VM_ID, ScenarioError, load_scenario
from tests.unit.test_sim_fabric import Sim


class AgentSim(Sim):
    def __init__(self, tmp_path, agent=True):
        super().__init__(tmp_path)
        self.platform = fabric.Platform({**self.platform.cfg, "waagent": agent,
                                         "nics": [{"ip": "10.0.0.4"}]})
        self.agent = agent

    def start(self):
        super().start()
        if self.agent:
            handler = type("hp", (fabric.Handler,), {"platform": self.platform,
                                                     "role": "hostplugin"})
            srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            srv.daemon_threads = True
            t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
            t.start()
            self.servers["hostplugin"] = srv
            self.threads.append(t)
        return self

    def get(self, url, role="wireserver", headers=None):
        parts = urlsplit(url)
        return self.request(role, "GET", f"{parts.path}?{parts.query}", headers=headers)


@pytest.fixture
def sim(tmp_path):
    s = AgentSim(tmp_path).start()
    yield s
    s.stop()


def _links(goal_state: bytes) -> dict[str, str]:
    conf = ElementTree.fromstring(goal_state).find(
        "Container/RoleInstanceList/RoleInstance/Configuration")
    return {child.tag: child.text for child in conf}


def test_goal_state_links_every_document_the_agent_fetches(sim):
    status, _, gs = sim.request("wireserver", "GET", "/machine/?comp=goalstate")
    links = _links(gs)
    assert status == 200
    assert {"HostingEnvironmentConfig", "SharedConfig", "Certificates", "ExtensionsConfig",
            "ConfigName"} <= set(links)
    hec = ElementTree.fromstring(sim.get(links["HostingEnvironmentConfig"])[2])
    # HostingEnv: Incarnation/@instance, Role/@name, Deployment/@name
    assert hec.find("Incarnation").get("instance") == documents.role_instance_id(DEFAULT_VM_ID)
    assert hec.find("Role").get("name") and hec.find("Deployment").get("name")
    assert sim.get(links["SharedConfig"])[0] == 200
    assert [e["endpoint"] for e in sim.journal()] == ["goalstate", "hostingenv", "sharedconfig"]


def test_without_the_agent_the_goal_state_is_unchanged(tmp_path):
    s = AgentSim(tmp_path, agent=False).start()
    try:
        links = _links(s.request("wireserver", "GET", "/machine/?comp=goalstate")[2])
        assert "ExtensionsConfig" not in links and "Certificates" not in links
        assert s.request("wireserver", "GET", f"/machine/{documents.CONTAINER_ID}/hec")[0] \
            == 404
    finally:
        s.stop()


def test_empty_extensions_config_with_status_blob_and_no_agent_update(sim):
    links = _links(sim.request("wireserver", "GET", "/machine/?comp=goalstate")[2])
    ext = ElementTree.fromstring(sim.get(links["ExtensionsConfig"])[2])
    assert ext.find("Plugins") is None and ext.find("PluginSettings") is None
    blob = ext.find("StatusUploadBlob")
    assert blob.get("statusBlobType") == "BlockBlob"
    assert blob.text == waagent.status_blob_url(DEFAULT_VM_ID)
    meta = ext.find("InVMGoalStateMetaData")
    assert meta.get("createdOnTicks").isdigit() and meta.get("activityId")
    [family] = ext.findall("GuestAgentExtension/GAFamilies/GAFamily")
    assert family.find("Name").text == "Prod"  # AutoUpdate.GAFamily's default
    manifest = ElementTree.fromstring(sim.get(family.find("Uris/Uri").text)[2])
    versions = [v.text for v in manifest.iter("Version")]
    # self-update only moves to a newer agent: Debian ships 2.7.3 and 2.12
    assert versions and all(tuple(map(int, v.split("."))) < (2, 7, 3) for v in versions)


def test_certificates_decrypt_as_the_agent_does(sim, tmp_path):
    # waagent: a transport key pair, then `openssl cms -decrypt | openssl pkcs12 -nodes
    # -password pass:`; the goal state always carries Azure's tenant certificate
    key, crt = tmp_path / "prv.pem", tmp_path / "crt.pem"
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-subj", "/CN=t", "-days", "1",
                    "-newkey", "rsa:2048", "-keyout", key, "-out", crt], check=True,
                   capture_output=True)
    cert_b64 = "".join(line for line in crt.read_text().splitlines() if "-----" not in line)
    links = _links(sim.request("wireserver", "GET", "/machine/?comp=goalstate")[2])
    status, _, body = sim.get(links["Certificates"], headers={
        "x-ms-cipher-name": "DES_EDE3_CBC", "x-ms-guest-agent-public-x509-cert": cert_b64})
    assert status == 200
    doc = ElementTree.fromstring(body)
    assert doc.find("Format").text == "Pkcs7BlobWithPfxContents"
    # waagent writes Data verbatim below a MIME header and lets openssl read it as S/MIME
    p7m = ("MIME-Version:1.0\nContent-Disposition: attachment; filename=\"c.p7m\"\n"
           "Content-Type: application/x-pkcs7-mime; name=\"c.p7m\"\n"
           "Content-Transfer-Encoding: base64\n\n" + doc.find("Data").text).encode()
    p12 = subprocess.run(["openssl", "cms", "-decrypt", "-inkey", key, "-recip", crt],
                         input=p7m, capture_output=True, check=True).stdout
    pem = subprocess.run(["openssl", "pkcs12", "-nodes", "-password", "pass:"], input=p12,
                         capture_output=True, check=True).stdout
    assert b"BEGIN CERTIFICATE" in pem and b"PRIVATE KEY" in pem


def _status(agent_status="Ready"):
    return json.dumps({"version": "1.1", "aggregateStatus": {
        "guestAgentStatus": {"version": "2.12.0.2", "status": agent_status,
                             "formattedMessage": {"lang": "en-US", "message":
                                                  "GuestAgent is running"}},
        "handlerAggregateStatus": []}}).encode()


def test_status_uploads_through_the_hostplugin_and_directly(sim):
    url = waagent.status_blob_url(DEFAULT_VM_ID)
    assert b"2015-09-01" in sim.request("hostplugin", "GET", "/versions")[2]
    assert sim.request("hostplugin", "GET", "/health")[0] == 200
    assert sim.request("hostplugin", "GET", "/vmSettings")[0] == 404  # no FastTrack
    body = json.dumps({"requestUri": url, "headers": [],
                       "content": base64.b64encode(_status()).decode()}).encode()
    assert sim.request("hostplugin", "PUT", "/status", body=body)[0] == 200
    parts = urlsplit(url)
    assert sim.request("wireserver", "PUT", f"{parts.path}?{parts.query}",
                       body=_status("NotReady"))[0] == 201
    assert sim.request("hostplugin", "PUT", "/status", body=b"{}")[0] == 400
    uploads = [e for e in sim.journal() if e["endpoint"] in ("hostplugin-status",
                                                             "status-blob")]
    assert [(e["endpoint"], e["vm_status"].get("status")) for e in uploads] == [
        ("hostplugin-status", "Ready"), ("status-blob", "NotReady"),
        ("hostplugin-status", None)]
    assert uploads[0]["vm_status"] == {"status": "Ready", "version": "2.12.0.2",
                                       "message": "GuestAgent is running", "extensions": 0}


def test_agent_telemetry_and_imds_api_version_are_answered(sim):
    assert sim.request("wireserver", "POST", "/machine?comp=telemetrydata", body=b"<x/>")[0] \
        == 200
    assert sim.request("wireserver", "POST", "/HealthService", body=b"{}")[0] == 200
    status, _, body = sim.imds("/metadata/instance/compute?api-version=2018-02-01")
    assert status == 200 and json.loads(body)["vmId"] == DEFAULT_VM_ID


def test_the_scenario_key():
    on = load_scenario("waagent: true\n")
    assert on["waagent"] is True and on["ovf"]["provision_guest_agent"] is True
    assert b"<ns1:ProvisionGuestAgent>true<" in documents.render_ovf(on["ovf"])
    off = load_scenario(None)
    assert off["waagent"] is False
    assert b"<ns1:ProvisionGuestAgent>false<" in documents.render_ovf(off["ovf"])
    # ProvisionGuestAgent stays what the scenario says
    said = load_scenario("waagent: true\novf: {provision_guest_agent: false}\n")
    assert said["ovf"]["provision_guest_agent"] is False
    with pytest.raises(ScenarioError, match="'waagent'"):
        load_scenario("waagent: yes please\n")


def test_the_sandbox_refuses_the_agent():
    from azure_sim.boot import SimError, boot

    with pytest.raises(SimError, match="needs a VM"):
        boot(load_scenario("waagent: true\n"), cloud_init="22.4.2", datasource="plugin")


def test_the_vm_cpu_names_no_hypervisor_under_tcg():
    assert waagent.qemu_args("tcg")[:2] == ["-cpu", "qemu64,tcg-cpuid=off"]
    assert waagent.qemu_args("kvm") == ["-smbios", "type=1,version=Hyper-V UEFI Release v4.1"]
