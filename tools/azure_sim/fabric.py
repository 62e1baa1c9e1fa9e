"""The simulated Azure platform: IMDS, wireserver and DHCP in their own netns.

Run as ``python -m azure_sim.fabric CONFIG.json`` inside a network namespace
the sandbox created. It configures its side of the veth pairs, puts
168.63.129.16 and 169.254.169.254 on its own loopback, serves HTTP on both,
runs dnsmasq for DHCP, and journals every request (JSON lines) so the report
can show what the VM asked and when. It refuses to run in the host's network
namespace.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from defusedxml import ElementTree

from azure_sim import documents, pps, waagent
from azure_sim.dnsmasq import (  # noqa: F401  (fabric's names since before the split)
    IMDS_ADDR,
    WIRESERVER_ADDR,
    dnsmasq_command,
    start_dnsmasq,
    stop_dnsmasq,
)
from azure_sim.faults import FaultScript

IMDS_VERSIONS = {"2017-04-02", "2017-08-01", "2017-12-01", "2018-02-01", "2018-10-01",
                 "2019-06-01",
                 "2019-08-15", "2020-09-01", "2021-01-01", "2021-02-01", "2021-08-01",
                 "2021-12-13", "2023-07-01"}


def parse_health(body: bytes) -> dict[str, Optional[str]]:
    """Pull state, substatus and description out of a health report."""
    root = ElementTree.fromstring(body)

    def find(path: str) -> Optional[str]:
        node = root.find(path)
        return node.text if node is not None else None

    role = "Container/RoleInstanceList/Role"
    return {
        "incarnation": find("GoalStateIncarnation"),
        "container_id": find("Container/ContainerId"),
        "instance_id": find(f"{role}/InstanceId"),
        "state": find(f"{role}/Health/State"),
        "substatus": find(f"{role}/Health/Details/SubStatus"),
        "description": find(f"{role}/Health/Details/Description"),
    }


class Platform:
    """State shared by the HTTP handlers."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.faults = FaultScript(cfg.get("faults", []))
        self.journal_path = Path(cfg["journal"])
        self._lock = threading.Lock()
        self.imds_doc = cfg["imds_doc"]
        self.imds_raw: Optional[str] = cfg.get("imds_raw")
        self.ovf = Path(cfg["ovf_path"]).read_bytes() if cfg.get("ovf_path") else b""
        # The Azure Linux Agent's documents (waagent: true): ExtensionsConfig and more
        self.waagent = waagent.Documents(cfg) if cfg.get("waagent") else None
        self.goal_state = documents.goal_state(
            documents.INCARNATION, documents.CONTAINER_ID,
            documents.role_instance_id(cfg["vm_id"]),
            cfg.get("certificates_url") or (
                waagent.certificates_url(cfg["vm_id"]) if self.waagent else None),
            waagent.extensions_config_url(cfg["vm_id"]) if self.waagent else None)
        self.certificates_xml: Optional[bytes] = None
        self.power_cut: Optional[dict[str, Any]] = cfg.get("power_cut")
        self.cut_seen = 0  # requests to the cut endpoint while armed
        if cfg.get("certificates_pkcs12"):
            self.pkcs12 = Path(cfg["certificates_pkcs12"]).read_bytes()
        else:  # with the agent, Azure's tenant certificate: the goal state always has one
            self.pkcs12 = waagent.tenant_bundle() if self.waagent else None
        self.pps: Optional[pps.PoolController] = None
        if cfg.get("pps"):
            self.pps = pps.PoolController(cfg["pps"], self,
                                          restart_dhcp=lambda mac: self.restart_dhcp(mac))
        self.restart_dhcp: Callable[..., None] = lambda forget_mac=None: None

    def journal(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, sort_keys=True) + "\n"
        with self._lock, open(self.journal_path, "a", encoding="utf-8") as fh:
            fh.write(line)


