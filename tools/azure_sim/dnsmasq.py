"""The platform's DHCP server: dnsmasq with Azure's options (245, 121), in the platform netns.

``fabric`` runs it; the command line is a pure function of the scenario's DHCP
behaviour.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

WIRESERVER_ADDR = "168.63.129.16"
IMDS_ADDR = "169.254.169.254"


def dnsmasq_command(cfg: dict[str, Any], dnsmasq: str = "dnsmasq") -> list[str]:
    """The dnsmasq command line for the scenario's DHCP behaviour (pure)."""
    d = cfg["dhcp"]
    cmd = [dnsmasq, "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
           "--bind-interfaces", "--except-interface=lo", "--no-ping",
           "--dhcp-authoritative", "--log-dhcp", f"--log-facility={d['log']}",
           f"--dhcp-leasefile={d['leases']}", f"--pid-file={d['pid']}",
           "--user=root", "--group=root", "--no-resolv", "--no-hosts"]
    for i, nic in enumerate(cfg["nics"]):
        tag = f"nic{i}"
        gw = nic["gateway"]
        cmd += [f"--interface={nic['peer']}",
                f"--dhcp-range=set:{tag},{nic['ip']},{nic['ip']},255.255.255.0,1h",
                f"--dhcp-host={nic['mac']},{nic['ip']}",
                f"--dhcp-option=tag:{tag},option:router,{gw}",
                f"--dhcp-option=tag:{tag},option:dns-server,{WIRESERVER_ADDR}",
                f"--dhcp-option=tag:{tag},option:domain-name,"
                "sim.internal.cloudapp.net"]
        if d.get("option_121", True):
            routes = [f"{WIRESERVER_ADDR}/32,{gw}", f"{IMDS_ADDR}/32,{gw}"]
            if i == 0:
                routes.append(f"0.0.0.0/0,{gw}")
            cmd.append(f"--dhcp-option=tag:{tag},121," + ",".join(routes))
        if d.get("option_245", True):
            address = d.get("option_245_address") or WIRESERVER_ADDR
            if d.get("option_245_address"):
                # As hex octets: dnsmasq would send its own address for 0.0.0.0.
                address = ":".join(f"{int(o):02x}" for o in address.split("."))
            cmd.append(f"--dhcp-option-force=tag:{tag},245,{address}")
    return cmd


def start_dnsmasq(cfg: dict[str, Any]) -> subprocess.Popen:
    pid_file = Path(cfg["dhcp"]["pid"])
    pid_file.unlink(missing_ok=True)
    dns = subprocess.Popen(dnsmasq_command(cfg), env=dict(os.environ),
                           stdin=subprocess.DEVNULL)
    # dnsmasq writes its pid file once it listens.
    deadline = time.time() + 10
    while not pid_file.exists():
        if dns.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"dnsmasq failed (exit {dns.poll()})")
        time.sleep(0.005)
    return dns


def stop_dnsmasq(dns: subprocess.Popen) -> None:
    dns.terminate()
    try:
        dns.wait(5)
    except subprocess.TimeoutExpired:
        dns.kill()
