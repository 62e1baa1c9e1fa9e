"""Inside an ``azure-sim boot --vm`` run's own PID and network namespace (PID 1):
the tap devices, the platform, and QEMU once per boot, watched to its end.

Started by :func:`azure_sim.vm.boot` as ``python -m azure_sim.vm _inner PLAN``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from azure_sim import deps, images, vmconsole, vmpowercut, vmssh
from azure_sim.vmplan import qemu_command


def _one_boot(plan: dict[str, Any], boot: int, console: vmconsole.Console) -> dict[str, Any]:
    """Run QEMU once (one boot of the VM) and watch it; return what was seen."""
    work = Path(plan["workdir"])
    res: dict[str, Any] = {"boot": boot, "timed_out": False}
    prober = None
    if boot == 1 and plan.get("login"):
        prober = vmssh.Prober(plan["login"], work)
    raw_report = work / f"report-{boot}.raw"
    console.switch(work / f"console-{boot}.raw")
    qemu_log = open(work / "qemu.log", "ab")
    res["t_qemu_start"] = time.time()
    qemu = subprocess.Popen(qemu_command(plan, boot), stdout=qemu_log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    res["qemu_pid"] = qemu.pid
    if prober:
        prober.start()
    deadline = res["t_qemu_start"] + plan["timeout"]
    report = None
    try:
        while True:
            console.poll()
            if report is None:
                report = vmconsole.read_report(raw_report)
                if report is not None:
                    res["t_report"] = time.time()
                    if prober:
                        prober.stop.set()
            if qemu.poll() is not None:
                break
            cut = vmpowercut.due(plan, boot, console.stage)
            if cut:  # the finally below kills QEMU by its pid: a power cut
                res["power_cut"] = cut
                break
            if time.time() > deadline:
                res["timed_out"] = True
                break
            time.sleep(0.05)
    finally:
        if qemu.poll() is None:
            os.kill(qemu.pid, signal.SIGKILL)
            qemu.wait()
        res["t_qemu_end"] = time.time()
        res["qemu_rc"] = qemu.returncode
        qemu_log.close()
        if prober:
            prober.stop.set()
            prober.join(vmssh.ATTEMPT_TIMEOUT_S + 5)
            res["ssh"] = prober.result
    console.poll()
    if report is None:
        report = vmconsole.read_report(raw_report)
        if report is not None:
            res["t_report"] = time.time()
    if report is not None:
        res["report_b64"], res["report_guest_time"] = report
    res["last_stage"] = console.stage
    res["console_stages"] = console.take_stages()
    res["milestones"] = console.take_milestones()
    return res


def _before_boot(plan: dict[str, Any], boot: int, env: dict[str, str]) -> None:
    for hook in plan["before_boot"].get(str(boot), []):
        if hook["kind"] == "redeploy_disk":
            # A redeploy: the VM comes back on a new host with a fresh resource disk.
            images.build_resource_disk(hook["spec"], Path(plan["resource_disk"]),
                                       Path(hook["cache"]), env)


def inner(plan_path: str) -> int:
    """PID 1 of the run's PID and network namespace: tap, platform, QEMU per boot."""
    plan = json.loads(Path(plan_path).read_text())
    work = Path(plan["workdir"])
    if os.readlink("/proc/self/ns/net") == plan["platform"]["host_netns"]:
        raise SystemExit("azure-sim vm: refusing to run in the host's network namespace")
    env = dict(os.environ)
    env["PATH"] = plan["tool_path"]
    env["LD_LIBRARY_PATH"] = plan["tool_ld_path"]
    env["PYTHONPATH"] = os.pathsep.join([plan["tools_dir"], str(deps.REPO)])
    for nic in plan["platform"]["nics"]:
        subprocess.run(["ip", "tuntap", "add", "dev", nic["peer"], "mode", "tap"], check=True)
    fabric_log = open(work / "platform" / "fabric.log", "wb")
    fabric = subprocess.Popen(
        [plan["python"], "-m", "azure_sim.fabric", str(work / "platform" / "config.json")],
        env=env, stdout=fabric_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    result: dict[str, Any] = {"boots": []}
    console = vmconsole.Console(work / "console-1.raw", work / "console.log")
    try:
        ready = Path(plan["platform"]["ready_file"])
        deadline = time.time() + 20
        while not ready.exists():
            if fabric.poll() is not None or time.time() > deadline:
                raise SystemExit("azure-sim vm: the platform did not start; see fabric.log")
            time.sleep(0.01)
        for boot in range(1, plan["boots"] + 1):
            _before_boot(plan, boot, env)
            vmpowercut.arm(plan, boot)
            res = _one_boot(plan, boot, console)
            vmpowercut.disarm(plan)
            if res.get("power_cut"):  # what the cut left, before the next boot
                vmpowercut.after_cut(plan, work, env)
            result["boots"].append(res)
            if (res["timed_out"] or not res.get("report_b64")) and not res.get("power_cut"):
                break
    finally:
        fabric.send_signal(signal.SIGTERM)
        try:
            fabric.wait(5)
        except subprocess.TimeoutExpired:
            fabric.kill()
            fabric.wait()
        console.close()
        (work / "result.json").write_text(json.dumps(result))
    return 0
