"""Power cuts in the VM tier: QEMU killed by its pid, the next boot on the same disks.

The run's qcow2 overlay (root) and raw resource disk already persist across
the boots of one scenario (vm.py). Here: when the cut is due (the console
shows the next stage began, the platform saw the n-th request, or Ready
reached the platform), the supervisor SIGKILLs QEMU: whatever the guest
kernel had not written back is lost, as on real hardware. After the run the
root file system is read straight from the overlay (``qemu-img convert`` to
raw, ``debugfs rdump``: nothing is mounted) and the sandbox's recovery
checks (``recovery.py``) run on that copy.

``during:`` points use the sandbox's hooks (``powercut.py``), shipped inert
in the test image's guest files (``guest_files``, under
``/usr/lib/azure-sim/power-cut``): only the cut boot gets the fw_cfg file
``opt/azure-sim/power-cut`` (the armed text), and only then does the test-only
unit ``sim-power-cut-hooks.service`` (before cloud-init) write
/run/azure-sim/power-cut.armed and bind-mount the wrappers over
/usr/local/sbin (first on systemd's PATH) and the Python hook's directory
over /usr/local/lib/python3.*/dist-packages (a .pth loads it). Nothing of it
touches the disk; every other boot runs the image unchanged. A hook announces
the cut with one ``AZURE-SIM-POWER-CUT`` line on the report serial port
(ttyS1) and sleeps; the host kills QEMU at the next poll (docs/reliability.md).
A power-cut scenario's ``image_files`` (text only) reach the first boot as a
tar in fw_cfg (``opt/azure-sim/image-files``), unpacked by the same unit
before cloud-init and synced: the image must hold them before the cut.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Optional

from azure_sim import powercut, recovery

# after:<stage>: the cut lands when the console shows the next stage start.
NEXT_STAGE = {"init-local": "init", "os-network": "init", "init": "modules-config",
              "modules-config": "modules-final", "modules-final": "cloud-final-done"}
RDUMP = ("/etc", "/var/lib/cloudinit-azure", "/var/lib/waagent", "/var/lib/hyperv",
         "/home", "/var/lib/cloud/data")
# What a provisioned root must never hold empty (checked right after the cut).
MUST_NOT_BE_EMPTY = ("etc/passwd", "etc/shadow", "etc/group", "etc/hostname", "etc/fstab",
                     "etc/sudoers.d/*", "etc/ssh/ssh_host_*", "etc/ssh/sshd_config",
                     "home/*/.ssh/authorized_keys", "var/lib/cloudinit-azure/*",
                     "var/lib/waagent/ovf-env.xml", "var/lib/cloud/data/*")


# The guest side of during: points (test-only image files).
GUEST_DIR = "usr/lib/azure-sim/power-cut"
ANNOUNCE = "/dev/ttyS1"  # the report serial port
# program -> (step, the real program in Debian 12's and 13's images)
VM_WRAPPED = {"mkfs.ext4": ("format", "/usr/sbin/mkfs.ext4"),
              "useradd": ("useradd", "/usr/sbin/useradd"),
              "ssh-keygen": ("ssh-keygen", "/usr/bin/ssh-keygen")}
VM_STEPS = {step for step, _ in VM_WRAPPED.values()} | set(powercut.FILES)
FW_CFG = {"power-cut": "power-cut.armed", "image-files": "image-files.tar"}
ARM_SCRIPT = f"""#!/bin/sh
# azure-sim (test only): arm this boot's power-cut hooks (docs/reliability.md).
# Acts only when the host passed opt/azure-sim/power-cut (the cut boot), or
# the first boot's image files; otherwise it changes nothing.
fw=/sys/firmware/qemu_fw_cfg/by_name/opt/azure-sim
[ -e $fw/plan ] || modprobe qemu_fw_cfg 2>/dev/null
i=0
while [ ! -e $fw/plan ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -e $fw/image-files/raw ]; then
  tar -x -C / -f $fw/image-files/raw && sync
fi
[ -e $fw/power-cut/raw ] || exit 0
mkdir -p /run/azure-sim
cp $fw/power-cut/raw /{powercut.ARMED}
mount --bind /{GUEST_DIR}/sbin /usr/local/sbin
for d in /usr/local/lib/python3.*/dist-packages; do
  mount --bind /{GUEST_DIR}/python "$d"
