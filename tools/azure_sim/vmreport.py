#!/usr/bin/python3
"""azure-sim (test only, runs INSIDE the VM): report what the VM sees, then stop.

Started by ``azure-sim-report.service`` after cloud-final. It reads the
host's per-boot facts (user name, password to verify, secrets to look for)
from QEMU's fw_cfg (``opt/azure-sim/plan``), collects the provisioned state
the way the sandbox boot does (``azure_sim.guest`` is copied next to this
file in the image), adds the systemd timestamps of the cloud-init units, and
writes it base64-encoded between two marker lines to the serial port given
as its argument. The unit then powers the VM off.

Debian's python3 and the standard library only (plus PyYAML, which cloud-init
depends on).
"""

import base64
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FW_CFG = Path("/sys/firmware/qemu_fw_cfg/by_name/opt/azure-sim/plan/raw")
# Each stage's unit; 24.3+ renamed cloud-init.service to cloud-init-network.service
# and runs every stage in cloud-init-main.service (the stage units only signal it).
UNITS = {"init-local": ("cloud-init-local.service",),
         "init": ("cloud-init-network.service", "cloud-init.service"),
         "modules-config": ("cloud-config.service",),
         "modules-final": ("cloud-final.service",)}
MAIN_UNIT = "cloud-init-main.service"
PROPS = "ExecMainStartTimestampMonotonic,ExecMainExitTimestampMonotonic," \
        "ExecMainStatus,CPUUsageNSec,MemoryPeak"
PSEUDO = {"proc", "sysfs", "tmpfs", "devpts", "devtmpfs", "cgroup2", "cgroup", "securityfs",
          "pstore", "bpf", "debugfs", "tracefs", "mqueue", "hugetlbfs", "configfs",
          "fusectl", "autofs", "ramfs", "binfmt_misc", "efivarfs", "rpc_pipefs"}


def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def plan():
    if not FW_CFG.exists():
        run("modprobe", "qemu_fw_cfg")
        for _ in range(50):
            if FW_CFG.exists():
                break
            time.sleep(0.1)
    try:
        data = json.loads(FW_CFG.read_bytes())
    except (OSError, ValueError):
        return {}
    if data.get("password"):
        path = Path("/run/azure-sim/password")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(data.pop("password"))
        data["password_file"] = str(path)
    return data


def mounts():
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        fstype, source = right.split()[:2]
        if fstype in PSEUDO or fields[4] == "/":
            continue
        out.append({"mountpoint": fields[4], "fstype": fstype, "source": source,
                    "majmin": fields[2]})
    return out


def unit_info(unit):
    text = run("systemctl", "show", "-p", PROPS, unit)
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _cpu(info):
    cpu = info.get("CPUUsageNSec") or ""
    return int(cpu) / 1e9 if cpu.isdigit() else 0.0


def stages(mono_to_real, show=unit_info):
    """One row per stage that ran, from the first of its unit names that started."""
    rows = []
    for stage, names in UNITS.items():
        info = next((i for i in map(show, names)
                     if int(i.get("ExecMainStartTimestampMonotonic") or 0)), None)
        if info is None:
            continue
        start = int(info["ExecMainStartTimestampMonotonic"])
        end = int(info.get("ExecMainExitTimestampMonotonic") or 0)
        rows.append({"boot": 1, "stage": stage, "start": mono_to_real(start),
                     "end": mono_to_real(end) if end else mono_to_real(start),
                     "rc": int(info.get("ExecMainStatus") or 0),
                     "cpu_s": _cpu(info), "maxrss_kb": 0})
    return rows


def main_cpu(show=unit_info):
    """CPU of cloud-init's single process (24.3+), where the stages' work is done."""
    return _cpu(show(MAIN_UNIT))


def mtime(*paths):
    times = []
    for pattern in paths:
        for path in Path("/").glob(pattern.lstrip("/")):
            try:
                if path.stat().st_size:
                    times.append(path.stat().st_mtime)
            except OSError:
                pass
    return min(times) if times else None


