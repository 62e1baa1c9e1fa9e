"""Preprovisioning (PPS): the pool flows as the simulated platform plays them.

A pool VM boots with the pool's placeholder ovf-env.xml (PreprovisionedVm
true, PreprovisionedVMType set) and IMDS says ``extended.compute.ppsType``.
When its first Ready arrives (the pool Ready) the platform plays the type's
timeline (``timeline``, pure): Savable loses its NIC; an OS-disk VM is
powered off. At assignment the customer's documents replace the pool's
(reprovisiondata answers 200 with the customer's ovf-env.xml instead of 404,
IMDS carries the customer's identity and ppsType "None"), and the event that
ends the guest's wait happens: a vnet switch (the NIC's link goes down and up:
Running and unknown types), a new NIC hot-plugged (Savable), or the VM is
powered on again with the customer's DVD (OS disk).

Two parts, for two processes: ``plan`` (host side, from ``boot``) and
``PoolController`` (in the platform's network namespace, from ``fabric``).
The platform asks the sandbox to power the VM off, on or to restart it
(:mod:`azure_sim.power`): only the sandbox may end the VM's processes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from azure_sim import documents

CUSTOMER_OVF = "customer-ovf-env.xml"
# Both ends of a pool VM's NIC share one ifindex (see sandbox.start_platform);
# the NIC a Savable VM gets on assignment is a new device, with a new one.
POOL_NIC_INDEX = 2
NEW_NIC_INDEX = 3
PLACEHOLDER_FILE = "/var/tmp/placeholder-custom-data-applied"


def timeline(pps: dict[str, Any]) -> list[tuple[float, str]]:
    """The platform's steps, as (seconds after the pool Ready, action), in order."""
    kind, assign = pps["kind"], float(pps["assign_after_s"])
    steps: list[tuple[float, str]] = [(assign, "assign")]
    if kind == "savable":
        steps += [(float(pps["detach_after_s"]), "detach_nic"),
                  (assign + float(pps["nic_attach_after_s"]), "attach_nic")]
    elif kind == "os_disk":
        steps += [(float(pps["shutdown_after_s"]), "power_off"), (assign, "power_on")]
    else:  # running, and an unknown type played as Running
        steps.append((assign, "vnet_switch"))
    if pps.get("reboot_after_s") is not None:
        steps.append((float(pps["reboot_after_s"]), "restart"))
    order = ["detach_nic", "power_off", "restart", "assign", "vnet_switch", "attach_nic",
             "power_on"]
    return sorted(steps, key=lambda s: (s[0], order.index(s[1])))


# --- host side: the plan ---------------------------------------------------------


def _private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def plan(scenario: dict[str, Any], work: Path, plan: dict[str, Any],
         attach_dvd: Callable[[Path, bytes], tuple[int, int]]) -> None:
    """Add the pool flow to the sandbox's plan (the customer is who the report judges)."""
    pps = scenario["pps"]
    docs = documents.pps_documents(scenario)
    customer_ovf = work / CUSTOMER_OVF
    _private(customer_ovf, docs["customer_ovf"])
    customer = pps["ovf"]
    plan["expect_user"] = customer.get("username") or (
        docs["customer_imds"]["compute"]["osProfile"]["adminUsername"])
    plan["placeholder_user"] = (scenario.get("ovf") or {}).get("username")
    plan.pop("password_file", None)
    if customer.get("password"):
        _private(work / "customer-password", customer["password"].encode())
        plan["password_file"] = str(work / "customer-password")
    secrets = [t for t in ((scenario.get("ovf") or {}).get("custom_data"),
                           customer.get("custom_data")) if t]
    if secrets:
        plan["secret_texts"] = secrets
    plan["expect_files"] = [*plan.get("expect_files", []), PLACEHOLDER_FILE]
    power = work / "platform" / "power"
    plan["pps"] = {"power_file": str(power)}
    if pps["kind"] == "os_disk":
        major, minor = attach_dvd(work / "customer.iso", docs["customer_ovf"])
        plan["pps"]["dvd"] = {"major": major, "minor": minor}
    platform = plan["platform"]
    platform["nics"][0]["index"] = POOL_NIC_INDEX
    platform["imds_doc"] = docs["pool_imds"]
    platform["pps"] = {
        "kind": pps["kind"], "ovf_type": pps["ovf_type"],
        "timeline": timeline(pps), "customer_ovf_path": str(customer_ovf),
        "customer_imds": docs["customer_imds"], "customer_mac": docs["customer_mac"],
        "power_file": str(power),
    }


