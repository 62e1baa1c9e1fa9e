"""Issue 5: the azure_kernel module in real boots (cloud-init 22.4.2 and 25.1.4).

The simulator's VM root is this machine's root as an overlay, which has no
/etc/default/grub, and its sysfs is the real, read-only one. Until the
simulator can install both before the first boot (see the xfail below), the
scenario boots three times: boot 1's customData (a shell script, once per
instance, after azure_kernel ran) creates what a Debian image has — the grub
defaults file, a fake sysfs tree with the OS disk as Hyper-V shows it
(Msft / Virtual Disk on the VMBus, timeout 30) and a per-boot script that
snapshots the files azure_kernel manages. Boot 2's azure_kernel (frequency
always, ``azure_kernel: {sysfs: <fake tree>}``) does the work; boot 3 must
change nothing. Entropy is never credited: the VM has no ACPI OEM0 table.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.integration

FAKE_SYS = "/var/lib/azure-sim-fake-sys"
CONSOLE = ("console=ttyS0,115200n8", "earlyprintk=ttyS0")
UDEV_RULE = "etc/udev/rules.d/66-azure-scsi-timeout.rules"

DEBIAN_GRUB = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
"""

SETUP_SCRIPT = f"""#!/bin/sh
set -e
touch /var/tmp/custom-data-applied
mkdir -p /etc/default
cat > /etc/default/grub <<'GRUB'
{DEBIAN_GRUB}GRUB
S={FAKE_SYS}
BUS=devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00
DISK=$BUS/f8b3781a-1e82-4818-a1c3-63d806ec15bb/host0/target0:0:0/0:0:0:0
D=$S/$DISK
mkdir -p $D/block/sda $S/block $S/class/block
printf 'Msft    \\n' > $D/vendor
printf 'Virtual Disk    \\n' > $D/model
echo 30 > $D/timeout
ln -s ../.. $D/block/sda/device
ln -s ../$DISK/block/sda $S/block/sda
mkdir -p /var/lib/cloud/scripts/per-boot
cat > /var/lib/cloud/scripts/per-boot/50-kernel-state <<'SNAP'
#!/bin/sh
n=$(($(ls /var/tmp/kstate 2>/dev/null | wc -l) + 2))
d=/var/tmp/kstate/boot$n
mkdir -p $d
cp -p /etc/default/grub $d/grub
cp -p /{UDEV_RULE} $d/udev 2>/dev/null || true
cat {FAKE_SYS}/block/sda/device/timeout > $d/timeout
stat -c '%n %Y %s' /etc/default/grub /{UDEV_RULE} > $d/stat 2>&1 || true
SNAP
chmod 755 /var/lib/cloud/scripts/per-boot/50-kernel-state
"""


def _scenario():
    import yaml

    return yaml.safe_dump({
        "name": "kernel-three-boots",
        "boots": 3,
        "ovf": {"custom_data": SETUP_SCRIPT},
        "cloud_config": {"azure_kernel": {"sysfs": FAKE_SYS}},
    })


_REPORTS: dict = {}


def _boot(run_boot, tmp_path_factory, cloud_init):
    if cloud_init not in _REPORTS:
        work = tmp_path_factory.mktemp("kernel")
        report = run_boot(_scenario(), cloud_init=cloud_init, datasource="plugin",
                          keep=str(work / "keep"), logs_to=str(work / "logs"))
        log = work / "logs" / "logs" / "cloud-init.log"
        _REPORTS[cloud_init] = (report, work / "keep",
                                log.read_text(errors="replace") if log.exists() else "")
    return _REPORTS[cloud_init]


def _cmdline_words(grub_text):
    words = []
    for m in re.finditer(r'^\s*GRUB_CMDLINE_LINUX(?:_DEFAULT)?="([^"]*)"', grub_text, re.M):
        words += m.group(1).split()
    return words


def test_grub_console_udev_rule_and_scsi_timeout_then_a_reboot_changes_nothing(
        run_boot, tmp_path_factory, cloud_init):
    r, keep, log = _boot(run_boot, tmp_path_factory, cloud_init)
    assert r["sim_error"] is None, r.get("traceback")
    assert r["datasource"] == "plugin"
    assert r["verdict"]["ok"], r["verdict"]
    assert r["cloud_init_status"] == "done", (r["cloud_init_errors"], r["warnings"])
    assert [s["boot"] for s in r["stages"]].count(3) == 5
    assert "credited" not in log  # never credit entropy to the host kernel

    grub = (keep / "etc/default/grub").read_text()
    drop_ins = sorted((keep / "etc/default/grub.d").glob("*.cfg")) if (
        keep / "etc/default/grub.d").is_dir() else []
    words = _cmdline_words(grub + "".join(p.read_text() for p in drop_ins))
    for arg in CONSOLE:
        assert words.count(arg) == 1, (arg, grub)
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in grub  # the image's own line kept

    rule = (keep / UDEV_RULE).read_text()
    assert 'ATTR{device/timeout}="300"' in rule
    assert (keep / FAKE_SYS.lstrip("/") / "block/sda/device/timeout").read_text().strip() \
        == "300"

    snaps = keep / "var/tmp/kstate"
    b2, b3 = snaps / "boot2", snaps / "boot3"
    assert sorted(p.name for p in snaps.iterdir()) == ["boot2", "boot3"]
    for name in ("grub", "udev", "timeout", "stat"):
        assert (b2 / name).read_text() == (b3 / name).read_text(), name
    assert (b3 / "timeout").read_text().strip() == "300"
    assert (b3 / "grub").read_text() == grub


@pytest.mark.xfail(strict=True, reason=(
    "The simulator cannot yet give the VM a Debian /etc/default/grub nor a fake "
    "sysfs tree at the FIRST boot: plan_boot() never sets plan['fake_sys'] from the "
    "scenario, guest.install() copies it into the first boot's /run tmpfs only "
    "(reboot() mounts a fresh /run and install_run() does not copy it again), and "
    "there is no key for image files such as /etc/default/grub."))
def test_first_boot_already_has_grub_and_fake_sysfs_from_the_simulator(
        run_boot, tmp_path_factory, cloud_init):
    from azure_sim.scenario import load_scenario

    load_scenario("name: k\nfake_sys: /nonexistent\nimage_files: {}\n")
