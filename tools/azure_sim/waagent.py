"""What the simulated platform serves the Azure Linux Agent (``waagent: true``).

Read in waagent 2.7.3 (Debian 12) and 2.12.0.2 (Debian 13). After provisioning
the agent runs its extension handler, which on every goal-state period (6 s)
fetches the goal state and the documents it links, then uploads the VM's status:

* wireserver (168.63.129.16:80): the goal state with ``ExtensionsConfig`` and
  ``Certificates`` links; ``HostingEnvironmentConfig`` (the agent reads the
  ``Incarnation/@instance``, ``Role/@name`` and ``Deployment/@name``),
  ``SharedConfig`` (kept as text), ``Certificates`` (always: Azure's goal state
  always carries the tenant certificate, so one is made when the scenario has
  none), an **empty ExtensionsConfig** (no plug-ins; the ``Prod`` agent family
  whose manifest lists only an old agent, so no self-update; the status blob
  URL, ``BlockBlob``); ``comp=telemetrydata`` and ``/HealthService`` (the
  agent's own telemetry and HostGAPlugin health signals, answered and counted);
* the status blob (``/simstorage/...`` on the wireserver's address, inside the
  run's network namespace): a direct ``PUT`` answers 201, as Azure storage;
* the HostGAPlugin (168.63.129.16:32526): ``/versions``, ``/health``,
  ``/vmSettings`` (404: no FastTrack, the agent then uses the ExtensionsConfig),
  ``PUT /status`` (the status the plug-in forwards to the blob: this is where
  the agent uploads first), ``/extensionArtifact`` (our own documents only) and
  ``PUT /vmAgentLog``;
* IMDS answers the agent's ``api-version=2018-02-01`` (``fabric.IMDS_VERSIONS``).

Every request is journalled; a status upload also records the agent's own
summary of itself (``vm_status``: agent status and version, extension count).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Optional
from xml.sax.saxutils import escape

from azure_sim import documents

WIRESERVER = "168.63.129.16"
HOSTPLUGIN_PORT = 32526
STORAGE = "/simstorage"
ZERO_GUID = "00000000-0000-0000-0000-000000000000"
OLD_AGENT = "2.2.53"  # an agent older than any Debian ships: the manifest offers no update


def _machine(vm_id: str) -> str:
    return (f"http://{WIRESERVER}:80/machine/{documents.CONTAINER_ID}/"
            f"{documents.role_instance_id(vm_id)}")


def extensions_config_url(vm_id: str) -> str:
    return f"{_machine(vm_id)}?comp=config&type=extensionsConfig&incarnation=1"


def certificates_url(vm_id: str) -> str:
    return f"{_machine(vm_id)}?comp=certificates&incarnation=1"


def status_blob_url(vm_id: str) -> str:
    return (f"http://{WIRESERVER}:80{STORAGE}/vmstatus/{vm_id}.status"
            "?sv=2018-03-28&sr=b&sp=rw&sig=SIMULATED")


def manifest_url() -> str:
    return f"http://{WIRESERVER}:80{STORAGE}/agents/Microsoft.OSTCLinuxAgent_Prod_manifest.xml"


def _deployment(vm_id: str, hostname: str, role_attrs: str) -> str:
    """Deployment, Incarnation and Role: how both configuration documents begin."""
    cid, role, name = (escape(documents.CONTAINER_ID),
                       escape(documents.role_instance_id(vm_id)), escape(hostname))
    return (f'  <Deployment name="{cid}" guid="{{{vm_id}}}" incarnation="0">\n'
            f'    <Service name="{name}" guid="{{{ZERO_GUID}}}" />\n'
            f'    <ServiceInstance name="{cid}.0" guid="{{{vm_id}}}" />\n'
            "  </Deployment>\n"
            f'  <Incarnation number="1" instance="{role}" guid="{{{vm_id}}}" />\n'
            f'  <Role guid="{{{vm_id}}}" name="{name}" {role_attrs} />\n')


def hosting_environment_config(vm_id: str, hostname: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<HostingEnvironmentConfig version="1.0.0.0" goalStateIncarnation="1">\n'
            "  <StoredCertificates />\n"
            + _deployment(vm_id, hostname, 'hostingEnvironmentVersion="1"')
            + "</HostingEnvironmentConfig>\n").encode()


def shared_config(vm_id: str, hostname: str, ip: str) -> bytes:
    role = escape(documents.role_instance_id(vm_id))
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            '<SharedConfig version="1.0.0.0" goalStateIncarnation="1">\n'
            + _deployment(vm_id, hostname, 'settleTimeSeconds="0"')
            + f'  <Instances>\n    <Instance id="{role}" address="{escape(ip)}">\n'
            '      <FaultDomains randomId="0" updateId="0" updateCount="0" />\n'
            "      <InputEndpoints />\n    </Instance>\n  </Instances>\n"
            "</SharedConfig>\n").encode()


def extensions_config(vm_id: str, location: str) -> bytes:
    """No extensions: the agent family, the status blob, the goal state's metadata."""
    # createdOnTicks: 100 ns ticks since 0001-01-01 (2026-01-01T00:00:00Z)
    return f"""<?xml version="1.0" encoding="utf-8"?>
<Extensions version="1.0.0.0" goalStateIncarnation="1">
  <GuestAgentExtension xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
    <GAFamilies>
      <GAFamily>
        <Name>Prod</Name>
        <Uris><Uri>{escape(manifest_url())}</Uri></Uris>
      </GAFamily>
    </GAFamilies>
    <Location>{escape(location)}</Location>
  </GuestAgentExtension>
  <StatusUploadBlob statusBlobType="BlockBlob">{escape(status_blob_url(vm_id))}</StatusUploadBlob>
  <InVMGoalStateMetaData inSvdSeqNo="1" createdOnTicks="639029952000000000" \
activityId="{vm_id}" correlationId="{documents.CONTAINER_ID}" />
</Extensions>
""".encode()


