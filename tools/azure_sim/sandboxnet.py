"""The sandbox VM's network: the platform in its own network namespace, joined
to the VM's by veth pairs created straight into both (never in the host's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from azure_sim.sandboxfs import sh


def spawn_platform(plan: dict[str, Any], work: Path) -> tuple[subprocess.Popen, Path]:
    """Start the platform (azure_sim.fabric) in a new network namespace; it and its log."""
    cfg_path = work / "platform.json"
    # The platform hot-plugs NICs (pps) into the VM's netns through this.
    netns_fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    cfg_path.write_text(json.dumps({**plan["platform"], "vm_netns_fd": netns_fd}))
    env = dict(os.environ)
    env.update(plan["tool_env"])
    platform_log = work / "platform" / "platform.log"
    platform = subprocess.Popen(
        ["unshare", "--net", sys.executable, "-m", "azure_sim.fabric",
         str(cfg_path)], env=env, stdin=subprocess.DEVNULL, pass_fds=(netns_fd,),
        stdout=open(platform_log, "ab"), stderr=subprocess.STDOUT)
    os.close(netns_fd)
    return platform, platform_log


def join_platform(plan: dict[str, Any], root: Path, platform: subprocess.Popen,
                  platform_log: Path) -> None:
    """Wire the VM's NICs to the platform's namespace; wait until it serves."""
    pid = str(platform.pid)
    # `ip link ... netns PID` means the namespace PID is in *now*: wait
    # until unshare has moved the platform out of ours (our own procfs:
    # the outer /proc speaks the host's pids).
    proc = root / "proc"
    ours = os.readlink(proc / "self/ns/net")
    deadline = time.time() + 20
    while True:
        try:
            if os.readlink(proc / pid / "ns/net") != ours:
                break
        except OSError:
            pass
        if platform.poll() is not None or time.time() > deadline:
            raise RuntimeError("platform did not get its own network namespace")
        time.sleep(0.001)
    sh("ip", "link", "set", "lo", "up")
    for nic in plan["platform"]["nics"]:
        # Created straight into both namespaces: never in the host's.
        # One ifindex on both ends: a lost carrier reads DOWN (see pps.py).
        index = ["index", str(nic["index"])] if nic.get("index") else []
        sh("ip", "link", "add", nic["name"], *index, "address", nic["mac"], "type",
           "veth", "peer", "name", nic["peer"], *index, "netns", pid)
    ready = Path(plan["platform"]["ready_file"])
    deadline = time.time() + 20
    while not ready.exists():
        if platform.poll() is not None:
            tail = platform_log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"platform exited with {platform.returncode}: {tail}")
        if time.time() > deadline:
            raise RuntimeError("platform did not come up within 20 s")
        time.sleep(0.005)