# --- platform side -----------------------------------------------------------------


class PoolController:
    """Plays the pool flow in the platform's namespace once the pool Ready arrives.

    ``platform`` is the fabric's Platform (its ``imds_doc`` and ``ovf`` are
    swapped at assignment, its ``journal`` records each step); ``restart_dhcp``
    restarts dnsmasq for a new NIC, forgetting the old NIC's lease; ``run``
    runs a command (a test passes a recorder).
    """

    def __init__(self, cfg: dict[str, Any], platform: Any,
                 restart_dhcp: Callable[[str], None] = lambda mac: None,
                 run: Optional[Callable[..., Any]] = None) -> None:
        self.cfg = cfg
        self.platform = platform
        self.restart_dhcp = restart_dhcp
        self.run = run or self._run
        self.assigned = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self.thread: Optional[threading.Thread] = None

    # The answers
    def reprovision_answer(self) -> tuple[int, bytes, str]:
        """404 until the customer is assigned, then the customer's ovf-env.xml."""
        if not self.assigned.is_set():
            return 404, b'{"error": "Not found"}', "application/json; charset=utf-8"
        return 200, self.platform.ovf, "text/xml; charset=utf-8"

    def on_ready(self) -> None:
        """A Ready health report arrived: the first one starts the pool flow."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self.event("pool_ready")
        self.thread = threading.Thread(target=self._play, args=(time.time(),), daemon=True)
        self.thread.start()

    def event(self, name: str, **extra: Any) -> None:
        self.platform.journal({"t": time.time(), "endpoint": "pps", "event": name, **extra})

    def _play(self, t_ready: float) -> None:
        for after, action in self.cfg["timeline"]:
            delay = t_ready + after - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                getattr(self, action)()
                self.event(action)
            except Exception as exc:  # journalled: the report shows the step that broke
                self.event(action, error=str(exc))

    # The steps
    def assign(self) -> None:
        self.platform.ovf = Path(self.cfg["customer_ovf_path"]).read_bytes()
        self.platform.imds_doc = self.cfg["customer_imds"]
        self.assigned.set()

    def vnet_switch(self) -> None:
        # The VM moves to the customer's vnet: its NIC loses the carrier and
        # gets it back (operstate DOWN, then UP; routes stay, marked linkdown).
        # The kernel's linkwatch may delay a carrier change by up to a second
        # and would fold a quick down/up into nothing: hold the carrier off
        # until the VM's NIC reads DOWN (what its netlink listeners receive).
        self.run(["ip", "link", "set", self.nic["peer"], "down"])
        deadline = time.time() + 5
        while not self.vm_link_down() and time.time() < deadline:
            time.sleep(0.02)
        self.run(["ip", "link", "set", self.nic["peer"], "up"])

    def vm_link_down(self) -> bool:
        """Does the VM's NIC read operstate DOWN (seen from inside its namespace)?"""
        fd = self.platform.cfg.get("vm_netns_fd")
        out = subprocess.run(["nsenter", f"--net={self.vm_netns()}", "ip", "-o", "link",
                              "show", "dev", self.nic["name"]], capture_output=True,
                             text=True, pass_fds=(fd,), check=False).stdout
        return "state DOWN" in out

    def detach_nic(self) -> None:
        # Deleting our end removes the VM's eth0 too: RTM_DELLINK in the VM.
        self.run(["ip", "link", "del", self.nic["peer"]])

    def attach_nic(self) -> None:
        nic = self.nic
        old_mac, nic["mac"] = nic["mac"], self.cfg["customer_mac"]
        nic["index"] = NEW_NIC_INDEX
        index = str(NEW_NIC_INDEX)
        self.run(["ip", "link", "add", nic["peer"], "index", index, "type", "veth", "peer",
                  "name", nic["name"], "index", index, "address", nic["mac"],
                  "netns", self.vm_netns()], vm_fd=True)
        self.run(["ip", "addr", "add", f"{nic['gateway']}/24", "dev", nic["peer"]])
        self.run(["ip", "link", "set", nic["peer"], "up"])
        self.restart_dhcp(old_mac)

    def power_off(self) -> None:
        self._power("off")

    def power_on(self) -> None:
        self._power("on")

    def restart(self) -> None:
        self._power("restart")

    # Plumbing
    @property
    def nic(self) -> dict[str, Any]:
        return self.platform.cfg["nics"][0]

    def _power(self, what: str) -> None:
        with open(self.cfg["power_file"], "a", encoding="utf-8") as fh:
            fh.write(what + "\n")

    def vm_netns(self) -> str:
        """The VM's network namespace, as a path; never the host's, never ours."""
        fd = self.platform.cfg.get("vm_netns_fd")
        if fd is None:
            raise RuntimeError("no handle on the VM's network namespace")
        path = f"/proc/self/fd/{fd}"
        target = os.readlink(path)
        if target in (self.platform.cfg.get("host_netns"), os.readlink("/proc/self/ns/net")):
            raise RuntimeError(f"refusing to change network namespace {target}")
        return path

    def _run(self, cmd: list[str], vm_fd: bool = False) -> None:
        fd = self.platform.cfg.get("vm_netns_fd")
        subprocess.run(cmd, check=True, capture_output=True,
                       pass_fds=(fd,) if vm_fd and fd is not None else ())


