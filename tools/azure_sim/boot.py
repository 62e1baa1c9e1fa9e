"""``azure-sim boot``: one simulated Azure first boot, from scenario to report.

Runs on the host as root. It builds the DVD and resource disk images,
attaches them to loop devices (``losetup -f``, never a fixed number), starts
the sandbox in fresh namespaces, waits for it under a time limit, and always
detaches the loop devices and removes its work directory, on success, on
failure and on Ctrl-C.
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

from azure_sim import deps, documents, images, pps
from azure_sim.report import build_report
from azure_sim.scenario import DEFAULT_VM_ID

REPO = deps.REPO
TOOLS = REPO / "tools"
PLUGIN_CFG = REPO / "config" / "cloud.cfg.d"
DHCP_CLIENT_PATHS = {
    "dhclient": ["/usr/sbin/dhclient", "/sbin/dhclient"],
    "dhcpcd": ["/usr/sbin/dhcpcd", "/sbin/dhcpcd"],
    # busybox carries a udhcpc applet: an image "with udhcpc" has busybox.
    "udhcpc": ["/usr/sbin/udhcpc", "/sbin/udhcpc", "/usr/bin/busybox", "/bin/busybox"],
}


class SimError(RuntimeError):
    """A simulator failure (exit 2), as opposed to a boot that went wrong."""


def require_host() -> None:
    """Say clearly what this machine lacks before touching anything."""
    if os.geteuid() != 0:
        raise SimError("azure-sim needs root (namespaces, loop devices, mounts)")
    for tool, package in (("unshare", "util-linux"), ("losetup", "mount"),
                          ("ip", "iproute2"), ("chroot", "coreutils"),
                          ("blkid", "util-linux")):
        if shutil.which(tool) is None:
            raise SimError(f"missing tool '{tool}': install the Debian package {package}")
    if not Path("/dev/loop-control").exists():
        raise SimError("no /dev/loop-control: this machine has no loop devices")
    layer = deps.CACHE / "layer"
    for tool, package in (("usr/sbin/dnsmasq", "dnsmasq-base"), ("usr/sbin/mkntfs", "ntfs-3g"),
                          ("usr/sbin/dhclient", "isc-dhcp-client")):
        if not (layer / tool).exists():
            raise SimError(f"missing {tool} from Debian package {package} in the image "
                           f"layer: run 'make deps'")


def dmi_uuid(vm_id: str, generation: int) -> str:
    """Gen1 firmware shows the vmId with its first three fields byte-swapped."""
    if generation == 2:
        return vm_id
    parts = vm_id.split("-")
    for i in range(3):
        parts[i] = bytes.fromhex(parts[i])[::-1].hex()
    return "-".join(parts)


class Loops:
    """Loop devices this run attached; detached in ``close`` whatever happened."""

    def __init__(self) -> None:
        self.devices: list[str] = []

    def attach(self, image: Path, *, read_only: bool = False,
               partscan: bool = False) -> str:
        cmd = ["losetup", "-f", "--show"]
        if read_only:
            cmd.append("-r")
        if partscan:
            cmd.append("-P")
        dev = subprocess.run([*cmd, str(image)], check=True, capture_output=True,
                             text=True).stdout.strip()
        self.devices.append(dev)
        return dev

    def close(self) -> None:
        for dev in reversed(self.devices):
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)
        self.devices.clear()


def _majmin(dev: str) -> tuple[int, int]:
    st = os.stat(dev)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def _partitions(dev: str) -> list[dict[str, Any]]:
    """Partitions of a loop device, as the kernel knows them.

    This machine's kernel parses no partition table itself (``losetup -P``
    finds nothing), so ``partx -a`` reads the table in user space and adds
    the partitions through BLKPG, which every kernel supports.
    """
    subprocess.run(["partx", "-a", dev], check=False, capture_output=True)
    sys_dir = Path("/sys/block") / Path(dev).name
    out = []
    for part in sorted(p for p in sys_dir.iterdir() if (p / "partition").exists()):
        major, minor = (int(x) for x in (part / "dev").read_text().split(":"))
        out.append({"name": part.name, "major": major, "minor": minor,
                    "number": int((part / "partition").read_text())})
    return out


def scenario_ovf(scenario: dict[str, Any], work: Path) -> tuple[bytes, dict[str, Any]]:
    """The ovf-env.xml bytes and the certificates its key fingerprints name.

    Names in the scenario become real certificates and fingerprints; the
    PKCS#12 bundle the wireserver serves is written to ``work`` (0600).
    """
    if "ovf_xml" in scenario:
        return scenario["ovf_xml"].encode(), {}
    ovf_spec = dict(scenario["ovf"])
    names = list(ovf_spec.get("key_fingerprints") or []) + [
        p["fingerprint"] for p in ovf_spec.get("key_pairs") or []]
    certificates: dict[str, Any] = {}
    if names:
        from azure_sim import certs

        bundle, certificates = certs.make_bundle(names)
        (work / "certificates.p12").write_bytes(bundle)
        os.chmod(work / "certificates.p12", 0o600)
        ovf_spec["key_fingerprints"] = [certificates[n]["fingerprint"]
                                        for n in ovf_spec.get("key_fingerprints") or []]
        ovf_spec["key_pairs"] = [{"fingerprint": certificates[p["fingerprint"]]["fingerprint"],
                                  "path": p["path"]}
                                 for p in ovf_spec.get("key_pairs") or []]
    return documents.render_ovf(ovf_spec), certificates


def certificates_url() -> str:
    """Where the goal state says the certificates are."""
    return (f"http://168.63.129.16:80/machine/{documents.CONTAINER_ID}/"
            f"{documents.role_instance_id(DEFAULT_VM_ID)}?comp=certificates&incarnation=1")


def _byte_compile_plugin() -> None:
    """Byte-compile the plug-in as its Debian package is installed (cloud-init's trees
    are too): otherwise every stage compiles it from source, a cost no real VM pays."""
    import compileall

    compileall.compile_dir(str(REPO / "cloudinit_azure"), quiet=1)
    for shim in REPO.glob("cc_azure_*.py"):
        compileall.compile_file(str(shim), quiet=1)


def plan_boot(scenario: dict[str, Any], work: Path, loops: Loops, *,
              cloud_init: str, datasource: str, keep: Optional[str]) -> dict[str, Any]:
    """Build the images, attach them, and write the sandbox's plan."""
    tree = deps.CACHE / "cloud-init" / cloud_init
    if not (tree / ".done").exists():
        raise SimError(f"cloud-init {cloud_init} is not cached: run 'make deps'")
    env = deps.tool_env()
    ovf_path = work / "ovf-env.xml"
    ovf_bytes, certificates = scenario_ovf(scenario, work)
    fd = os.open(ovf_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(ovf_bytes)
    plan: dict[str, Any] = {
        "workdir": str(work), "layer": str(deps.CACHE / "layer"),
        "cloud_init_tree": str(tree), "cloud_init_version": cloud_init,
        "python": sys.executable, "tools_dir": str(TOOLS),
        "datasource": datasource, "boots": scenario["boots"], "keep": keep,
        "dhcp_client": scenario["dhcp_client"],
        "dmi_uuid": dmi_uuid(DEFAULT_VM_ID, scenario["generation"]),
        "generation": scenario["generation"],
        "on_azure": scenario["on_azure"],
        "cloud_config": scenario["cloud_config"],
        "image_files": scenario["image_files"],
        "tool_env": {k: env[k] for k in ("PATH", "LD_LIBRARY_PATH")},
        "block_devices": [], "expect_files": ["/var/tmp/custom-data-applied"],
        "before_boot": {},
    }
    ovf = scenario.get("ovf") or {}
    plan["expect_user"] = ovf.get("username") or (
        documents.imds_document(scenario)["compute"]["osProfile"]["adminUsername"])
    plan["certificate_keys"] = {n: i["openssh"] for n, i in certificates.items()}
    if ovf.get("password"):
        pw = work / "password"
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(ovf["password"])
        plan["password_file"] = str(pw)
    if ovf.get("custom_data"):
        # customData must not end up world-readable; the sandbox checks.
        plan["secret_texts"] = [ovf["custom_data"]]
    plan["mount_shim"] = datasource == "builtin" or scenario["mount_shim"]
    if datasource == "plugin":
        plan["plugin_cfg_files"] = sorted(str(p) for p in PLUGIN_CFG.glob("*.cfg"))
        _byte_compile_plugin()
    plan["remove_clients"] = [p for client, paths in DHCP_CLIENT_PATHS.items()
                              if client != scenario["dhcp_client"] for p in paths]
    if scenario["media"] == "iso":
        iso = images.build_iso(work / "ovf.iso", {"ovf-env.xml": ovf_bytes})
        dev = loops.attach(iso, read_only=True)
        major, minor = _majmin(dev)
        plan["block_devices"].append({"name": "sr0", "major": major, "minor": minor,
                                      "links": ["cdrom"]})
    elif scenario["media"] == "seed":
        plan["seed_ovf"] = str(ovf_path)
    disk = scenario["resource_disk"]
    if disk:
        img = images.build_resource_disk(disk, work / "resource.img",
                                         deps.CACHE / "sim", env)
        dev = loops.attach(img, partscan=True)
        major, minor = _majmin(dev)
        name = Path(dev).name
        # The VM sees the disk as Azure shows it: sdb, sdb1 and udev's
        # /dev/disk/cloud links. (sysfs still names it loopN: tools that map a
        # sysfs name to /dev must create the node, as they must without udev.)
        plan["block_devices"].append({"name": "sdb", "major": major, "minor": minor,
                                      "links": ["disk/cloud/azure_resource"]})
        for part in _partitions(dev) if disk["format"] != "none" else []:
            n = part["number"]
            plan["block_devices"].append({
                "name": f"sdb{n}", "major": part["major"], "minor": part["minor"],
                "links": [f"disk/cloud/azure_resource-part{n}"]})
        plan["resource_disk_device"] = name
        if disk.get("redeploy_before_boot"):
            plan["before_boot"][str(disk["redeploy_before_boot"])] = [{
                "kind": "redeploy_disk", "spec": disk, "device": f"/dev/{name}",
                "cache": str(deps.CACHE / "sim"), "scratch": str(work / "fresh.img")}]
        if disk.get("raw_use_before_boot"):
            plan["before_boot"].setdefault(str(disk["raw_use_before_boot"]), []).append(
                {"kind": "raw_use_disk", "device": f"/dev/{name}"})
    nics = []
    for i in range(scenario["nics"]):
        nics.append({"name": f"eth{i}", "peer": f"azplat{i}", "mac": documents.nic_mac(i),
                     "ip": documents.nic_ip(i), "gateway": f"10.0.{i}.1"})
    plat_dir = work / "platform"
    plat_dir.mkdir(mode=0o700)
    plan["platform"] = {
        "journal": str(plat_dir / "journal.jsonl"),
        "ready_file": str(plat_dir / "ready"),
        "imds_doc": documents.imds_document(scenario),
        "imds_raw": scenario.get("imds_raw"),
        "ovf_path": str(ovf_path),
        "vm_id": DEFAULT_VM_ID,
        "faults": scenario["faults"],
        "nics": nics,
        "dhcp": {**scenario["dhcp"], "log": str(plat_dir / "dnsmasq.log"),
                 "leases": str(plat_dir / "dnsmasq.leases"),
                 "pid": str(plat_dir / "dnsmasq.pid")},
        "host_netns": os.readlink("/proc/self/ns/net"),
    }
    if certificates:
        plan["platform"]["certificates_pkcs12"] = str(work / "certificates.p12")
        plan["platform"]["certificates_url"] = certificates_url()
    plan["host_netns"] = plan["platform"]["host_netns"]
    if "power_cut" in scenario:
        _plan_power_cut(plan, scenario, plat_dir)
    if scenario.get("pps"):
        pps.plan(scenario, work, plan, lambda path, ovf: _majmin(loops.attach(
            images.build_iso(path, {"ovf-env.xml": ovf}), read_only=True)))
    (work / "plan.json").write_text(json.dumps(plan, indent=1))
    return plan


def _plan_power_cut(plan: dict[str, Any], scenario: dict[str, Any], plat_dir: Path) -> None:
    """The cut point and what the recovery checks compare against (powercut.py)."""
    from azure_sim import powercut, recovery

    cut = plan["power_cut"] = powercut.point(scenario["power_cut"])
    if cut["kind"] == "request":
        plan["platform"]["power_cut"] = powercut.platform_trigger(cut, plat_dir)
    plan.update(recovery.expectations(scenario))


def run_sandbox(work: Path, timeout: float) -> tuple[int, bool]:
    """Run the sandbox; return (exit code, timed_out). Ctrl-C kills it and re-raises."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TOOLS), str(REPO)])
    env.update({k: v for k, v in deps.tool_env().items() if k == "PATH"})
    log = open(work / "sandbox.log", "wb")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--uts", "--ipc", "--net", "--pid", "--fork",
         "--kill-child", "--propagation", "private",
         sys.executable, "-m", "azure_sim.sandbox", str(work / "plan.json")],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        return _kill(proc), True
    except BaseException:
        _kill(proc)
        raise
    finally:
        log.close()


def _kill(proc: subprocess.Popen) -> int:
    """End the sandbox: --kill-child takes PID 1 of its namespace, and with it all."""
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.wait()


def boot(scenario: dict[str, Any], *, cloud_init: str, datasource: str,
         keep: Optional[str] = None, timeout: Optional[float] = None,
         logs_to: Optional[str] = None) -> dict[str, Any]:
    """Run one simulated boot and return the report (a dict)."""
    if scenario.get("waagent"):  # docs/vm.md: the agent needs a service manager
        raise SimError("waagent: true needs a VM: azure-sim boot --vm")
    require_host()
    work = Path(tempfile.mkdtemp(prefix="azure-sim-"))
    os.chmod(work, 0o700)
    loops = Loops()
    started = time.time()
    try:
        plan = plan_boot(scenario, work, loops, cloud_init=cloud_init,
                         datasource=datasource, keep=keep)
        rc, timed_out = run_sandbox(work, timeout or scenario["timeout_s"])
        raw: dict[str, Any] = {}
        if (work / "raw.json").exists():
            raw = json.loads((work / "raw.json").read_text())
        progress = (work / "progress").read_text() if (work / "progress").exists() else "?"
        if timed_out:
            raw["error"] = f"timed out after {timeout or scenario['timeout_s']} s in: {progress}"
        elif not raw:
            tail = (work / "sandbox.log").read_text(errors="replace")[-2000:]
            raise SimError(f"the sandbox died (exit {rc}) in: {progress}\n{tail}")
        journal = []
        jpath = Path(plan["platform"]["journal"])
        if jpath.exists():
            journal = [json.loads(line) for line in jpath.read_text().splitlines() if line]
        leases = Path(plan["platform"]["dhcp"]["leases"])
        report = build_report(
            scenario=scenario, raw=raw, journal=journal,
            leases=leases.read_text() if leases.exists() else "",
            cloud_init=cloud_init, datasource=datasource, wall_s=time.time() - started)
        if logs_to:
            dest = Path(logs_to)
            dest.mkdir(parents=True, exist_ok=True, mode=0o700)
            for item in ("logs", "sandbox.log", "platform"):
                src = work / item
                if src.is_dir():
                    shutil.copytree(src, dest / item, dirs_exist_ok=True)
                elif src.exists():
                    shutil.copy2(src, dest / item)
        return report
    finally:
        loops.close()
        shutil.rmtree(work, ignore_errors=True)