done
echo "power-cut hooks armed: $(head -n1 /{powercut.ARMED})"
"""
# Not "azure-sim" in the unit name or description: systemd prints both on the
# console and vmconsole reads that as the report stage (a stage cut would land early).
ARM_UNIT = f"""\
[Unit]
Description=Power-cut test hooks (test only)
DefaultDependencies=no
After=systemd-remount-fs.service
Before=cloud-init-main.service cloud-init-local.service sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/sh /{GUEST_DIR}/arm.sh
StandardOutput=journal

[Install]
WantedBy=sysinit.target
"""


class VmCutError(ValueError):
    """A point the VM tier cannot cut at."""


def guest_files() -> dict[str, tuple[bytes, int]]:
    """The test image's power-cut hooks (vmimage._guest_files), inert until armed."""
    out = {f"{GUEST_DIR}/sbin/{name}": (
        powercut.wrapper(step, name, real, ANNOUNCE).encode(), 0o755)
        for name, (step, real) in VM_WRAPPED.items()}
    out.update({
        f"{GUEST_DIR}/python/azure_sim_power_cut.py": (powercut.hook(ANNOUNCE).encode(),
                                                       0o644),
        f"{GUEST_DIR}/python/azure_sim_power_cut.pth": (b"import azure_sim_power_cut\n",
                                                        0o644),
        f"{GUEST_DIR}/arm.sh": (ARM_SCRIPT.encode(), 0o755),
        "etc/systemd/system/sim-power-cut-hooks.service": (ARM_UNIT.encode(), 0o644),
        "etc/systemd/system/sysinit.target.wants/sim-power-cut-hooks.service":
            (b"->/etc/systemd/system/sim-power-cut-hooks.service", 0),
    })
    return out


def image_files_tar(files: dict[str, Any]) -> bytes:
    """The scenario's image files as a tar for the guest (root's, 0644)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for rel, text in sorted(files.items()):
            if not isinstance(text, str):
                raise VmCutError(f"image_files {rel}: only text files reach the VM")
            data = text.encode()
            info = tarfile.TarInfo(rel.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def plan(plan_: dict[str, Any], scenario: dict[str, Any], plat: Path) -> None:
    """Add the cut point, the platform's trigger and the recovery checks' inputs."""
    cut = plan_["power_cut"] = powercut.point(scenario["power_cut"])
    plan_["platform"]["power_cut"] = powercut.platform_trigger(cut, plat)
    plan_.update(recovery.expectations(scenario))
    plan_["expect_user"] = (scenario.get("ovf") or {}).get("username")
    work = Path(plan_.get("workdir") or plat)
    if cut["kind"] == "during":
        (work / FW_CFG["power-cut"]).write_text(powercut.armed_text(cut))
    if scenario.get("image_files"):
        (work / FW_CFG["image-files"]).write_bytes(image_files_tar(scenario["image_files"]))


def qemu_args(plan_: dict[str, Any], boot: int) -> list[str]:
    """This boot's fw_cfg files: the armed text in the cut boot, image files in boot 1."""
    cut = plan_.get("power_cut")
    if not cut:
        return []
    work = Path(plan_["workdir"])
    wanted = []
    if cut["kind"] == "during" and cut["boot"] == boot:
        wanted.append("power-cut")
    if boot == 1:
        wanted.append("image-files")
    return [arg for name in wanted if (work / FW_CFG[name]).exists()
            for arg in ("-fw_cfg", f"name=opt/azure-sim/{name},file={work / FW_CFG[name]}")]


def arm(plan_: dict[str, Any], boot: int) -> None:
    cut = plan_.get("power_cut")
    if cut and cut["boot"] == boot and cut["kind"] == "request":
        Path(plan_["platform"]["power_cut"]["armed"]).write_text("armed\n")


def disarm(plan_: dict[str, Any]) -> None:
    if plan_.get("power_cut"):
        Path(plan_["platform"]["power_cut"]["armed"]).unlink(missing_ok=True)


