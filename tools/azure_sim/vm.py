"""``azure-sim boot --vm``: the same scenario and platform, but a real Debian VM.

The VM is the cached image of ``vmimage`` (Debian 12 for cloud-init 22.4.2,
Debian 13 for 25.1.4; Debian packages only, our .deb installed by dpkg)
booted under QEMU. Its root disk is a qcow2 overlay in the run's work
directory over the cached image, so every run starts pristine and a
scenario's later boots (``boots: N``) see what the earlier ones left. The
platform is the sandbox boot's own (``fabric.py``: IMDS, wireserver,
dnsmasq) and so is the report (``report.build_report``, via ``vmresult``).

Layout of one run::

    host: vm.boot()                       work dir /tmp/azure-sim-vm-XXXX (0700)
      unshare --net --pid --fork --kill-child
        python -m azure_sim.vm _inner     PID 1 of a fresh PID and network namespace
          ip tuntap add azplat0           the VM's NIC; the fabric's nics[].peer
          python -m azure_sim.fabric      169.254.169.254 and 168.63.129.16 on lo, dnsmasq
          qemu-system-x86_64              -netdev tap,ifname=azplat0   (once per boot)
          ssh USER@VM true                every 0.5 s until it works (vmssh)

The provisioning DVD is a virtio-scsi CD-ROM holding ``images.build_iso``'s
image, the resource disk a virtio disk with serial ``AZURE-SIM-RESOURCE`` (a
test-only udev rule in the image links it as /dev/disk/cloud/azure_resource),
DMI comes from ``-smbios`` (vmId, Azure's chassis asset tag), so ds-identify
finds Azure by itself. The first serial port is the console (``vmconsole``).
After cloud-final a test-only unit writes its report to the second serial port,
runs the scenario's between-boot actions and powers off; the next boot is a new
QEMU process on the same disks (a redeploy replaces the resource disk first).
A VM that does not finish in time is killed by its pid; the report then names
the last stage seen on the console and the console log is kept.

``datasource="builtin"`` boots the same image with ``cc: datasource_pkg_list:
[] end_cc`` on the kernel command line (cloud-init's highest-precedence
configuration): the plug-in stays installed but cloud-init searches only its
own ``cloudinit.sources``, so cloud-init's own Azure datasource provisions.

Clean-up: QEMU is killed by its pid; the fabric and dnsmasq die with PID 1 of
their PID namespace; the tap device and the platform addresses die with the
network namespace; the work directory is removed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from azure_sim import deps, documents, images, vmconsole, vmpowercut, vmssh
from azure_sim.boot import SimError, certificates_url, dmi_uuid, scenario_ovf
from azure_sim.scenario import DEFAULT_VM_ID

REPO = deps.REPO
TOOLS = REPO / "tools"
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
QEMU = "qemu-system-x86_64"
BUILTIN_CMDLINE = "cc: datasource_pkg_list: [] end_cc"
DATASOURCES = ("plugin", "builtin")


def missing_requirement() -> Optional[str]:
    """Why this machine cannot boot the VM, or None."""
    if os.geteuid() != 0:
        return "azure-sim boot --vm needs root (network namespace, tap device)"
    for tool, package in ((QEMU, "qemu-system-x86"), ("qemu-img", "qemu-utils"),
                          ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
                          ("unshare", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return f"missing '{tool}': install the Debian package {package} (make test-vm does)"
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


def kernel_cmdline(datasource: str) -> str:
    line = "root=LABEL=root rw console=ttyS0,115200 net.ifnames=0 panic=-1"
    return f"{line} {BUILTIN_CMDLINE}" if datasource == "builtin" else line


def qemu_command(plan: dict[str, Any], boot: int = 1) -> list[str]:
    """The QEMU command line for one boot of the run (pure)."""
    work = Path(plan["workdir"])
    cmd = [QEMU, "-accel", plan["accel"], "-machine", "pc", "-m", str(plan["memory_mib"]),
           "-smp", str(plan["cpus"]), "-nodefaults", "-no-user-config", "-display", "none",
           "-no-reboot",
           "-kernel", plan["kernel"], "-initrd", plan["initrd"],
           "-append", kernel_cmdline(plan.get("datasource", "plugin")),
           *(plan.get("qemu_extra") or []),
           # the root disk first, so it is vda and the resource disk vdb
           "-drive", f"file={plan['root_disk']},if=none,id=root0,format=qcow2",
           "-device", "virtio-blk-pci,drive=root0,serial=AZURE-SIM-ROOT",
           "-smbios", f"type=1,manufacturer=Microsoft Corporation,product=Virtual Machine,"
                      f"uuid={plan['dmi_uuid']}",
           "-smbios", f"type=3,manufacturer=Microsoft Corporation,asset={AZURE_ASSET_TAG}",
           "-chardev", f"file,id=con,path={work / f'console-{boot}.raw'}",
           "-serial", "chardev:con",
           "-chardev", f"file,id=rep,path={work / f'report-{boot}.raw'}",
           "-serial", "chardev:rep",
           "-fw_cfg", f"name=opt/azure-sim/plan,file={work / 'guest-plan.json'}"]
    for name, path in sorted((plan.get("fw_cfg_files") or {}).items()):
        cmd += ["-fw_cfg", f"name=opt/azure-sim/{name},file={path}"]
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


def _private_write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _login(scenario: dict[str, Any], work: Path) -> Optional[dict[str, Any]]:
    """The SSH login to try (adds a fresh key to the scenario's keys), or None."""
    if scenario.get("expect") != "ready" or "ovf_xml" in scenario:
        return None
    ovf = scenario["ovf"]
    login: dict[str, Any] = {"user": ovf.get("username") or "azureuser",
                             "ip": documents.nic_ip(0)}
    if ovf.get("public_keys") or ovf.get("key_fingerprints"):
        key, public = vmssh.make_key_pair(work)
        ovf["public_keys"] = list(ovf.get("public_keys") or []) + [public]
        login["key"] = str(key)
    if ovf.get("password"):
        login["askpass"] = str(vmssh.write_askpass(work, ovf["password"]))
    return login if ("key" in login or "askpass" in login) else None


def plan_vm(scenario: dict[str, Any], work: Path, deb: Path, timeout: float, *,
            datasource: str = "plugin", release: str = "bookworm",
            guest_actions: Optional[dict[str, list[str]]] = None,
            base_image: Optional[Path] = None,
            guest_files: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Images, platform config and guest plan of one run (writes them into ``work``)."""
    from azure_sim import vmimage, waagent, waagent_image

    if scenario["media"] == "seed":
        raise SimError("media: seed is not supported with --vm (the image stays Debian's)")
    if not deb.exists():
        raise SimError(f"{deb} is missing: run 'make deb'")
    try:
        root_image = base_image or vmimage.build_root_image(
            deb, release=release, extras=waagent_image.extras(scenario, release))
        kernel, initrd = vmimage.kernel_files(vmimage.tree_dir(release))
    except vmimage.ImageError as exc:
        raise SimError(str(exc)) from exc
    root_disk = work / "root.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                    str(root_image), str(root_disk)], check=True, capture_output=True)
    env = deps.tool_env()
    login = _login(scenario, work)
    ovf_path = work / "ovf-env.xml"
    ovf_bytes, certificates = scenario_ovf(scenario, work)
    _private_write(ovf_path, ovf_bytes)
    plan: dict[str, Any] = {
        "workdir": str(work), "accel": accel(), "memory_mib": 1024, "cpus": 2,
        "kernel": str(kernel), "initrd": str(initrd), "root_image": str(root_image),
        "root_disk": str(root_disk), "datasource": datasource, "release": release,
        "dmi_uuid": dmi_uuid(DEFAULT_VM_ID, scenario["generation"]),
        "timeout": timeout, "python": sys.executable, "tools_dir": str(TOOLS),
        "tool_path": env["PATH"], "tool_ld_path": env.get("LD_LIBRARY_PATH", ""),
        "boots": scenario["boots"], "before_boot": {}, "login": login,
        "fw_cfg_files": dict(guest_files or {}),
        "qemu_extra": waagent.qemu_args(accel()) if scenario.get("waagent") else [],
    }
    if scenario["media"] == "iso":
        plan["iso"] = str(images.build_iso(work / "ovf.iso", {"ovf-env.xml": ovf_bytes}))
    disk = scenario["resource_disk"]
    if disk:
        plan["resource_disk"] = str(images.build_resource_disk(
            disk, work / "resource.img", deps.CACHE / "sim", env))
        if disk.get("redeploy_before_boot"):
            plan["before_boot"][str(disk["redeploy_before_boot"])] = [
                {"kind": "redeploy_disk", "spec": disk, "cache": str(deps.CACHE / "sim")}]
    ovf = scenario.get("ovf") or {}
    guest_plan: dict[str, Any] = {
        "expect_user": ovf.get("username") or documents.imds_document(scenario)[
            "compute"]["osProfile"]["adminUsername"],
        "expect_files": ["/var/tmp/custom-data-applied"],
        "after_boot": guest_actions or {}, "waagent": bool(scenario.get("waagent")),
    }
    if ovf.get("password"):
        guest_plan["password"] = ovf["password"]
    if ovf.get("custom_data"):
        guest_plan["secret_texts"] = [ovf["custom_data"]]
    _private_write(work / "guest-plan.json", json.dumps(guest_plan).encode())
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
        "waagent": bool(scenario.get("waagent")),
    }
    if certificates:
        plan["platform"]["certificates_pkcs12"] = str(work / "certificates.p12")
        plan["platform"]["certificates_url"] = certificates_url()
    plan["certificate_keys"] = {n: i["openssh"] for n, i in certificates.items()}
    if "power_cut" in scenario:  # docs/reliability.md
        try:
            vmpowercut.plan(plan, scenario, plat)
        except vmpowercut.VmCutError as exc:
            raise SimError(str(exc)) from exc
    (plat / "config.json").write_text(json.dumps(plan["platform"]))
    plan["qemu"] = qemu_command(plan)
    (work / "vm-plan.json").write_text(json.dumps(plan, indent=1))
    return plan


# --- inside the namespaces -------------------------------------------------------

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
    env["PYTHONPATH"] = os.pathsep.join([plan["tools_dir"], str(REPO)])
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


# --- host side ----------------------------------------------------------------

def _run_namespaced(work: Path, limit: float) -> int:
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
        return proc.wait(limit + 90)
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
         cloud_init: str = "22.4.2", datasource: str = "plugin",
         guest_actions: Optional[dict[str, list[str]]] = None,
         base_image: Optional[Path] = None,
         guest_files: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Boot the scenario in a QEMU VM and return the report (as the sandbox's).

    ``guest_actions`` maps a boot number to shell commands the guest runs
    after its report of that boot (package lifecycle tests); ``base_image``
    replaces the cached root image (an image with another build installed);
    ``guest_files`` (name -> host path) reach the guest through fw_cfg as
    /sys/firmware/qemu_fw_cfg/by_name/opt/azure-sim/<name>/raw.
    """
    from azure_sim import vmimage, vmresult

    reason = missing_requirement()
    if reason:
        raise SimError(reason)
    if datasource not in DATASOURCES:
        raise SimError(f"--vm: unknown datasource {datasource!r}")
    try:
        release = vmimage.release_for(cloud_init)
    except vmimage.ImageError as exc:
        raise SimError(str(exc)) from exc
    scenario = json.loads(json.dumps(scenario))  # the key pair is added to a copy
    limit = float(timeout or max(scenario["timeout_s"], 300))
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="azure-sim-vm-"))
    os.chmod(work, 0o700)
    try:
        plan = plan_vm(scenario, work, Path(deb) if deb else default_deb(), limit,
                       datasource=datasource, release=release,
                       guest_actions=guest_actions, base_image=base_image,
                       guest_files=guest_files)
        t_boot = time.time()
        rc = _run_namespaced(work, limit * scenario["boots"])
        res_path = work / "result.json"
        if not res_path.exists() or not json.loads(res_path.read_text())["boots"]:
            tail = (work / "supervisor.log").read_text(errors="replace")[-2000:]
            raise SimError(f"the VM supervisor died (exit {rc}):\n{tail}")
        res = json.loads(res_path.read_text())
        journal = []
        jpath = Path(plan["platform"]["journal"])
        if jpath.exists():
            journal = [json.loads(line) for line in jpath.read_text().splitlines() if line]
        leases = Path(plan["platform"]["dhcp"]["leases"])
        failed = any(b["timed_out"] or not b.get("report_b64") for b in res["boots"])
        kept = None
        if failed:
            kept = Path(logs_to) if logs_to else (
                deps.CACHE / "vm" / "logs" / f"{scenario.get('name')}-{int(started)}")
        report = vmresult.assemble(
            scenario=scenario, plan=plan, result=res, journal=journal,
            leases=leases.read_text() if leases.exists() else "", cloud_init=cloud_init,
            datasource=datasource, limit=limit, started=started, t_boot=t_boot,
            serial_log=str(kept / "console.log") if kept else None)
        if plan.get("power_cut"):
            vmpowercut.finish(plan, work, report, scenario, deps.tool_env())
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
