"""``azure-sim boot --vm``: the same scenario and platform, but a real Debian 12 VM.

The VM is the cached image of ``vmimage`` (Debian packages only, our .deb
installed by dpkg) booted under QEMU with its root disk ``snapshot=on``, so
every boot starts pristine. The platform is the sandbox boot's own
(``fabric.py``: IMDS, wireserver, dnsmasq) and so is the report
(``report.build_report``).

Layout of one run::

    host: vm.boot()                       work dir /tmp/azure-sim-vm-XXXX (0700)
      unshare --net --pid --fork --kill-child
        python -m azure_sim.vm _inner     PID 1 of a fresh PID and network namespace
          ip tuntap add azplat0           the VM's NIC; the fabric's nics[].peer
          python -m azure_sim.fabric      169.254.169.254 and 168.63.129.16 on lo, dnsmasq
          qemu-system-x86_64              -netdev tap,ifname=azplat0

The provisioning DVD is a virtio-scsi CD-ROM holding ``images.build_iso``'s
image, the resource disk a virtio disk with serial ``AZURE-SIM-RESOURCE`` (a
test-only udev rule in the image links it as /dev/disk/cloud/azure_resource),
DMI comes from ``-smbios`` (vmId, Azure's chassis asset tag), so ds-identify
finds Azure by itself. The first serial port is the console: the supervisor
timestamps every line as it arrives. After cloud-final a test-only unit writes
its report to the second serial port and powers off. A VM that does not finish
in time is killed by its pid; the report then names the last stage seen on the
console and the console log is kept.

Clean-up: QEMU is killed by its pid; the fabric and dnsmasq die with PID 1 of
their PID namespace; the tap device and the platform addresses die with the
network namespace; the work directory is removed in a ``finally``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from azure_sim import deps, documents, images
from azure_sim.boot import SimError, dmi_uuid
from azure_sim.report import build_report
from azure_sim.scenario import DEFAULT_VM_ID

REPO = deps.REPO
TOOLS = REPO / "tools"
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
QEMU = "qemu-system-x86_64"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
BEGIN = "AZURE-SIM-REPORT-BEGIN"
END = "AZURE-SIM-REPORT-END"

# What the console shows, in boot order: (stage name, text that marks it).
# systemd cuts unit names to the console width, so cloud-init's own lines
# ("running 'init-local'") mark its stages. The stage only moves forward.
STAGE_MARKERS = [
    ("firmware", "SeaBIOS"),
    ("kernel", "Linux version"),
    ("initramfs", "Run /init"),
    ("systemd", "Welcome to"),
    ("init-local", "Starting cloud-init-local"),
    ("init-local", "running 'init-local'"),
    ("init", "running 'init'"),
    ("modules-config", "running 'modules:config'"),
    ("modules-final", "running 'modules:final'"),
    ("cloud-final-done", "finished at"),
    ("report", "azure-sim"),
    ("poweroff", "reboot: Power down"),
]
STAGE_ORDER = list(dict.fromkeys(stage for stage, _ in STAGE_MARKERS))
MILESTONES = {
    "init_local_start": "running 'init-local'",
    "cloud_final_done": "finished at",
}


def missing_requirement() -> Optional[str]:
    """Why this machine cannot boot the VM, or None."""
    if os.geteuid() != 0:
        return "azure-sim boot --vm needs root (network namespace, tap device)"
    if shutil.which(QEMU) is None:
        return f"missing '{QEMU}': install the Debian package qemu-system-x86 (make test-vm does)"
    if shutil.which("debootstrap") is None:
        from azure_sim import vmimage

        if not (vmimage.VM_CACHE / "tree.done").exists():
            return "missing 'debootstrap' to build the VM image: install the Debian package " \
                   "debootstrap (make test-vm does)"
    for tool, package in (("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return f"missing '{tool}': install the Debian package {package}"
    if not Path("/dev/net/tun").exists():
        return "no /dev/net/tun: this machine cannot make tap devices"
    if not (deps.CACHE / "layer" / "usr/sbin/dnsmasq").exists():
        return "missing dnsmasq (and mkntfs) in the image layer: run 'make deps'"
    return None


def default_deb() -> Path:
    from azure_sim import packaging

    return REPO / "dist" / f"python3-cloudinit-azure_{packaging.debian_version()}_all.deb"


def accel() -> str:
    """TCG unless AZURE_SIM_VM_ACCEL says otherwise (kvm where it really works)."""
    return os.environ.get("AZURE_SIM_VM_ACCEL", "tcg")


def qemu_command(plan: dict[str, Any]) -> list[str]:
    """The QEMU command line for one boot (pure)."""
    work = Path(plan["workdir"])
    cmd = [QEMU, "-accel", plan["accel"], "-machine", "pc", "-m", str(plan["memory_mib"]),
           "-smp", str(plan["cpus"]), "-nodefaults", "-no-user-config", "-display", "none",
           "-no-reboot",
           "-kernel", plan["kernel"], "-initrd", plan["initrd"],
           "-append", "root=LABEL=root rw console=ttyS0,115200 net.ifnames=0 panic=-1",
           # the root disk first, so it is vda and the resource disk vdb
           "-drive", f"file={plan['root_image']},if=none,id=root0,format=raw,snapshot=on",
           "-device", "virtio-blk-pci,drive=root0,serial=AZURE-SIM-ROOT",
           "-smbios", f"type=1,manufacturer=Microsoft Corporation,product=Virtual Machine,"
                      f"uuid={plan['dmi_uuid']}",
           "-smbios", f"type=3,manufacturer=Microsoft Corporation,asset={AZURE_ASSET_TAG}",
           "-chardev", f"file,id=con,path={work / 'console.raw'}", "-serial", "chardev:con",
           "-chardev", f"file,id=rep,path={work / 'report.raw'}", "-serial", "chardev:rep",
           "-fw_cfg", f"name=opt/azure-sim/plan,file={work / 'guest-plan.json'}"]
    if plan.get("iso"):
        cmd += ["-device", "virtio-scsi-pci,id=scsi0",
                "-drive", f"file={plan['iso']},if=none,id=cd0,media=cdrom,format=raw,"
                          "readonly=on",
                "-device", "scsi-cd,drive=cd0,bus=scsi0.0"]
    if plan.get("resource_disk"):
        from azure_sim.vmimage import RESOURCE_SERIAL

        cmd += ["-drive", f"file={plan['resource_disk']},if=none,id=rd0,format=raw",
                "-device", f"virtio-blk-pci,drive=rd0,serial={RESOURCE_SERIAL}"]
    for i, nic in enumerate(plan["platform"]["nics"]):
        cmd += ["-netdev", f"tap,id=n{i},ifname={nic['peer']},script=no,downscript=no",
                "-device", f"virtio-net-pci,netdev=n{i},mac={nic['mac']}"]
    return cmd


def plan_vm(scenario: dict[str, Any], work: Path, deb: Path,
            timeout: float) -> dict[str, Any]:
    from azure_sim import vmimage

    if scenario["media"] == "seed":
        raise SimError("media: seed is not supported with --vm (the image stays Debian's)")
    if scenario["boots"] != 1:
        raise SimError("boots > 1 is not supported with --vm yet")
    if "key_fingerprints" in (scenario.get("ovf") or {}) and \
            scenario["ovf"]["key_fingerprints"]:
        raise SimError("ovf.key_fingerprints is not supported with --vm yet")
    if not deb.exists():
        raise SimError(f"{deb} is missing: run 'make deb'")
    try:
        root_image = vmimage.build_root_image(deb)
        kernel, initrd = vmimage.kernel_files(vmimage.VM_CACHE / "tree")
    except vmimage.ImageError as exc:
        raise SimError(str(exc)) from exc
    env = deps.tool_env()
    ovf_path = work / "ovf-env.xml"
    if "ovf_xml" in scenario:
        ovf_bytes = scenario["ovf_xml"].encode()
    else:
        ovf_bytes = documents.render_ovf(scenario["ovf"])
    fd = os.open(ovf_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(ovf_bytes)
    plan: dict[str, Any] = {
        "workdir": str(work), "accel": accel(), "memory_mib": 1024, "cpus": 2,
        "kernel": str(kernel), "initrd": str(initrd), "root_image": str(root_image),
        "dmi_uuid": dmi_uuid(DEFAULT_VM_ID, scenario["generation"]),
        "timeout": timeout, "python": sys.executable, "tools_dir": str(TOOLS),
        "tool_path": env["PATH"], "tool_ld_path": env.get("LD_LIBRARY_PATH", ""),
    }
    if scenario["media"] == "iso":
        plan["iso"] = str(images.build_iso(work / "ovf.iso", {"ovf-env.xml": ovf_bytes}))
    if scenario["resource_disk"]:
        plan["resource_disk"] = str(images.build_resource_disk(
            scenario["resource_disk"], work / "resource.img", deps.CACHE / "sim", env))
    ovf = scenario.get("ovf") or {}
    guest_plan: dict[str, Any] = {
        "expect_user": ovf.get("username") or documents.imds_document(scenario)[
            "compute"]["osProfile"]["adminUsername"],
        "expect_files": ["/var/tmp/custom-data-applied"],
    }
    if ovf.get("password"):
        guest_plan["password"] = ovf["password"]
    if ovf.get("custom_data"):
        guest_plan["secret_texts"] = [ovf["custom_data"]]
    fd = os.open(work / "guest-plan.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(guest_plan, fh)
    nics = [{"name": f"eth{i}", "peer": f"azplat{i}", "mac": documents.nic_mac(i),
             "ip": documents.nic_ip(i), "gateway": f"10.0.{i}.1"}
            for i in range(scenario["nics"])]
    plat = work / "platform"
    plat.mkdir(mode=0o700)
    plan["platform"] = {
        "journal": str(plat / "journal.jsonl"), "ready_file": str(plat / "ready"),
        "imds_doc": documents.imds_document(scenario), "imds_raw": scenario.get("imds_raw"),
        "ovf_path": str(ovf_path), "vm_id": DEFAULT_VM_ID, "faults": scenario["faults"],
        "nics": nics,
        "dhcp": {**scenario["dhcp"], "log": str(plat / "dnsmasq.log"),
                 "leases": str(plat / "dnsmasq.leases"), "pid": str(plat / "dnsmasq.pid")},
        "host_netns": os.readlink("/proc/self/ns/net"),
    }
    (plat / "config.json").write_text(json.dumps(plan["platform"]))
    plan["qemu"] = qemu_command(plan)
    (work / "vm-plan.json").write_text(json.dumps(plan, indent=1))
    return plan


# --- inside the namespaces -------------------------------------------------------

class Console:
    """Reads the console file as QEMU writes it; timestamps and classifies lines."""

    def __init__(self, raw: Path, log: Path) -> None:
        self.raw = raw
        self.log = open(log, "w", encoding="utf-8")
        self.pos = 0
        self.partial = b""
        self.stage = "qemu started"
        self.stages: list[dict[str, Any]] = []
        self.milestones: dict[str, float] = {}

    def _later(self, stage: str) -> bool:
        if self.stage not in STAGE_ORDER:
            return True
        return STAGE_ORDER.index(stage) > STAGE_ORDER.index(self.stage)

    def poll(self) -> None:
        try:
            with open(self.raw, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except OSError:
            return
        if not data:
            return
        self.pos += len(data)
        now = time.time()
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for raw_line in lines:
            line = ANSI.sub("", raw_line.decode("utf-8", "replace").replace("\r", ""))
            self.log.write(f"[{now:.3f}] {line}\n")
            for stage, marker in STAGE_MARKERS:
                if marker in line and self._later(stage):
                    self.stage = stage
                    self.stages.append({"t": now, "stage": stage})
                    break
            for name, marker in MILESTONES.items():
                if marker in line and name not in self.milestones:
                    self.milestones[name] = now
        self.log.flush()

    def close(self) -> None:
        self.log.close()


def _report(raw: Path) -> Optional[tuple[str, float]]:
    """(base64 payload, guest time of the END line) once the report is complete."""
    try:
        text = raw.read_text(errors="replace").replace("\r", "")
    except OSError:
        return None
    if BEGIN not in text:
        return None
    body = text.split(BEGIN, 1)[1]
    if END not in body:
        return None
    payload, _, rest = body.partition(END)
    stamp = rest.split("\n", 1)[0].strip()
    return "".join(payload.split()), float(stamp or 0)


def inner(plan_path: str) -> int:
    """PID 1 of the run's PID and network namespace: tap, platform, QEMU."""
    plan = json.loads(Path(plan_path).read_text())
    work = Path(plan["workdir"])
    result: dict[str, Any] = {"timed_out": False}
    if os.readlink("/proc/self/ns/net") == plan["platform"]["host_netns"]:
        raise SystemExit("azure-sim vm: refusing to run in the host's network namespace")
    env = dict(os.environ)
    env["PATH"] = plan["tool_path"]
    env["LD_LIBRARY_PATH"] = plan["tool_ld_path"]
    env["PYTHONPATH"] = os.pathsep.join([plan["tools_dir"], str(REPO)])
    for nic in plan["platform"]["nics"]:
        subprocess.run(["ip", "tuntap", "add", "dev", nic["peer"], "mode", "tap"], check=True)
    fabric_log = open(work / "platform" / "fabric.log", "wb")
    fabric = subprocess.Popen(
        [plan["python"], "-m", "azure_sim.fabric", str(work / "platform" / "config.json")],
        env=env, stdout=fabric_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    ready = Path(plan["platform"]["ready_file"])
    deadline = time.time() + 20
    while not ready.exists():
        if fabric.poll() is not None or time.time() > deadline:
            raise SystemExit("azure-sim vm: the platform did not start; see fabric.log")
        time.sleep(0.01)
    console = Console(work / "console.raw", work / "console.log")
    qemu_log = open(work / "qemu.log", "wb")
    result["t_qemu_start"] = time.time()
    qemu = subprocess.Popen(plan["qemu"], stdout=qemu_log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    result["qemu_pid"] = qemu.pid
    deadline = result["t_qemu_start"] + plan["timeout"]
    report = None
    try:
        while True:
            console.poll()
            if report is None:
                report = _report(work / "report.raw")
                if report is not None:
                    result["t_report"] = time.time()
            if qemu.poll() is not None:
                break
            if time.time() > deadline:
                result["timed_out"] = True
                os.kill(qemu.pid, signal.SIGKILL)
                qemu.wait()
                break
            time.sleep(0.05)
        console.poll()
        if report is None:
            report = _report(work / "report.raw")
            if report is not None:
                result["t_report"] = time.time()
    finally:
        if qemu.poll() is None:
            os.kill(qemu.pid, signal.SIGKILL)
            qemu.wait()
        result["t_qemu_end"] = time.time()
        result["qemu_rc"] = qemu.returncode
        fabric.send_signal(signal.SIGTERM)
        try:
            fabric.wait(5)
        except subprocess.TimeoutExpired:
            fabric.kill()
            fabric.wait()
        console.close()
        result["last_stage"] = console.stage
        result["console_stages"] = console.stages
        result["milestones"] = console.milestones
        if report is not None:
            result["report_b64"], result["report_guest_time"] = report
        (work / "result.json").write_text(json.dumps(result))
    return 0


# --- host side ----------------------------------------------------------------

def _run_namespaced(work: Path, timeout: float) -> int:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TOOLS), str(REPO)])
    log = open(work / "supervisor.log", "wb")
    proc = subprocess.Popen(
        ["unshare", "--net", "--pid", "--fork", "--kill-child",
         sys.executable, "-m", "azure_sim.vm", "_inner", str(work / "vm-plan.json")],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    try:
        # The supervisor enforces the VM's limit; this one only catches a stuck supervisor.
        return proc.wait(timeout + 60)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        return proc.wait()
    except BaseException:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    finally:
        log.close()


def _keep_logs(work: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True, mode=0o700)
    for item in ("console.log", "supervisor.log", "qemu.log", "platform"):
        src = work / item
        if src.is_dir():
            shutil.copytree(src, dest / item, dirs_exist_ok=True)
        elif src.exists():
            shutil.copy2(src, dest / item)


def boot(scenario: dict[str, Any], *, deb: Optional[str] = None,
         timeout: Optional[float] = None, logs_to: Optional[str] = None,
         cloud_init: str = "22.4.2") -> dict[str, Any]:
    """Boot the scenario in a QEMU VM and return the report (as the sandbox's)."""
    reason = missing_requirement()
    if reason:
        raise SimError(reason)
    if cloud_init != "22.4.2":
        raise SimError("--vm boots Debian 12, whose cloud-init is 22.4.2")
    limit = float(timeout or max(scenario["timeout_s"], 300))
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="azure-sim-vm-"))
    os.chmod(work, 0o700)
    try:
        plan = plan_vm(scenario, work, Path(deb) if deb else default_deb(), limit)
        t_boot = time.time()
        rc = _run_namespaced(work, limit)
        res_path = work / "result.json"
        if not res_path.exists():
            tail = (work / "supervisor.log").read_text(errors="replace")[-2000:]
            raise SimError(f"the VM supervisor died (exit {rc}):\n{tail}")
        res = json.loads(res_path.read_text())
        raw: dict[str, Any] = {}
        if res.get("report_b64"):
            raw = json.loads(base64.b64decode(res["report_b64"]))
            # Guest clock -> host clock: the END line left the guest at its
            # stamp and reached us (polled every 50 ms) at t_report.
            offset = res["t_report"] - res["report_guest_time"] if res.get(
                "report_guest_time") else 0.0
            for stage in raw.get("stages") or []:
                stage["start"] += offset
                stage["end"] += offset
            if raw.get("t0") is not None:
                raw["t0"] += offset
            for key, value in list((raw.get("watch") or {}).items()):
                if value is not None:
                    raw["watch"][key] = value + offset
        else:
            offset = None
        if raw.get("t0") is None:
            raw["t0"] = res.get("milestones", {}).get("init_local_start") or res[
                "t_qemu_start"]
        kept = None
        if res["timed_out"] or not res.get("report_b64"):
            what = (f"timed out after {limit:.0f} s" if res["timed_out"]
                    else f"QEMU exited (rc {res.get('qemu_rc')}) without a report")
            raw["error"] = f"{what}; last stage on the serial console: {res['last_stage']}"
            kept = Path(logs_to) if logs_to else (
                deps.CACHE / "vm" / "logs" / f"{scenario.get('name')}-{int(started)}")
        journal = []
        jpath = Path(plan["platform"]["journal"])
        if jpath.exists():
            journal = [json.loads(line) for line in jpath.read_text().splitlines() if line]
        leases = Path(plan["platform"]["dhcp"]["leases"])
        report = build_report(scenario=scenario, raw=raw, journal=journal,
                              leases=leases.read_text() if leases.exists() else "",
                              cloud_init=cloud_init, datasource="plugin",
                              wall_s=time.time() - started)
        t_q = res["t_qemu_start"]
        ready = next((e["t"] for e in journal if e.get("endpoint") == "health"
                      and (e.get("health") or {}).get("state") == "Ready"), None)
        fail = next((e["t"] for e in journal if e.get("endpoint") == "health"
                     and (e.get("health") or {}).get("state") not in (None, "Ready")), None)
        ms = res.get("milestones") or {}

        def since(t: Optional[float]) -> Optional[float]:
            return round(t - t_q, 2) if t is not None else None

        report["vm"] = {
            "accel": plan["accel"], "kernel": raw.get("kernel"),
            "root_image": Path(plan["root_image"]).name,
            "prepare_s": round(t_boot - started, 2),
            "boot_to_init_local_s": since(ms.get("init_local_start")),
            "boot_to_ready_s": since(ready), "boot_to_failure_report_s": since(fail),
            "boot_to_cloud_final_s": since(ms.get("cloud_final_done")),
            "boot_to_report_s": since(res.get("t_report")),
            "boot_to_poweroff_s": round(res["t_qemu_end"] - t_q, 2),
            "timed_out": res["timed_out"], "last_stage": res["last_stage"],
            "console_stages": [{"t": since(s["t"]), "stage": s["stage"]}
                               for s in res.get("console_stages") or []],
            "clock_offset_s": round(offset, 3) if offset is not None else None,
            "resource_disk_link": raw.get("resource_disk_link"),
            "failed_units": raw.get("failed_units"),
            "datasource_list_cfg": raw.get("datasource_list_cfg"),
            "ds_identify_cfg": raw.get("cloud_cfg_ds"),
            "serial_log": str(kept / "console.log") if kept else None,
        }
        if raw.get("observe_error"):
            report["vm"]["observe_error"] = raw["observe_error"]
        if kept:
            _keep_logs(work, kept)
        elif logs_to:
            _keep_logs(work, Path(logs_to))
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["_inner"]:
        return inner(argv[1])
    print("usage: azure-sim boot --vm [SCENARIO]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
