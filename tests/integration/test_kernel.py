"""Issue 5: the azure_kernel module in real boots (cloud-init 22.4.2 and 25.1.4).

The simulator's VM root is this machine's root as an overlay (no
/etc/default/grub) and its sysfs is the real, read-only one. The scenario's
``image_files`` give the VM, before its first boot, what a Debian image has
(the grub defaults file) and a fake sysfs tree with the OS disk as Hyper-V
shows it (Msft / Virtual Disk on the VMBus, timeout 30), which
``azure_kernel: {sysfs: <fake tree>}`` points at. A per-boot script
snapshots the managed files; the second boot must change nothing. Entropy
is never credited: the VM has no ACPI OEM0 table.
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

BUS = "devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00"
DISK = f"{BUS}/f8b3781a-1e82-4818-a1c3-63d806ec15bb/host0/target0:0:0/0:0:0:0"
SNAPSHOT = f"""#!/bin/sh
n=$(($(ls /var/tmp/kstate 2>/dev/null | wc -l) + 1))
d=/var/tmp/kstate/boot$n
mkdir -p $d
cp -p /etc/default/grub $d/grub
cp -p /{UDEV_RULE} $d/udev 2>/dev/null || true
cat {FAKE_SYS}/block/sda/device/timeout > $d/timeout
stat -c '%n %Y %s' /etc/default/grub /{UDEV_RULE} > $d/stat 2>&1 || true
"""
IMAGE_FILES = {
    "/etc/default/grub": DEBIAN_GRUB,
    f"{FAKE_SYS}/{DISK}/vendor": "Msft    \n",
    f"{FAKE_SYS}/{DISK}/model": "Virtual Disk    \n",
    f"{FAKE_SYS}/{DISK}/timeout": "30\n",
    f"{FAKE_SYS}/{DISK}/block/sda/device": {"symlink": "../.."},
    f"{FAKE_SYS}/block/sda": {"symlink": f"../{DISK}/block/sda"},
    "/var/lib/cloud/scripts/per-boot/50-kernel-state": SNAPSHOT,
}


def _scenario():
    import yaml

    return yaml.safe_dump({
        "name": "kernel-two-boots",
        "boots": 2,
        "image_files": IMAGE_FILES,
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
    assert [s["boot"] for s in r["stages"]].count(2) == 5
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
    b2, b3 = snaps / "boot1", snaps / "boot2"
    assert sorted(p.name for p in snaps.iterdir()) == ["boot1", "boot2"]
    for name in ("grub", "udev", "timeout", "stat"):
        assert (b2 / name).read_text() == (b3 / name).read_text(), name
    assert (b3 / "timeout").read_text().strip() == "300"
    assert (b3 / "grub").read_text() == grub


# --- hostile grub defaults (issue 13, item 11) ---------------------------------

HOSTILE_GRUB = {
    "injection": 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="quiet;X=injected;"ro\n',
    "compound": ('GRUB_TIMEOUT=5\nif [ -e /etc/azure-marker ]; then\n'
                 '  GRUB_CMDLINE_LINUX="quiet"\nfi\n'),
    "continuation": 'GRUB_TIMEOUT=5\nGRUB_DISABLE_RECOVERY=true \\\n',
}
_HOSTILE: dict = {}


def _hostile(run_boot, tmp_path_factory, cloud_init, kind):
    import yaml

    key = (kind, cloud_init)
    if key not in _HOSTILE:
        work = tmp_path_factory.mktemp("kernel-hostile")
        text = yaml.safe_dump({"name": f"kernel-grub-{kind}",
                               "image_files": {"/etc/default/grub": HOSTILE_GRUB[kind]},
                               "cloud_config": {"azure_kernel": {"scsi_timeout": {
                                   "enabled": False}}}})
        report = run_boot(text, cloud_init=cloud_init, datasource="plugin",
                          keep=str(work / "keep"), logs_to=str(work / "logs"))
        log = work / "logs" / "logs" / "cloud-init.log"
        _HOSTILE[key] = (report, (work / "keep/etc/default/grub").read_text(),
                         log.read_text(errors="replace"))
    return _HOSTILE[key]


def _sourced(grub_text):
    """What grub-mkconfig would see when it sources the file: value, and X."""
    import subprocess

    script = grub_text + '\nprintf "%s|%s" "$GRUB_CMDLINE_LINUX" "${X-unset}"\n'
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          check=True).stdout


def test_quoted_text_in_grub_defaults_never_becomes_shell_code(run_boot, tmp_path_factory,
                                                              cloud_init):
    r, grub, log = _hostile(run_boot, tmp_path_factory, cloud_init, "injection")
    assert r["sim_error"] is None and r["ready"], r.get("traceback")
    assert _sourced(grub) == "quiet;X=injected;ro console=ttyS0,115200n8 earlyprintk=ttyS0|unset"


@pytest.mark.parametrize("kind", ["compound", "continuation"])
def test_grub_defaults_it_cannot_edit_safely_are_left_byte_identical(
        run_boot, tmp_path_factory, cloud_init, kind):
    r, grub, log = _hostile(run_boot, tmp_path_factory, cloud_init, kind)
    assert r["sim_error"] is None and r["ready"], r.get("traceback")
    assert grub == HOSTILE_GRUB[kind]
    assert "not editing grub configuration, left untouched" in log
