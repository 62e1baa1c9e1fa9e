"""One ``azure-sim boot --vm`` run's plan: the disks, the platform's config, the
guest's plan and the QEMU command line, written into the run's work directory.
No VM is booted here (:mod:`azure_sim.vm` does, :mod:`azure_sim.vmsupervisor`
watches it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

from azure_sim import deps, documents, images, vmpowercut, vmssh
from azure_sim.boot import SimError, certificates_url, dmi_uuid, scenario_ovf
from azure_sim.scenario import DEFAULT_VM_ID

TOOLS = deps.REPO / "tools"
AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
QEMU = "qemu-system-x86_64"
BUILTIN_CMDLINE = "cc: datasource_pkg_list: [] end_cc"


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
    cmd += vmpowercut.qemu_args(plan, boot)  # a during: power cut's fw_cfg files
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


# What only the sandbox plays: a VM boot must refuse it, never ignore it (a pool
# scenario booted as a plain VM would judge the plug-in against the wrong platform).
SANDBOX_ONLY = (
    (lambda s: s["media"] == "seed", "media: seed (the image stays Debian's)"),
    (lambda s: s.get("pps"), "pps (the VM platform does not play the pool: "
                             "no vnet switch, NIC hot-plug or power cycle)"),
    (lambda s: s.get("on_azure") is False, "on_azure: false (the VM always has "
                                           "Azure's chassis asset tag)"),
    (lambda s: s.get("cloud_config"), "cloud_config (the image's /etc/cloud is Debian's)"),
    (lambda s: s.get("mount_shim"), "mount_shim (the VM mounts with its own kernel)"),
    (lambda s: s.get("image_files") and not s.get("power_cut"),
     "image_files without power_cut (only the power-cut hook writes them)"),
)


def unsupported(scenario: dict[str, Any]) -> Optional[str]:
    """Why ``--vm`` cannot boot this scenario as written, or None (pure)."""
    found = [why for test, why in SANDBOX_ONLY if test(scenario)]
    return ("not supported with --vm (the sandbox boots it): " + "; ".join(found)
            if found else None)


def plan_vm(scenario: dict[str, Any], work: Path, deb: Path, timeout: float, *,
            datasource: str = "plugin", release: str = "bookworm",
            guest_actions: Optional[dict[str, list[str]]] = None,
            base_image: Optional[Path] = None,
            guest_files: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Images, platform config and guest plan of one run (writes them into ``work``)."""
    from azure_sim import vmimage, waagent, waagent_image

    refused = unsupported(scenario)
    if refused:
        raise SimError(refused)
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