class Handler(BaseHTTPRequestHandler):
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    platform: Platform  # set on the subclass per server
    role: str

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    # -- plumbing ---------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              extra: Optional[dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                   struct.pack("ii", 1, 0))
        self.close_connection = True

    def _record(self, endpoint: str, status: Any, body: bytes, t0: float,
                extra: Optional[dict[str, Any]] = None) -> None:
        entry = {
            "t": t0, "t_end": time.time(), "endpoint": endpoint,
            "method": self.command, "path": self.path, "status": status,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace")[:4096],
        }
        entry.update(extra or {})
        self.platform.journal(entry)

    def _power_cut(self, endpoint: str, body: bytes, t0: float) -> bool:
        """The armed power cut's n-th request: the VM dies before it reaches us."""
        cut = self.platform.power_cut
        if not cut or cut["endpoint"] != endpoint or not os.path.exists(cut["armed"]):
            return False
        with self.platform._lock:
            self.platform.cut_seen += 1
            if self.platform.cut_seen != cut["n"]:
                return False
        self._record(endpoint, "cut", body, t0, {"power_cut": True})
        Path(cut["file"]).write_text(f"request {endpoint}:{cut['n']}\n")
        time.sleep(30)  # no answer: the sandbox kills the VM meanwhile
        self.close_connection = True
        return True

    def _fault(self, endpoint: str, body: bytes, t0: float) -> bool:
        """Apply the next scripted fault for ``endpoint``; True when it answered."""
        if self._power_cut(endpoint, body, t0):
            return True
        fault = self.platform.faults.next(endpoint)
        if fault is None:
            return False
        if fault.delay_s:
            time.sleep(fault.delay_s)
        if fault.status == "reset":
            self._record(endpoint, "reset", body, t0, {"fault": True})
            self._reset()
        elif fault.status == "timeout":
            self._record(endpoint, "timeout", body, t0, {"fault": True})
            time.sleep(self.platform.cfg.get("timeout_hold_s", 30))
            self.close_connection = True
        else:
            extra = {}
            if fault.retry_after is not None:
                extra["Retry-After"] = str(fault.retry_after)
            self._record(endpoint, fault.status, body, t0, {"fault": True})
            self._send(int(fault.status), b'{"error": "simulated fault"}', extra=extra)
        return True

    # -- dispatch -----------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802  (status uploads: azure_sim.waagent)
        self._dispatch()

    def _dispatch(self) -> None:
        t0 = time.time()
        body = self._body() if self.command in ("POST", "PUT") else b""
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        try:
            if self.role == "imds":
                self._imds(url.path, query, body, t0)
            elif self.role == "hostplugin":
                waagent.hostplugin(self, self.platform.waagent, url.path, body, t0)
            else:
                self._wireserver(url.path, query, body, t0)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _imds(self, path: str, query: dict[str, list[str]], body: bytes, t0: float) -> None:
        if path.startswith("/metadata/instance"):
            endpoint = "imds"
        elif path.startswith("/metadata/reprovisiondata"):
            endpoint = "reprovisiondata"
        else:
            self._record("imds-other", 404, body, t0)
            self._send(404, b'{"error": "Not found"}')
            return
        if self._fault(endpoint, body, t0):
            return
        if (self.headers.get("Metadata") or "").lower() != "true":
            self._record(endpoint, 400, body, t0)
            self._send(400, b'{"error": "Bad request. Required metadata header not specified"}')
            return
        version = (query.get("api-version") or [""])[0]
        if version not in IMDS_VERSIONS:
            self._record(endpoint, 400, body, t0)
            self._send(400, json.dumps({
                "error": "Bad request. api-version is invalid or was not specified.",
                "newest-versions": sorted(IMDS_VERSIONS)[-3:]}).encode())
            return
        if endpoint == "reprovisiondata":
            status, payload, ctype = 200, self.platform.ovf, "text/xml; charset=utf-8"
            if self.platform.pps:
                status, payload, ctype = self.platform.pps.reprovision_answer()
            self._record(endpoint, status, body, t0)
            self._send(status, payload, ctype)
            return
        if self.platform.imds_raw is not None:
            payload = self.platform.imds_raw.encode()
        else:
            doc: Any = json.loads(documents.imds_body(self.platform.imds_doc, version))
            for part in [p for p in path.split("/")[3:] if p]:
                doc = doc.get(part) if isinstance(doc, dict) else None
                if doc is None:
                    self._record(endpoint, 404, body, t0)
                    self._send(404, b'{"error": "Not found"}')
                    return
            payload = json.dumps(doc).encode()
        self._record(endpoint, 200, body, t0)
        self._send(200, payload, "application/json; charset=utf-8")

    def _wireserver(self, path: str, query: dict[str, list[str]], body: bytes,
                    t0: float) -> None:
        comp = (query.get("comp") or [""])[0]
        if path in ("/", "") and comp == "versions":
            if self._fault("versions", body, t0):
                return
            self._record("versions", 200, body, t0)
            self._send(200, documents.VERSIONS_XML, "text/xml; charset=utf-8")
            return
        if path.rstrip("/") == "/machine" and comp == "goalstate":
            if self._fault("goalstate", body, t0):
                return
            self._record("goalstate", 200, body, t0)
            self._send(200, self.platform.goal_state, "text/xml; charset=utf-8")
            return
        if path.rstrip("/") == "/machine" and comp == "health" and self.command == "POST":
            if self._fault("health", body, t0):
                return
            try:
                parsed = parse_health(body)
            except Exception as exc:  # a malformed report is journalled, answered 400
                self._record("health", 400, body, t0, {"health_error": str(exc)})
                self._send(400, b"", "text/xml")
                return
            self._record("health", 200, body, t0, {"health": parsed})
            self._send(200, b"", "text/xml")
            if self.platform.pps and parsed.get("state") == "Ready":
                self.platform.pps.on_ready()
            return
        if path.rstrip("/") == "/machine" and comp == "roleProperties":
            self._record("roleproperties", 200, body, t0)
            self._send(200, b"", "text/xml")
            return
        if path == "/provisioning/health" and self.command == "POST":
            if self._fault("health", body, t0):
                return
            self._record("health-json", 200, body, t0)
            self._send(200, b"{}")
            return
        if comp == "certificates":
            if self._fault("certificates", body, t0):
                return
            status, payload = self._certificates()
            self._record("certificates", status, body, t0)
            self._send(status, payload, "text/xml; charset=utf-8")
            return
        if self.platform.waagent and waagent.wireserver(self, self.platform.waagent, path,
                                                        query, body, t0):
            return
        self._record("wireserver-other", 404, body, t0)
        self._send(404, b"", "text/xml")

    def _certificates(self) -> tuple[int, bytes]:
        from azure_sim import certs

        cert_b64 = self.headers.get("x-ms-guest-agent-public-x509-cert")
        if not cert_b64 or self.platform.pkcs12 is None:
            return 400, b""
        try:
            data = certs.envelope(self.platform.pkcs12, cert_b64)
        except Exception:  # the agent sent something we cannot encrypt to
            return 400, b""
        return 200, certs.certificates_xml(data)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def configure_network(cfg: dict[str, Any]) -> None:
    """Bring up lo with the platform addresses and our side of each veth."""
    if cfg.get("host_netns") and os.readlink("/proc/self/ns/net") == cfg["host_netns"]:
        raise SystemExit("azure-sim platform: refusing to run in the host's network "
                         "namespace")
    _ip("link", "set", "lo", "up")
    _ip("addr", "add", f"{IMDS_ADDR}/32", "dev", "lo")
    _ip("addr", "add", f"{WIRESERVER_ADDR}/32", "dev", "lo")
    deadline = time.time() + 10
    for nic in cfg["nics"]:
        # /proc/self/net follows our netns; the inherited /sys does not.
        while f"{nic['peer']}:" not in Path("/proc/self/net/dev").read_text():
            if time.time() > deadline:
                raise SystemExit(f"azure-sim platform: {nic['peer']} never appeared")
            time.sleep(0.005)
        _ip("addr", "add", f"{nic['gateway']}/24", "dev", nic["peer"])
        _ip("link", "set", nic["peer"], "up")