def observe(plan: dict[str, Any], root: Path) -> dict[str, Any]:
    """After the boot: is the pool's placeholder account on the VM?"""
    name = plan.get("placeholder_user")
    if not name:
        return {}
    passwd = (root / "etc/passwd").read_text().splitlines()
    return {"placeholder_user_exists": any(line.split(":")[0] == name for line in passwd)}


def report_events(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pool flow's steps from the platform's journal."""
    return [e for e in journal if e.get("endpoint") == "pps"]


def report_block(scenario: dict[str, Any], journal: list[dict[str, Any]],
                 t0: Optional[float], login: Optional[float] = None) -> Optional[dict[str, Any]]:
    """The report's ``pps`` block: when each step of the pool flow happened.

    ``login``: when the customer's key was first in place (wall clock).
    """
    if not scenario.get("pps"):
        return None

    def rel(t: Optional[float]) -> Optional[float]:
        return None if t is None or t0 is None else round(t - t0, 3)

    steps = [e for e in journal if e.get("endpoint") == "pps"]
    first = {}
    for e in steps:
        first.setdefault(e["event"], e["t"])
    assigned = first.get("assign")
    after = [e for e in journal if assigned is not None and e["t"] >= assigned]
    customer_ready = next((e["t"] for e in after if e.get("endpoint") == "health"
                           and (e.get("health") or {}).get("state") == "Ready"), None)
    fetched = next((e["t"] for e in after if e.get("endpoint") == "reprovisiondata"
                    and e.get("status") == 200), None)
    return {
        "type": scenario["pps"]["type"],
        "pool_ready_t": rel(first.get("pool_ready")),
        "nic_detached_t": rel(first.get("detach_nic")),
        "assigned_t": rel(assigned),
        "nic_attached_t": rel(first.get("attach_nic")),
        "reprovision_fetched_t": rel(fetched),
        "customer_ready_t": rel(customer_ready),
        "assignment_to_ready_s": _since(assigned, customer_ready),
        # What a customer feels: when an SSH login with the key can succeed.
        "assignment_to_login_s": _since(assigned, login),
        "steps": [{"t": rel(e["t"]), "event": e["event"], "error": e.get("error")}
                  for e in steps],
    }


def _since(start: Optional[float], end: Optional[float]) -> Optional[float]:
    return None if start is None or end is None else round(end - start, 3)


def problems(report: dict[str, Any], expect: str) -> list[str]:
    """What a pool flow adds to the verdict (the pool's own Ready is expected)."""
    block = report["pps"]
    out = [f"pool flow step {s['event']} failed: {s['error']}"
           for s in block["steps"] if s["error"]]
    if report.get("placeholder_user_exists"):
        out.append("the placeholder's user exists")
    if report.get("placeholder_custom_data_applied"):
        out.append("the placeholder's customData ran")
    if expect == "ready":
        if block["pool_ready_t"] is None:
            out.append("no Ready for the pool")
        if block["customer_ready_t"] is None:
            out.append("no Ready for the customer")
    elif expect == "failure" and block["customer_ready_t"] is not None:
        out.append("Ready was reported for the customer")
    return out