def agent_manifest() -> bytes:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<PluginVersionManifest xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <Plugins>
    <Plugin>
      <Version>{OLD_AGENT}</Version>
      <Uris><Uri>http://{WIRESERVER}:80{STORAGE}/agents/WALinuxAgent-{OLD_AGENT}.zip</Uri></Uris>
    </Plugin>
  </Plugins>
  <InternalPlugins />
</PluginVersionManifest>
""".encode()


def qemu_args(accel: str) -> list[str]:
    """QEMU options for the agent: Debian's unit has ``ConditionVirtualization=microsoft``.

    systemd (252, 257) trusts CPUID before DMI: under TCG QEMU's ``TCGTCGTCGTCG``
    signature says "qemu". Without it (``tcg-cpuid=off``) the hypervisor is
    unnamed and systemd reads DMI, where only a field starting "Hyper-V" names
    Microsoft: Azure's Gen2 product version "Hyper-V UEFI Release v4.1" (Azure's
    own CPUID says "Microsoft Hv"). QEMU merges this ``-smbios type=1`` with the
    VM's other one.
    """
    out = ["-smbios", "type=1,version=Hyper-V UEFI Release v4.1"]
    return (["-cpu", "qemu64,tcg-cpuid=off"] if accel == "tcg" else []) + out


def tenant_bundle() -> bytes:
    """A PKCS#12 with one certificate and its key, as Azure's tenant certificate."""
    from azure_sim import certs  # cryptography: only when the agent runs

    return certs.make_bundle(["tenant"])[0]


HOSTPLUGIN_VERSIONS = b'["2015-09-01", "2016-02-01", "2016-03-01"]'