def serve(cfg: dict[str, Any]) -> int:
    configure_network(cfg)
    plat = Platform(cfg)
    servers = []
    roles = [("imds", IMDS_ADDR, 80), ("wireserver", WIRESERVER_ADDR, 80)]
    if plat.waagent:
        roles.append(("hostplugin", WIRESERVER_ADDR, waagent.HOSTPLUGIN_PORT))
    for role, addr, port in roles:
        handler = type(f"{role}Handler", (Handler,), {"platform": plat, "role": role})
        srv = ThreadingHTTPServer((addr, port), handler)
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
    try:
        dns = [start_dnsmasq(cfg)]
    except RuntimeError as exc:
        raise SystemExit(f"azure-sim platform: {exc}") from exc

    def restart_dhcp(forget_mac: Optional[str] = None) -> None:
        # A hot-plugged NIC is a new interface with a new MAC: serve it afresh,
        # its address no longer leased to the NIC that went away.
        stop_dnsmasq(dns[0])
        leases = Path(cfg["dhcp"]["leases"])
        if forget_mac and leases.exists():
            kept = [ln for ln in leases.read_text().splitlines(keepends=True)
                    if forget_mac.lower() not in ln.lower()]
            leases.write_text("".join(kept))
        dns[0] = start_dnsmasq(cfg)

    plat.restart_dhcp = restart_dhcp
    Path(cfg["ready_file"]).write_text(str(os.getpid()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    stop_dnsmasq(dns[0])
    for srv in servers:
        srv.shutdown()
    return 0


def main(argv: list[str]) -> int:
    cfg = json.loads(Path(argv[0]).read_text())
    return serve(cfg)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