def due(plan_: dict[str, Any], boot: int, stage: str) -> Optional[str]:
    """Why QEMU must die now (or None): polled with the console every 50 ms."""
    from azure_sim.vmconsole import STAGE_ORDER

    cut = plan_.get("power_cut")
    if not cut or cut["boot"] != boot:
        return None
    if cut["kind"] == "request":
        f = Path(plan_["platform"]["power_cut"]["file"])
        return f.read_text().strip() if f.exists() else None
    if cut["kind"] == "during":
        try:
            said = Path(plan_["workdir"], f"report-{boot}.raw").read_text(errors="replace")
        except OSError:
            return None
        what = powercut.announced(said)
        return f"guest: {what}" if what else None
    if cut["at"] == "after:ready":
        try:
            lines = Path(plan_["platform"]["journal"]).read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            entry = json.loads(line)
            if (entry.get("health") or {}).get("state") == "Ready" and entry["status"] == 200:
                return "Ready reached the platform"
        return None
    nxt = NEXT_STAGE[cut["target"]]
    if stage in STAGE_ORDER and STAGE_ORDER.index(stage) >= STAGE_ORDER.index(nxt):
        return f"console: {stage} began"
    return None


def read_root(plan_: dict[str, Any], work: Path, tree: Path, env: dict[str, str]) -> None:
    """Copy what the next boot's kernel would see of the root into ``tree``.

    The overlay is converted to a raw copy, ext4's journal is replayed on the
    copy (``e2fsck -E journal_only``, as mounting would), and ``debugfs
    rdump`` copies the directories the checks read. Nothing is mounted.
    """
    raw = work / "root.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", plan_["root_disk"], str(raw)],
                   check=True, capture_output=True)
    try:
        subprocess.run(["e2fsck", "-y", "-E", "journal_only", str(raw)], env=env,
                       check=False, capture_output=True)
        tree.mkdir(mode=0o700)
        for path in RDUMP:
            dest = tree / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["debugfs", "-R", f"rdump {path} {dest.parent}", str(raw)],
                           env=env, check=False, capture_output=True)
    finally:
        raw.unlink()


def after_cut(plan_: dict[str, Any], work: Path, env: dict[str, str]) -> None:
    """Between the cut and the recovery boot: which files the cut left empty.

    Informational (``power_cut.after_cut`` in the report): the recovery boot
    may make them again; the verdict judges the state after it.
    """
    tree = work / "after-cut"
    out: dict[str, Any] = {}
    try:
        read_root(plan_, work, tree, env)
        out["empty"] = sorted(
            "/" + str(f.relative_to(tree)) for pattern in MUST_NOT_BE_EMPTY
            for f in tree.glob(pattern) if f.is_file() and f.stat().st_size == 0)
        out["problems"] = (recovery.written_file_problems(tree)
                           + recovery.fstab_problems(tree / "etc/fstab"))
    except Exception as exc:  # never let the look spoil the run
        out["error"] = str(exc)[:300]
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    (work / "after-cut.json").write_text(json.dumps(out))


def check(plan_: dict[str, Any], work: Path, report: dict[str, Any],
          env: dict[str, str]) -> dict[str, Any]:
    """Read the disks the run left and run the recovery checks on them."""
    tree = work / "recovered"
    read_root(plan_, work, tree, env)
    observed = {"user": report.get("user") or {}}
    local = dict(plan_, tool_env={k: env[k] for k in ("PATH", "LD_LIBRARY_PATH") if k in env})
    if plan_.get("resource_disk_user_files"):
        part = work / "resource-part1.img"
        subprocess.run(["dd", f"if={plan_['resource_disk']}", f"of={part}", "bs=1M",
                        "skip=1", "status=none", "conv=sparse"], check=True)
        local["resource_partition"] = str(part)
    out = recovery.checks(local, tree, observed)
    shutil.rmtree(tree, ignore_errors=True)
    cut = work / "after-cut.json"
    if cut.exists():
        out["after_cut"] = json.loads(cut.read_text())
    return out


def finish(plan_: dict[str, Any], work: Path, report: dict[str, Any],
           scenario: dict[str, Any], env: dict[str, str]) -> None:
    """The report's ``power_cut`` section and the verdict with the recovery checks."""
    from azure_sim.report import verdict

    cut = next((b["power_cut"] for b in report["vm"]["boots"] if b.get("power_cut")), None)
    report["power_cut"] = {"at": plan_["power_cut"]["at"], "why": cut,
                           **check(plan_, work, report, env)}
    report["verdict"] = verdict(report, scenario.get("expect", "ready"))