def vm_status_summary(status_json: bytes) -> dict[str, Any]:
    """What the agent says of itself in an uploaded status (never raises)."""
    try:
        doc = json.loads(status_json)
        agent = doc["aggregateStatus"]["guestAgentStatus"]
        message = (agent.get("formattedMessage") or {}).get("message")
        return {"status": agent.get("status"), "version": agent.get("version"),
                "message": message,
                "extensions": len(doc["aggregateStatus"].get("handlerAggregateStatus") or [])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return {"error": f"unreadable status: {type(exc).__name__}"}


def hostplugin_status(body: bytes) -> tuple[Optional[str], bytes]:
    """The HostGAPlugin's PUT /status body: (the blob URL, the status it carries)."""
    try:
        doc = json.loads(body)
        return doc.get("requestUri"), base64.b64decode(doc.get("content") or "")
    except (ValueError, TypeError, AttributeError):
        return None, b""


class Documents:
    """The agent's documents for one VM (rendered once)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        vm_id = cfg["vm_id"]
        compute = (cfg.get("imds_doc") or {}).get("compute") or {}
        hostname = compute.get("name") or "sim-vm-01"
        ip = cfg["nics"][0]["ip"] if cfg.get("nics") else documents.nic_ip(0)
        self.by_path = {
            f"/machine/{documents.CONTAINER_ID}/hec":
                ("hostingenv", hosting_environment_config(vm_id, hostname)),
            f"/machine/{documents.CONTAINER_ID}/sc":
                ("sharedconfig", shared_config(vm_id, hostname, ip)),
            f"{STORAGE}/agents/Microsoft.OSTCLinuxAgent_Prod_manifest.xml":
                ("agent-manifest", agent_manifest()),
        }
        self.extensions = extensions_config(vm_id, compute.get("location") or "westeurope")


def wireserver(handler: Any, docs: Documents, path: str, query: dict[str, list[str]],
               body: bytes, t0: float) -> bool:
    """Answer the agent's wireserver and storage requests; False: not one of them."""
    comp = (query.get("comp") or [""])[0]
    kind = (query.get("type") or [""])[0]
    if path in docs.by_path and handler.command == "GET":
        endpoint, payload = docs.by_path[path]
        handler._record(endpoint, 200, body, t0)
        handler._send(200, payload, "text/xml; charset=utf-8")
        return True
    if comp == "config" and kind == "extensionsConfig":
        handler._record("extensionsconfig", 200, body, t0)
        handler._send(200, docs.extensions, "text/xml; charset=utf-8")
        return True
    if path.startswith(f"{STORAGE}/vmstatus/") and handler.command == "PUT":
        handler._record("status-blob", 201, body, t0, {"vm_status": vm_status_summary(body)})
        handler._send(201, b"", "application/octet-stream")
        return True
    if comp == "telemetrydata" or path == "/HealthService":
        endpoint = "telemetry" if comp == "telemetrydata" else "healthservice"
        handler._record(endpoint, 200, body, t0)
        handler._send(200, b"", "text/xml")
        return True
    return False


def hostplugin(handler: Any, docs: Documents, path: str, body: bytes, t0: float) -> None:
    """The HostGAPlugin on port 32526."""
    if path == "/versions":
        handler._record("hostplugin-versions", 200, body, t0)
        handler._send(200, HOSTPLUGIN_VERSIONS)
    elif path == "/health":
        handler._record("hostplugin-health", 200, body, t0)
        handler._send(200, b"", "text/plain")
    elif path == "/vmSettings":  # no FastTrack here: the agent uses the ExtensionsConfig
        handler._record("hostplugin-vmsettings", 404, body, t0)
        handler._send(404, b'{"error": "vmSettings not supported"}')
    elif path == "/status" and handler.command == "PUT":
        blob, status = hostplugin_status(body)
        ok = bool(blob) and blob.split("?")[0].endswith(".status")
        handler._record("hostplugin-status", 200 if ok else 400, b"", t0,
                        {"vm_status": vm_status_summary(status), "blob": (blob or "")[:200]})
        handler._send(200 if ok else 400, b"", "text/plain")
    elif path == "/extensionArtifact":
        location = handler.headers.get("x-ms-artifact-location") or ""
        local = location.split(f"{WIRESERVER}:80", 1)[-1].split("?")[0]
        found = docs.by_path.get(local)
        handler._record("hostplugin-artifact", 200 if found else 404, body, t0)
        handler._send(200 if found else 404, found[1] if found else b"", "text/xml")
    elif path == "/vmAgentLog" and handler.command == "PUT":
        handler._record("hostplugin-log", 200, b"", t0, {"bytes": len(body)})
        handler._send(200, b"", "text/plain")
    else:
        handler._record("hostplugin-other", 404, body, t0)
        handler._send(404, b"", "text/plain")