def collect():
    from azure_sim import guest

    p = plan()
    raw = {"plan_seen": bool(p)}
    try:  # waagent: true: waits (bounded) for the agent to settle first
        from azure_sim import waagent_guest
        raw["waagent"] = waagent_guest.observe(p)
    except Exception:
        raw["waagent"] = {"error": traceback.format_exc()}
    mono_now = time.monotonic()
    real_now = time.time()
    raw["guest_realtime"] = real_now

    def mono_to_real(usec):
        return real_now - (mono_now - usec / 1e6)

    raw["stages"] = stages(mono_to_real)
    raw["cpu_main_s"] = main_cpu()
    raw["t0"] = raw["stages"][0]["start"] if raw["stages"] else None
    try:
        raw.update(guest.observe(p, Path("/")))
    except Exception:
        raw["observe_error"] = traceback.format_exc()
    raw["mounts"] = mounts()
    user = p.get("expect_user") or ""
    raw["watch"] = {"authorized_keys": mtime(f"/home/{user}/.ssh/authorized_keys")
                    if user else None,
                    "host_keys": mtime("/etc/ssh/ssh_host_*_key")}
    raw["status_raw"] = run("cloud-init", "status", "--long", "--format", "json")
    link = Path("/dev/disk/cloud/azure_resource")
    raw["resource_disk_device"] = os.path.basename(os.path.realpath(link)) \
        if link.exists() else None
    raw["resource_disk_link"] = link.exists()
    try:
        raw["routes"] = json.loads(run("ip", "-j", "route", "show") or "[]")
    except ValueError:
        raw["routes"] = []
    raw["links"] = guest.links()
    raw["failed_units"] = run("systemctl", "--failed", "--no-legend", "--plain").split("\n")
    raw["failed_units"] = [u for u in raw["failed_units"] if u.strip()]
    raw["kernel"] = os.uname().release
    raw["datasource_list_cfg"] = run("grep", "-rh", "^datasource_list", "/etc/cloud/")
    raw["ds_identify"] = Path("/run/cloud-init/ds-identify.log").read_text(
        errors="replace")[-1500:] if Path("/run/cloud-init/ds-identify.log").exists() else ""
    raw["cloud_cfg_ds"] = Path("/run/cloud-init/cloud.cfg").read_text(errors="replace") \
        if Path("/run/cloud-init/cloud.cfg").exists() else ""
    raw["host_keys_pub"] = host_keys()
    raw["datasource_module"] = datasource_module()
    raw["report_realtime"] = time.time()
    return raw


def host_keys():
    """The public host keys sshd offers now ('type base64'), to compare with first contact."""
    out = []
    for path in sorted(Path("/etc/ssh").glob("ssh_host_*_key.pub")):
        try:
            out.append(" ".join(path.read_text().split()[:2]))
        except OSError:
            pass
    return out


def datasource_module():
    """Which DataSourceAzure cloud-init pickled: the plug-in's or its own."""
    try:
        data = Path("/var/lib/cloud/instance/obj.pkl").read_bytes()
    except OSError:
        return None
    for name in (b"cloudinit_azure.sources.DataSourceAzure", b"cloudinit.sources.DataSourceAzure"):
        if name in data:
            return name.decode()
    return "other"


def actions(p):
    """Run this boot's between-boot actions (package lifecycle tests); return their output."""
    count = Path("/var/lib/azure-sim/boot-count")
    count.parent.mkdir(parents=True, exist_ok=True)
    boot = int(count.read_text() or 0) + 1 if count.exists() else 1
    count.write_text(str(boot))
    out = []
    for cmd in (p.get("after_boot") or {}).get(str(boot), []):
        try:
            proc = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True,
                                  timeout=300, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                    "DEBIAN_FRONTEND": "noninteractive",
                                                    "LC_ALL": "C"})
            out.append({"cmd": cmd, "rc": proc.returncode,
                        "output": (proc.stdout + proc.stderr)[-3000:]})
        except (OSError, subprocess.TimeoutExpired) as exc:
            out.append({"cmd": cmd, "rc": None, "output": str(exc)})
    return boot, out


def main(argv):
    port = argv[1] if len(argv) > 1 else "/dev/ttyS1"
    try:
        raw = collect()
    except Exception:
        raw = {"error": "guest report failed: " + traceback.format_exc()}
    try:
        raw["boot"], raw["actions"] = actions(plan())
    except Exception:
        raw["actions"] = [{"cmd": None, "rc": None, "output": traceback.format_exc()}]
    raw["report_realtime"] = time.time()
    data = base64.b64encode(json.dumps(raw).encode()).decode()
    with open(port, "w") as fh:
        fh.write("\nAZURE-SIM-REPORT-BEGIN\n")
        for i in range(0, len(data), 76):
            fh.write(data[i:i + 76] + "\n")
        fh.write(f"AZURE-SIM-REPORT-END {time.time():.3f}\n")
        fh.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
