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

The run's plan (disks, platform config, QEMU command line) is
:mod:`azure_sim.vmplan`; what runs inside the namespaces is
:mod:`azure_sim.vmsupervisor`.

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

from azure_sim import deps, vmpowercut
from azure_sim.boot import SimError
from azure_sim.vmplan import (  # noqa: F401 (vm's API: tests, vmbench)
    AZURE_ASSET_TAG,
    BUILTIN_CMDLINE,
    QEMU,
    TOOLS,
    _login,
    accel,
    kernel_cmdline,
    plan_vm,
    qemu_command,
)
from azure_sim.vmsupervisor import inner

REPO = deps.REPO
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


def _read_console(work: Path) -> str:
    path = work / "console.log"
    return path.read_text(errors="replace") if path.exists() else ""


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
            serial_log=str(kept / "console.log") if kept else None,
            console=_read_console(work) if failed else None)
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
