"""Resource disk: discovery on fake sysfs trees, the safety table, plans,
fstab idempotency, swap, and the executor driven by a recording fake runner.
Nothing here touches the host: temp dirs, fake runners, injected mknod."""

from __future__ import annotations

import importlib
import json
import logging
import os
import stat
import time
from types import SimpleNamespace

import pytest

from cloudinit_azure import resource_disk as rd
from cloudinit_azure.report import ConfigError
from cloudinit_azure.runner import Result, run
from tests import fakes

# The submodule (the package exports the function of the same name).
probe_mod = importlib.import_module("cloudinit_azure.resource_disk.probe")

GEN2 = "{f8b3781a-1e82-4818-a1c3-63d806ec15bb}"
CFG = rd.DiskSettings()


# --------------------------------------------------------------------------
# Fake sysfs / dev trees
# --------------------------------------------------------------------------


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _link(root, link, target):
    """Relative symlink inside the fake root, as sysfs has them."""
    link_p = os.path.join(root, link.lstrip("/"))
    os.makedirs(os.path.dirname(link_p), exist_ok=True)
    os.symlink(os.path.relpath(os.path.join(root, target.lstrip("/")),
                               os.path.dirname(link_p)), link_p)


def add_disk(root, name, devnum, devdir=None, parts=(), node=True):
    """A block device under /sys/devices; devdir is its `device` dir."""
    if devdir:
        block = f"{devdir}/block/{name}"
    else:
        block = f"/sys/devices/virtual/block/{name}"
    base = os.path.join(root, block.lstrip("/"))
    _write(f"{base}/dev", devnum + "\n")
    _write(f"{base}/uevent", f"MAJOR={devnum.split(':')[0]}\nDEVNAME={name}\nDEVTYPE=disk\n")
    if devdir:
        _link(root, f"{block}/device", devdir)
    _link(root, f"/sys/block/{name}", block)
    _link(root, f"/sys/class/block/{name}", block)
    if node:
        _write(os.path.join(root, "dev", name), "")
    for pname, number, pdev in parts:
        add_partition(root, name, pname, number, pdev)
    return block


def add_partition(root, disk, pname, number, pdev, node=True):
    block = os.path.realpath(os.path.join(root, "sys/class/block", disk))
    pbase = os.path.join(block, pname)
    _write(f"{pbase}/partition", f"{number}\n")
    _write(f"{pbase}/dev", pdev + "\n")
    _write(f"{pbase}/uevent", f"DEVNAME={pname}\nDEVTYPE=partition\nPARTN={number}\n")
    _link(root, f"/sys/class/block/{pname}", "/" + os.path.relpath(pbase, root))
    if node:
        _write(os.path.join(root, "dev", pname), "")


def vmbus_scsi(root, guid, device_id, hctl):
    vmbus = f"/sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00/{guid}"
    _write(os.path.join(root, vmbus.lstrip("/"), "device_id"), device_id + "\n")
    _write(os.path.join(root, vmbus.lstrip("/"), "class_id"),
           "{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}\n")
    h, c, t, _ = hctl.split(":")
    return f"{vmbus}/host{h}/target{h}:{c}:{t}/{hctl}"


def nvme(root, ctrl, ns, model, devnum):
    ctrl_dir = f"/sys/devices/pci0000:00/0000:00:1f.0/nvme/{ctrl}"
    _write(os.path.join(root, ctrl_dir.lstrip("/"), "model"), model.ljust(40) + "\n")
    block = f"{ctrl_dir}/{ns}"
    base = os.path.join(root, block.lstrip("/"))
    _write(f"{base}/dev", devnum + "\n")
    _write(f"{base}/uevent", f"DEVNAME={ns}\nDEVTYPE=disk\n")
    _link(root, f"{block}/device", ctrl_dir)
    _link(root, f"/sys/block/{ns}", block)
    _link(root, f"/sys/class/block/{ns}", block)
    _write(os.path.join(root, "dev", ns), "")


def machine(root, runner=None, **kw):
    kw.setdefault("mknod", _no_mknod)
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("clock", time.monotonic)
    kw.setdefault("statvfs", os.statvfs)
    return rd.Machine(root=str(root), runner=runner or FakeRunner(str(root)), **kw)


def _no_mknod(*a):
    raise AssertionError(f"unexpected mknod {a}")


# --------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------


def test_gen1_picks_vmbus_resource_disk_not_os_disk(tmp_path):
    root = str(tmp_path)
    add_disk(root, "sda", "8:0", vmbus_scsi(root, "os", "{00000000-0000-8899-0000-000000000000}",
                                            "0:0:0:0"))
    add_disk(root, "sdb", "8:16", vmbus_scsi(root, "res", "{00000000-0001-8899-0000-000000000000}",
                                             "1:0:1:0"))
    found = rd.discover_once(machine(root))
    assert found == rd.Discovered("sdb", "/dev/sdb", "vmbus-gen1")


def test_gen2_needs_lun_1_on_the_scsi_controller(tmp_path):
    root = str(tmp_path)
    add_disk(root, "sda", "8:0", vmbus_scsi(root, "ctl", GEN2.upper(), "0:0:0:0"))
    assert rd.discover_once(machine(root)) is None  # LUN 0 is the OS disk
    add_disk(root, "sdb", "8:16", vmbus_scsi(root, "ctl", GEN2, "0:0:0:1"))
    assert rd.discover_once(machine(root)) == rd.Discovered("sdb", "/dev/sdb", "vmbus-gen2")


def test_lun_1_on_another_controller_is_not_the_resource_disk(tmp_path):
    root = str(tmp_path)
    data_ctl = "{12345678-0000-0000-0000-0000000000aa}"
    add_disk(root, "sdc", "8:32", vmbus_scsi(root, "data", data_ctl, "1:0:0:1"))
    assert rd.discover_once(machine(root)) is None


def test_nvme_direct_disk_by_model(tmp_path):
    root = str(tmp_path)
    nvme(root, "nvme0", "nvme0n1", "MSFT NVMe Accelerator v1.0", "259:0")
    assert rd.discover_once(machine(root)) is None
    nvme(root, "nvme1", "nvme1n1", "Microsoft NVMe Direct Disk", "259:4")
    assert rd.discover_once(machine(root)) == rd.Discovered("nvme1n1", "/dev/nvme1n1", "nvme")


def test_cloud_symlink_wins_and_resolves_partition_to_disk(tmp_path):
    root = str(tmp_path)
    add_disk(root, "sdb", "8:16", parts=[("sdb1", 1, "8:17")])
    nvme(root, "nvme0", "nvme0n1", "Microsoft NVMe Direct Disk", "259:0")
    os.makedirs(tmp_path / "dev/disk/cloud")
    os.symlink("../../sdb1", tmp_path / "dev/disk/cloud/azure_resource")
    assert rd.discover_once(machine(root)) == rd.Discovered("sdb", "/dev/sdb", "symlink")


def test_absolute_symlink_is_followed_inside_root(tmp_path):
    root = str(tmp_path)
    add_disk(root, "sdb", "8:16")
    os.makedirs(tmp_path / "dev/disk/cloud")
    os.symlink("/dev/sdb", tmp_path / "dev/disk/cloud/azure_resource")
    assert rd.discover_once(machine(root)).node == "/dev/sdb"


def test_nothing_found(tmp_path):
    assert rd.discover_once(machine(tmp_path)) is None
    add_disk(str(tmp_path), "loop0", "7:0")
    assert rd.discover_once(machine(tmp_path)) is None


def test_configured_device(tmp_path):
    root = str(tmp_path)
    add_disk(root, "loop3", "7:3", parts=[("loop3p1", 1, "259:0")])
    assert rd.discover_once(machine(root), "/dev/loop3") == rd.Discovered(
        "loop3", "/dev/loop3", "config")
    assert rd.discover_once(machine(root), "/dev/loop9") is None
    with pytest.raises(rd.ResourceDiskError, match="partition"):
        rd.discover_once(machine(root), "/dev/loop3p1")


def test_discover_polls_until_the_disk_appears(tmp_path):
    root = str(tmp_path)
    clock = {"t": 0.0}
    sleeps = []

    def sleep(s):
        sleeps.append(s)
        clock["t"] += s
        if clock["t"] >= 2:
            add_disk(root, "sdb", "8:16") if not os.path.exists(tmp_path / "dev/sdb") else None

    m = machine(root, sleep=sleep, clock=lambda: clock["t"])
    assert rd.discover(m, "/dev/sdb", wait_seconds=5).node == "/dev/sdb"
    assert sleeps == [1.0, 1.0]
    clock["t"] = 0.0
    sleeps.clear()
    assert rd.discover(m, "/dev/sdz", wait_seconds=2.5) is None
    assert sum(sleeps) == pytest.approx(2.5)
    assert rd.discover(machine(root), "/dev/sdz", wait_seconds=0) is None


# --------------------------------------------------------------------------
# Partitions by sysfs, nodes, blkid parsing
# --------------------------------------------------------------------------


def test_partitions_by_sysfs_for_loop_and_nvme(tmp_path):
    root = str(tmp_path)
    add_disk(root, "loop3", "7:3", parts=[("loop3p2", 2, "259:1"), ("loop3p1", 1, "259:0")])
    nvme(root, "nvme0", "nvme0n1", "Microsoft NVMe Direct Disk", "259:5")
    add_partition(root, "nvme0n1", "nvme0n1p1", 1, "259:6")
    m = machine(root)
    assert rd.sysfs_partitions(m, "loop3") == (
        rd.SysPartition("loop3p1", 1, "259:0", "/dev/loop3p1"),
        rd.SysPartition("loop3p2", 2, "259:1", "/dev/loop3p2"),
    )
    assert rd.sysfs_partitions(m, "nvme0n1") == (
        rd.SysPartition("nvme0n1p1", 1, "259:6", "/dev/nvme0n1p1"),)
    assert rd.sysfs_partitions(m, "nope") == ()


def test_partition_devname_comes_from_uevent_not_name_concatenation(tmp_path):
    root = str(tmp_path)
    add_disk(root, "loop3", "7:3", parts=[("loop3p1", 1, "259:0")])
    # a kernel whose uevent names the node differently still maps correctly
    uevent = tmp_path / "sys/class/block/loop3p1/uevent"
    uevent.write_text("DEVNAME=mapper/odd\nPARTN=1\n")
    assert rd.sysfs_partitions(machine(root), "loop3")[0].node == "/dev/mapper/odd"


def test_ensure_node_creates_missing_block_node_from_major_minor(tmp_path):
    root = str(tmp_path)
    add_disk(root, "loop3", "7:3")
    add_partition(root, "loop3", "loop3p1", 1, "259:7", node=False)
    calls = []
    m = machine(root, mknod=lambda *a: calls.append(a))
    assert rd.ensure_node(m, "loop3p1") == "/dev/loop3p1"
    assert calls == [(str(tmp_path / "dev/loop3p1"), stat.S_IFBLK | 0o660, os.makedev(259, 7))]
    calls.clear()
    assert rd.ensure_node(m, "loop3") == "/dev/loop3"  # exists: no mknod
    assert calls == []


def test_ensure_node_replaces_a_stale_block_node(tmp_path, monkeypatch):
    root = str(tmp_path)
    add_disk(root, "loop3", "7:3")
    add_partition(root, "loop3", "loop3p1", 1, "259:9")  # node exists (old table)
    monkeypatch.setattr(probe_mod, "_node_devnum", lambda p: (259, 0))
    calls = []
    m = machine(root, mknod=lambda *a: calls.append(a))
    assert rd.ensure_node(m, "loop3p1") == "/dev/loop3p1"
    assert calls == [(str(tmp_path / "dev/loop3p1"), stat.S_IFBLK | 0o660, os.makedev(259, 9))]
    assert not (tmp_path / "dev/loop3p1").exists()  # the stale node was removed first
    calls.clear()
    monkeypatch.setattr(probe_mod, "_node_devnum", lambda p: (259, 9))
    _write(str(tmp_path / "dev/loop3p1"), "")
    rd.ensure_node(m, "loop3p1")
    assert calls == []


def test_parse_blkid_export_unescapes():
    out = rd.parse_blkid_export("DEVNAME=/dev/sdb1\nLABEL=Temporary\\ Storage\nTYPE=ntfs\n")
    assert out == {"DEVNAME": "/dev/sdb1", "LABEL": "Temporary Storage", "TYPE": "ntfs"}


def test_probe_exit_codes():
    def runner(out, rc, err=""):
        return fakes.FakeRunner(default=Result(rc, out, err))
    assert rd.probe(runner("TYPE=ext4\n", 0), "/dev/x") == {"TYPE": "ext4"}
    assert rd.probe(runner("", 2), "/dev/x") == {}
    assert rd.probe(runner("", 8, "ambivalent result"), "/dev/x") == {
        "AMBIVALENT": "ambivalent result"}


# --------------------------------------------------------------------------
# The safety table
# --------------------------------------------------------------------------

NTFS1 = rd.DiskLayout("/dev/sdb", "dos", partitions=(
    rd.Partition("/dev/sdb1", 1, "ntfs", "Temporary Storage", "ABCD", "0x7"),))
GPT_MSR = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
    rd.Partition("/dev/sdb1", 1, "", "", "", rd.MSR_GUID),
    rd.Partition("/dev/sdb2", 2, "ntfs", "Temporary Storage", "ABCD",
                 "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"),
))
AZURE_FILES = ["DATALOSS_WARNING_README.txt", "System Volume Information"]


def test_raw_disk_is_formatted_on_a_new_instance():
    d = rd.decide(rd.DiskLayout("/dev/nvme0n1"), CFG, is_new_instance=True)
    assert d.action == "format" and "raw" in d.reason and "new instance" in d.reason


def test_raw_disk_on_a_later_boot_is_left_alone_unless_blank_and_ours_before():
    # Boot 1 formatted it; the user wiped the signatures and wrote data to it.
    used = rd.DiskLayout("/dev/sdb")
    d = rd.decide(used, CFG, is_new_instance=False, previously_ours=True)
    assert d.action == "skip" and not d.warn
    assert "not a new instance" in d.reason and "raw device" in d.reason
    # Not ours before either: never formatted.
    blank = rd.DiskLayout("/dev/sdb", blank=True)
    assert rd.decide(blank, CFG, is_new_instance=False, previously_ours=False).action == "skip"
    # A blank disk where ours was: the platform replaced it (NVMe temp disks come raw).
    d = rd.decide(blank, CFG, is_new_instance=False, previously_ours=True)
    assert d.action == "format" and "came back raw and blank" in d.reason


def test_is_blank_reads_both_ends(tmp_path):
    disk = tmp_path / "disk"
    disk.write_bytes(bytes(4 * rd.MIB))
    assert rd.is_blank(str(disk))
    with open(disk, "r+b") as f:  # wipefs leaves the rest of a GPT backup header
        f.seek(4 * rd.MIB - 512)
        f.write(b"\x01")
    assert not rd.is_blank(str(disk))
    with open(disk, "r+b") as f:
        f.seek(4 * rd.MIB - 512)
        f.write(b"\x00")
        f.seek(100)
        f.write(b"user data")
    assert not rd.is_blank(str(disk))
    assert not rd.is_blank(str(tmp_path / "missing"))
    (tmp_path / "small").write_bytes(bytes(100))
    assert not rd.is_blank(str(tmp_path / "small"))


def test_our_file_system_is_mounted_not_formatted():
    layout = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
        rd.Partition("/dev/sdb1", 1, "ext4", "AzureTemp", "u-1", rd.LINUX_FS_GUID.lower()),))
    assert rd.decide(layout, CFG, is_new_instance=True) == rd.Decision(
        "mount", "/dev/sdb1 already carries our ext4 file system labelled 'AzureTemp'",
        "/dev/sdb1", "u-1")
    whole = rd.DiskLayout("/dev/sdb", fstype="ext4", label="AzureTemp", uuid="u-2")
    assert rd.decide(whole, CFG).action == "mount"
    assert rd.decide(whole, CFG).target == "/dev/sdb"


def test_our_label_with_other_fs_is_skipped():
    layout = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
        rd.Partition("/dev/sdb1", 1, "ext4", "AzureTemp", "u-1"),))
    d = rd.decide(layout, rd.DiskSettings(filesystem="xfs"), is_new_instance=True)
    assert d.action == "skip"
    assert "ext4" in d.reason and "xfs" in d.reason


@pytest.mark.parametrize("layout", [NTFS1, GPT_MSR], ids=["mbr-ntfs", "gpt-msr-ntfs"])
def test_empty_azure_ntfs_on_new_instance_is_formatted(layout):
    d = rd.decide(layout, CFG, ntfs_files=AZURE_FILES, is_new_instance=True)
    assert d.action == "format" and "new instance" in d.reason


def test_file_names_compare_case_insensitively():
    files = ["dataloss_warning_readme.txt", "SYSTEM VOLUME INFORMATION"]
    assert rd.decide(NTFS1, CFG, ntfs_files=files, is_new_instance=True).action == "format"
    assert rd.decide(NTFS1, CFG, ntfs_files=[], is_new_instance=True).action == "format"


def test_empty_ntfs_that_came_back_after_redeploy_is_formatted():
    d = rd.decide(NTFS1, CFG, ntfs_files=AZURE_FILES, is_new_instance=False,
                  previously_ours=True)
    assert d.action == "format" and "came back" in d.reason


def test_empty_ntfs_same_instance_never_ours_is_skipped():
    d = rd.decide(NTFS1, CFG, ntfs_files=AZURE_FILES)
    assert d.action == "skip" and "not a new instance" in d.reason


def test_ntfs_with_user_files_is_skipped_naming_them():
    files = AZURE_FILES + ["foo.txt", "bar", "a", "b", "c", "d", "e"]
    d = rd.decide(NTFS1, CFG, ntfs_files=files, is_new_instance=True, previously_ours=True)
    assert d.action == "skip"
    assert d.reason == "NTFS volume /dev/sdb1 holds user files: a, b, bar, c, d (+2 more)"
    d = rd.decide(GPT_MSR, CFG, ntfs_files=["foo.txt"] + AZURE_FILES, is_new_instance=True)
    assert d.reason.endswith("holds user files: foo.txt")


def test_never_destroy_ntfs():
    cfg = rd.DiskSettings(never_destroy_ntfs=True)
    d = rd.decide(NTFS1, cfg, ntfs_files=AZURE_FILES, is_new_instance=True)
    assert d.action == "skip" and "never_destroy_ntfs" in d.reason


def test_unlisted_ntfs_is_skipped_with_the_error():
    d = rd.decide(NTFS1, CFG, ntfs_error="ntfsls unavailable", is_new_instance=True)
    assert d == rd.Decision("skip", "cannot list the NTFS volume on /dev/sdb1: "
                                    "ntfsls unavailable", warn=True)


def test_unexpected_layouts_are_skipped():
    two_ntfs_no_msr = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
        rd.Partition("/dev/sdb1", 1, "ntfs"), rd.Partition("/dev/sdb2", 2, "ntfs")))
    d = rd.decide(two_ntfs_no_msr, CFG, ntfs_files=[], is_new_instance=True)
    assert d.action == "skip" and "2 partitions (ntfs, ntfs)" in d.reason
    msr_on_mbr = rd.DiskLayout("/dev/sdb", "dos", partitions=GPT_MSR.partitions)
    assert rd.decide(msr_on_mbr, CFG, ntfs_files=[], is_new_instance=True).action == "skip"
    three = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
        rd.Partition("/dev/sdb1", 1, "", "", "", rd.MSR_GUID),
        rd.Partition("/dev/sdb2", 2, "ntfs"), rd.Partition("/dev/sdb3", 3, "ext4")))
    assert "3 partitions" in rd.decide(three, CFG, is_new_instance=True).reason
    empty_table = rd.DiskLayout("/dev/sdb", "gpt")
    d = rd.decide(empty_table, CFG, is_new_instance=True)
    assert d.action == "skip" and "without partitions" in d.reason


def test_other_file_systems_are_skipped():
    xfs = rd.DiskLayout("/dev/sdb", "dos", partitions=(
        rd.Partition("/dev/sdb1", 1, "xfs", "data"),))
    d = rd.decide(xfs, CFG, is_new_instance=True)
    assert d.action == "skip"
    assert d.reason == ("/dev/sdb1 holds file system xfs labelled 'data', not ours "
                        "(ext4 labelled 'AzureTemp')")
    lvm = rd.DiskLayout("/dev/sdb", fstype="LVM2_member")
    assert rd.decide(lvm, CFG, is_new_instance=True).action == "skip"


def test_disk_in_use_is_skipped():
    layout = rd.DiskLayout("/dev/sdb", "dos", partitions=NTFS1.partitions,
                           in_use=(("/dev/sdb1", "/media/x"),))
    d = rd.decide(layout, CFG, ntfs_files=[], is_new_instance=True)
    assert d.action == "skip" and "/media/x" in d.reason
    ours_elsewhere = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
        rd.Partition("/dev/sdb1", 1, "ext4", "AzureTemp"),), in_use=(("/dev/sdb1", "/data"),))
    assert rd.decide(ours_elsewhere, CFG).action == "skip"
    ours_here = rd.DiskLayout("/dev/sdb", "gpt", partitions=ours_elsewhere.partitions,
                              in_use=(("/dev/sdb1", "/mnt"),))
    assert rd.decide(ours_here, CFG).action == "mount"


def test_ambivalent_probe_is_skipped():
    d = rd.decide(rd.DiskLayout("/dev/sdb", unclear="ambivalent result"), CFG,
                  is_new_instance=True)
    assert d.action == "skip" and "inconclusive" in d.reason


def test_interrupted_format_of_our_partition_is_redone():
    layout = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
        rd.Partition("/dev/sdb1", 1, "", "", "", rd.LINUX_FS_GUID.lower(), "AzureTemp"),))
    assert rd.decide(layout, CFG).action == "format"
    foreign = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
        rd.Partition("/dev/sdb1", 1, "", "", "", rd.LINUX_FS_GUID.lower(), "scratch"),))
    assert rd.decide(foreign, CFG).action == "skip"


def test_instance_state():
    assert rd.instance_state(None, "i-1") == (True, False)
    assert rd.instance_state(rd.Marker("i-0"), "i-1") == (True, False)
    assert rd.instance_state(rd.Marker("i-1"), "i-1") == (False, True)


# --------------------------------------------------------------------------
# Plans
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fs,mkfs", [
    ("ext4", ("mkfs.ext4", "-F", "-q", "-L", "AzureTemp", "-E",
              "lazy_itable_init=1,lazy_journal_init=1,nodiscard", "/dev/loop3p1")),
    ("xfs", ("mkfs.xfs", "-f", "-q", "-K", "-L", "AzureTemp", "/dev/loop3p1")),
    ("btrfs", ("mkfs.btrfs", "-f", "-q", "-K", "-L", "AzureTemp", "/dev/loop3p1")),
])
def test_format_plan_per_file_system(fs, mkfs):
    cfg = rd.DiskSettings(filesystem=fs, mount_options="defaults,nofail")
    steps = rd.plan(rd.Decision("format", "raw"), "/dev/loop3", cfg)
    assert [type(s) for s in steps] == [rd.Command, rd.Command, rd.Command, rd.FindPartition,
                                        rd.MakeFileSystem, rd.MakeDir, rd.Mount,
                                        rd.WriteReadme, rd.FstabMount]
    sfdisk = steps[0]
    assert sfdisk.argv[0] == "sfdisk" and sfdisk.argv[-1] == "/dev/loop3" and sfdisk.destructive
    assert "--wipe-partitions" in sfdisk.argv
    assert sfdisk.stdin == ('label: gpt\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4, '
                            'name="AzureTemp"\n')
    assert steps[1].argv == ("partx", "-u", "/dev/loop3") and not steps[1].check
    assert steps[3] == rd.FindPartition(1)
    assert steps[4].argv("/dev/loop3p1") == mkfs and steps[4].destructive
    # No source: the mount takes the partition the plan made.
    assert steps[6] == rd.Mount(fs, "defaults,nofail", "/mnt")
    assert steps[6].argv("/dev/loop3p1") == ("mount", "-t", fs, "-o", "defaults,nofail",
                                             "/dev/loop3p1", "/mnt")
    assert steps[8].fields("u-1") == ("UUID=u-1", "/mnt", fs, "defaults,nofail", "0",
                                      "2" if fs == "ext4" else "0")
    assert [s.destructive for s in steps] == [True, False, False, False, True, False, False,
                                              False, False]


def test_mount_plan_and_skip_plan():
    d = rd.Decision("mount", "ours", "/dev/sdb1", "u")
    steps = rd.plan(d, "/dev/sdb", CFG)
    assert [type(s) for s in steps] == [rd.MakeDir, rd.Mount, rd.FstabMount]
    assert steps[1].source == "/dev/sdb1"
    assert [type(s) for s in rd.plan(d, "/dev/sdb", CFG, mounted=True)] == [rd.MakeDir,
                                                                           rd.FstabMount]
    assert rd.plan(rd.Decision("skip", "x"), "/dev/sdb", CFG) == ()
    assert not any(s.destructive for s in rd.plan(d, "/dev/sdb", CFG))


def test_default_mount_options_order_after_cloud_init_on_both_versions():
    opts = rd.load_settings({}).mount_options.split(",")
    assert "nofail" in opts
    assert "x-systemd.after=cloud-init.service" in opts  # 22.4
    assert "x-systemd.after=cloud-init-network.service" in opts  # 24.3+
    assert not any(o.startswith("x-systemd.requires") for o in opts)


# --------------------------------------------------------------------------
# fstab
# --------------------------------------------------------------------------

FSTAB = "# /etc/fstab\nUUID=root / ext4 defaults 0 1\n/dev/sdc1 /data xfs defaults 0 0\n"


def test_fstab_is_idempotent_across_three_runs():
    fields = ("UUID=u-1", "/mnt", "ext4", "defaults,nofail", "0", "2")
    text = FSTAB
    results = []
    for _ in range(3):
        text = rd.update_fstab(text, fields, ["/dev/sdb", "LABEL=AzureTemp"])
        results.append(text)
    assert results[0] == results[1] == results[2]
    assert text.count("UUID=u-1") == 1 and text.count(rd.FSTAB_COMMENT) == 1
    assert text.startswith(FSTAB)


def test_fstab_replaces_same_mountpoint_and_old_specs():
    old = FSTAB + ("/dev/disk/cloud/azure_resource-part1 /mnt/ auto "
                   "defaults,nofail,comment=cloudconfig 0 2\n"
                   "UUID=old /scratch ext4 defaults 0 2\n")
    fields = ("UUID=new", "/mnt", "ext4", "defaults", "0", "2")
    text = rd.update_fstab(old, fields, ["UUID=old"])
    assert "azure_resource-part1" not in text and "UUID=old" not in text
    assert text.count("UUID=new") == 1
    assert "/dev/sdc1 /data" in text and "UUID=root /" in text


def test_swap_fstab_entry_leaves_other_swaps_alone():
    text = FSTAB + "/swap.img none swap sw 0 0\n"
    fields = ("/mnt/swapfile", "none", "swap", "sw,nofail", "0", "0")
    once = rd.update_fstab(text, fields, (), rd.SWAP_COMMENT)
    assert rd.update_fstab(once, fields, (), rd.SWAP_COMMENT) == once
    assert "/swap.img none swap" in once and once.count("/mnt/swapfile") == 1
    removed = rd.remove_fstab(once, "/mnt/swapfile")
    assert removed == text
    assert rd.remove_fstab(removed, "/mnt/swapfile") == removed


# --------------------------------------------------------------------------
# Swap planning
# --------------------------------------------------------------------------

SWAP_CFG = rd.DiskSettings(swap_enabled=True)


def test_swap_size():
    assert rd.swap_size_mib("2048", 10 * 2**30) == 2048
    assert rd.swap_size_mib(512, 0) == 512
    assert rd.swap_size_mib("10%", 10 * 2**30) == 1024


def test_swap_same_size_is_kept():
    size = 2048 * rd.MIB
    steps = rd.plan_swap(SWAP_CFG, 2048, size, active=True)
    assert steps == (rd.FstabSwap("/mnt/swapfile"),)
    steps = rd.plan_swap(SWAP_CFG, 2048, size, active=False)
    assert steps == (rd.Command(("swapon", "/mnt/swapfile")), rd.FstabSwap("/mnt/swapfile"))


def test_swap_size_change_recreates_file():
    steps = rd.plan_swap(SWAP_CFG, 4096, 2048 * rd.MIB, active=True)
    assert steps == (
        rd.Command(("swapoff", "/mnt/swapfile")),
        rd.Remove("/mnt/swapfile"),
        rd.Command(("fallocate", "-l", str(4096 * rd.MIB), "/mnt/swapfile")),
        rd.Chmod("/mnt/swapfile", 0o600),
        rd.Command(("mkswap", "/mnt/swapfile")),
        rd.Command(("swapon", "/mnt/swapfile")),
        rd.FstabSwap("/mnt/swapfile"),
    )
    assert steps[-1].fields() == ("/mnt/swapfile", "none", "swap", "sw,nofail", "0", "0")
    fresh = rd.plan_swap(SWAP_CFG, 1024, None, active=False)
    assert [type(s) for s in fresh][:2] == [rd.Command, rd.Chmod]


def test_swap_on_btrfs_uses_mkswapfile():
    cfg = rd.DiskSettings(filesystem="btrfs", swap_enabled=True)
    argvs = [s.argv for s in rd.plan_swap(cfg, 1024, None, False) if isinstance(s, rd.Command)]
    assert argvs == [("btrfs", "filesystem", "mkswapfile", "--size", "1024m", "/mnt/swapfile"),
                     ("swapon", "/mnt/swapfile")]


def test_swap_disabled_only_drops_our_fstab_entry():
    assert rd.plan_swap(CFG, 0, None, False) == (rd.FstabRemove("/mnt/swapfile"),)


# --------------------------------------------------------------------------
# Executor with a recording fake runner
# --------------------------------------------------------------------------


class FakeRunner(fakes.FakeRunner):
    """Answers blkid/ntfsls from a state table; sfdisk, mkfs and mount
    change the fake tree the way the kernel would (strict: a failure with
    ``check`` raises, as the real runner does)."""

    def __init__(self, root, blkid=None, ntfs=None, new_part=("loop3", "loop3p1", "259:9")):
        super().__init__(strict=True)
        self.root = root
        self.blkid = dict(blkid or {})
        self.ntfs = ntfs
        self.new_part = new_part
        self.fail = {}
        self.hooks = {}
        self.counter = 0
        self.udev_removes_nodes = True

    def answer(self, cmd, kwargs):
        prog = cmd[0]
        if prog in self.hooks:
            self.hooks[prog](cmd)
        res = self._answer(cmd, kwargs.get("input"))
        if prog in self.fail:
            res = Result(1, "", self.fail[prog])
        return res

    def _answer(self, cmd, stdin):
        prog = cmd[0]
        if prog == "blkid":
            info = self.blkid.get(cmd[-1])
            if info is None:
                return Result(2, "", "")
            return Result(0, "".join(f"{k}={v}\n" for k, v in info.items()), "")
        if prog == "ntfsls":
            if self.ntfs is None:
                raise FileNotFoundError(2, "No such file or directory", "ntfsls")
            return Result(0, "".join(n + "\n" for n in self.ntfs), "")
        if prog == "sfdisk":
            assert "label: gpt" in stdin
            disk, pname, pdev = self.new_part
            block = os.path.realpath(os.path.join(self.root, "sys/class/block", disk))
            for entry in os.listdir(block):  # old partitions go away
                if os.path.exists(os.path.join(block, entry, "partition")):
                    os.unlink(os.path.join(self.root, "sys/class/block", entry))
                    for f in ("partition", "dev", "uevent"):
                        os.unlink(os.path.join(block, entry, f))
                    os.rmdir(os.path.join(block, entry))
                    self.blkid.pop(f"/dev/{entry}", None)
                    if self.udev_removes_nodes and os.path.exists(
                            os.path.join(self.root, "dev", entry)):
                        os.unlink(os.path.join(self.root, "dev", entry))
            add_partition(self.root, disk, pname, 1, pdev, node=False)
            self.blkid[f"/dev/{disk}"] = {"PTTYPE": "gpt"}
            self.blkid[f"/dev/{pname}"] = {"PART_ENTRY_TYPE": rd.LINUX_FS_GUID.lower(),
                                           "PART_ENTRY_NAME": "AzureTemp"}
            return Result(0, "", "")
        if prog.startswith("mkfs."):
            label = cmd[cmd.index("-L") + 1]
            self.counter += 1
            self.blkid[cmd[-1]] = {"TYPE": prog[5:], "LABEL": label,
                                   "UUID": f"uuid-{self.counter}"}
            return Result(0, "", "")
        if prog == "mount" and "ro" not in cmd:
            src, target = cmd[-2], cmd[-1]
            os.makedirs(os.path.join(self.root, "proc/self"), exist_ok=True)
            with open(os.path.join(self.root, "proc/self/mounts"), "a") as f:
                f.write(f"{src} {target} {cmd[2]} rw 0 0\n")
            return Result(0, "", "")
        if prog == "mount":
            return Result(32, "", "unknown filesystem type 'ntfs-3g'")
        return Result(0, "", "")


@pytest.fixture
def vm(tmp_path):
    """A VM root with /dev/loop3 as the configured resource disk, MBR NTFS."""
    root = str(tmp_path)
    add_disk(root, "loop3", "7:3", parts=[("loop3p1", 1, "259:0")])
    os.makedirs(tmp_path / "proc/self")
    (tmp_path / "proc/self/mounts").write_text("/dev/vda1 / ext4 rw 0 0\n")
    (tmp_path / "proc/swaps").write_text("Filename Type Size Used Priority\n")
    os.makedirs(tmp_path / "etc")
    (tmp_path / "etc/fstab").write_text(FSTAB)
    runner = FakeRunner(root, blkid={
        "/dev/loop3": {"PTTYPE": "dos"},
        "/dev/loop3p1": {"TYPE": "ntfs", "LABEL": "Temporary Storage", "UUID": "NTFSUUID",
                         "PART_ENTRY_TYPE": "0x7"},
    }, ntfs=AZURE_FILES)
    nodes = []

    def mknod(path, mode, dev):
        nodes.append((path, mode, dev))
        _write(path, "")

    m = machine(root, runner, mknod=mknod)
    return SimpleNamespace(root=tmp_path, runner=runner, m=m, nodes=nodes,
                           cfg=rd.DiskSettings(device="/dev/loop3",
                                               mount_options="defaults,nofail"))


def test_first_boot_formats_empty_ntfs_and_mounts(vm, caplog):
    caplog.set_level(logging.INFO)
    out = rd.setup(vm.cfg, "i-1", vm.m)
    assert out.decision.action == "format"
    cmds = vm.runner.commands()
    assert cmds.index("ntfsls") < cmds.index("sfdisk") < cmds.index("mkfs.ext4") \
        < cmds.index("mount")
    mkfs = next(c for c in vm.runner.calls if c[0] == "mkfs.ext4")
    assert mkfs[-1] == "/dev/loop3p1"
    # the new partition was found by sysfs and its node created from 259:9
    assert vm.nodes == [(str(vm.root / "dev/loop3p1"), stat.S_IFBLK | 0o660,
                         os.makedev(259, 9))]
    assert ["mount", "-t", "ext4", "-o", "defaults,nofail", "/dev/loop3p1", "/mnt"] in \
        vm.runner.calls
    assert (vm.root / "mnt" / rd.README_NAME).read_text().startswith("WARNING")
    fstab = (vm.root / "etc/fstab").read_text()
    assert "UUID=uuid-1\t/mnt\text4\tdefaults,nofail\t0\t2" in fstab
    assert fstab.startswith(FSTAB)
    marker = json.loads((vm.root / "var/lib/cloudinit-azure/resource-disk.json").read_text())
    assert marker["instance_id"] == "i-1" and marker["fs_uuid"] == "uuid-1"
    assert "format /dev/loop3" in caplog.text


def test_later_boots_mount_without_formatting_and_keep_fstab(vm):
    rd.setup(vm.cfg, "i-1", vm.m)
    fstab1 = (vm.root / "etc/fstab").read_text()
    vm.runner.calls.clear()
    rd.setup(vm.cfg, "i-1", vm.m)  # still mounted: nothing to run
    assert "sfdisk" not in vm.runner.commands() and "mount" not in vm.runner.commands()
    # reboot: not mounted any more -> mounted again, not formatted
    (vm.root / "proc/self/mounts").write_text("/dev/vda1 / ext4 rw 0 0\n")
    vm.runner.calls.clear()
    out = rd.setup(vm.cfg, "i-1", vm.m)
    assert out.decision.action == "mount"
    assert [c[0] for c in vm.runner.calls if c[0] != "blkid"] == ["mount"]
    assert (vm.root / "etc/fstab").read_text() == fstab1


def test_redeploy_ntfs_back_is_reformatted_and_fstab_replaced(vm):
    rd.setup(vm.cfg, "i-1", vm.m)
    # Azure hands over a fresh NTFS disk; the old fs is gone
    (vm.root / "proc/self/mounts").write_text("/dev/vda1 / ext4 rw 0 0\n")
    block = os.path.realpath(vm.root / "sys/class/block/loop3")
    vm.runner.blkid["/dev/loop3"] = {"PTTYPE": "dos"}
    vm.runner.blkid["/dev/loop3p1"] = {"TYPE": "ntfs", "PART_ENTRY_TYPE": "0x7"}
    assert os.path.isdir(os.path.join(block, "loop3p1"))
    vm.runner.new_part = ("loop3", "loop3p1", "259:10")
    out = rd.setup(vm.cfg, "i-1", vm.m)
    assert out.decision.action == "format" and "came back" in out.decision.reason
    fstab = (vm.root / "etc/fstab").read_text()
    assert "uuid-1" not in fstab and fstab.count("UUID=uuid-2") == 1
    assert fstab.count(rd.FSTAB_COMMENT) == 1


def test_user_file_on_ntfs_means_no_format_ever(vm, caplog):
    caplog.set_level(logging.INFO)
    vm.runner.ntfs = AZURE_FILES + ["important.db"]
    out = rd.setup(vm.cfg, "i-1", vm.m)
    assert out.decision.action == "skip" and "important.db" in out.decision.reason
    assert not {"sfdisk", "partx", "mkfs.ext4", "mount", "wipefs"} & set(vm.runner.commands())
    assert (vm.root / "etc/fstab").read_text() == FSTAB
    assert "leaving /dev/loop3 alone" in caplog.text
    # Leaving user data alone is the safe outcome, not a problem: INFO, so
    # cloud-init 23.4+ does not report the boot as degraded.
    assert [r.levelno for r in caplog.records if "leaving" in r.getMessage()] == [logging.INFO]
    assert not (vm.root / "var/lib/cloudinit-azure/resource-disk.json").exists()


def test_ntfs_that_cannot_be_listed_is_left_alone(vm, caplog):
    vm.runner.ntfs = None  # ntfsls missing, ntfs-3g installed, its mount fails
    os.makedirs(vm.root / "usr/bin")
    (vm.root / "usr/bin/ntfs-3g").write_text("")
    with caplog.at_level(logging.INFO):
        out = rd.setup(vm.cfg, "i-1", vm.m)
    assert out.decision.action == "skip" and "ntfsls unavailable" in out.decision.reason
    assert out.decision.warn  # the tools are there and failed: worth a warning
    assert "sfdisk" not in vm.runner.commands()
    assert ["mount", "-t", "ntfs-3g", "-o", "ro"] == vm.runner.calls[-1][:5]
    assert not os.listdir(vm.root / "run")  # temp mount dir cleaned up


def test_ntfs_without_ntfs_3g_installed_is_left_alone_at_info(vm, caplog):
    vm.runner.ntfs = None  # neither ntfsls nor ntfs-3g in the image
    with caplog.at_level(logging.INFO):
        out = rd.setup(vm.cfg, "i-1", vm.m)
    assert out.decision.action == "skip" and not out.decision.warn
    assert "ntfs-3g is not installed" in out.decision.reason
    assert "mount" not in vm.runner.commands() and "sfdisk" not in vm.runner.commands()
    assert [r.levelno for r in caplog.records if "leaving" in r.getMessage()] == [logging.INFO]


def test_never_destroy_ntfs_does_not_even_list(vm):
    out = rd.setup(rd.DiskSettings(device="/dev/loop3", never_destroy_ntfs=True), "i-1", vm.m)
    assert out.decision.action == "skip"
    assert "ntfsls" not in vm.runner.commands()


def test_mount_point_that_is_a_file_fails_before_anything(vm):
    (vm.root / "mnt").write_text("not a dir")
    with pytest.raises(rd.ResourceDiskError, match="mount point"):
        rd.setup(vm.cfg, "i-1", vm.m)
    assert vm.runner.calls == []


def test_mount_point_taken_by_another_fs_fails_before_format(vm):
    with open(vm.root / "proc/self/mounts", "a") as f:
        f.write("/dev/sdc1 /mnt xfs rw 0 0\n")
    with pytest.raises(rd.ResourceDiskError, match="already has another"):
        rd.setup(vm.cfg, "i-1", vm.m)
    assert "sfdisk" not in vm.runner.commands()


def test_configured_device_missing_is_an_error(vm):
    with pytest.raises(rd.ResourceDiskError, match="not found"):
        rd.setup(rd.DiskSettings(device="/dev/sdz"), "i-1", vm.m)


def test_no_resource_disk_is_info_not_error(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = rd.setup(CFG, "i-1", machine(tmp_path))
    assert out == rd.Outcome(None)
    assert "none found" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_disabled_does_nothing(vm):
    assert rd.setup(rd.DiskSettings(enabled=False), "i-1", vm.m) == rd.Outcome(None)
    assert vm.runner.calls == []


def test_disk_vanishing_mid_way_stops_before_mkfs(vm):
    vm.runner.hooks["sfdisk"] = lambda cmd: os.unlink(vm.root / "dev/loop3")
    with pytest.raises(rd.ResourceDiskError, match="vanished"):
        rd.setup(vm.cfg, "i-1", vm.m)
    assert "mkfs.ext4" not in vm.runner.commands()
    assert (vm.root / "etc/fstab").read_text() == FSTAB


def test_partition_that_never_appears_times_out_before_mkfs(vm):
    clock = {"t": 0.0}
    vm.runner.new_part = ("loop3", "loop3p1", "259:9")
    vm.runner.hooks["partx"] = lambda cmd: [
        os.unlink(vm.root / "sys/class/block/loop3p1"),
        _write(str(vm.root / "sys/class/block/loop3/loop3p1/partition"), "")]

    def sleep(s):
        clock["t"] += s

    m = rd.Machine(vm.m.root, vm.runner, sleep, lambda: clock["t"], vm.m.mknod, vm.m.statvfs)
    with pytest.raises(rd.ResourceDiskError, match="did not appear"):
        rd.setup(vm.cfg, "i-1", m)
    assert clock["t"] >= rd.PARTITION_TIMEOUT
    assert "mkfs.ext4" not in vm.runner.commands()


def test_failed_mkfs_is_reported_with_the_command(vm):
    vm.runner.fail["mkfs.ext4"] = "bad superblock"
    with pytest.raises(rd.ResourceDiskError) as err:
        rd.setup(vm.cfg, "i-1", vm.m)
    assert err.value.reason == "resource disk command failed"
    assert err.value.supporting_data["tool"] == "mkfs.ext4"
    assert err.value.supporting_data["error"] == "bad superblock"
    assert "mount" not in vm.runner.commands()


def test_gpt_msr_layout_formats_over_both_partitions(vm):
    add_partition(str(vm.root), "loop3", "loop3p2", 2, "259:1")
    vm.runner.blkid.update({
        "/dev/loop3": {"PTTYPE": "gpt"},
        "/dev/loop3p1": {"PART_ENTRY_TYPE": rd.MSR_GUID.upper()},
        "/dev/loop3p2": {"TYPE": "ntfs", "PART_ENTRY_TYPE": "ebd0a0a2"},
    })
    out = rd.setup(vm.cfg, "i-1", vm.m)
    assert out.decision.action == "format"
    assert ["ntfsls", "-a", "-f", "/dev/loop3p2"] in vm.runner.calls
    assert not (vm.root / "sys/class/block/loop3p2").exists()


def test_nvme_raw_disk_found_formatted_with_xfs(tmp_path):
    root = str(tmp_path)
    nvme(root, "nvme0", "nvme0n1", "Microsoft NVMe Direct Disk", "259:0")
    runner = FakeRunner(root, new_part=("nvme0n1", "nvme0n1p1", "259:1"))
    made = []
    m = machine(root, runner, mknod=lambda p, mode, dev: (made.append(p), _write(p, "")))
    out = rd.setup(rd.DiskSettings(filesystem="xfs"), "i-1", m)
    assert out.device.how == "nvme" and out.decision.action == "format"
    mkfs = next(c for c in runner.calls if c[0] == "mkfs.xfs")
    assert mkfs[-1] == "/dev/nvme0n1p1"
    assert made == [str(tmp_path / "dev/nvme0n1p1")]
    assert "ntfsls" not in runner.commands()


def test_swap_is_created_once_and_recreated_on_size_change(vm):
    fs = SimpleNamespace(f_blocks=10 * 2**18, f_frsize=4096, f_bavail=9 * 2**18)  # 10 GiB
    m = rd.Machine(vm.m.root, vm.runner, vm.m.sleep, vm.m.clock, vm.m.mknod, lambda p: fs)

    def fallocate(cmd):
        _write(str(vm.root) + cmd[-1], "")
        os.truncate(str(vm.root) + cmd[-1], int(cmd[2]))

    vm.runner.hooks["fallocate"] = fallocate
    vm.runner.hooks["swapon"] = lambda cmd: open(vm.root / "proc/swaps", "a").write(
        f"{cmd[-1]} file 1 0 -2\n")
    cfg = rd.DiskSettings(device="/dev/loop3", swap_enabled=True, swap_size="10%")
    out = rd.setup(cfg, "i-1", m)
    assert out.swap_mib == 1024
    assert ["fallocate", "-l", str(1024 * rd.MIB), "/mnt/swapfile"] in vm.runner.calls
    assert stat.S_IMODE(os.stat(vm.root / "mnt/swapfile").st_mode) == 0o600
    fstab = (vm.root / "etc/fstab").read_text()
    assert fstab.count("/mnt/swapfile\tnone\tswap") == 1

    vm.runner.calls.clear()
    rd.setup(cfg, "i-1", m)  # same size, active: nothing to run
    assert not {"fallocate", "mkswap", "swapon", "swapoff"} & set(vm.runner.commands())
    assert (vm.root / "etc/fstab").read_text() == fstab

    vm.runner.calls.clear()
    rd.setup(rd.DiskSettings(device="/dev/loop3", swap_enabled=True, swap_size="512"), "i-1", m)
    assert [c[0] for c in vm.runner.calls if c[0] != "blkid"] == [
        "swapoff", "fallocate", "mkswap", "swapon"]
    assert os.path.getsize(vm.root / "mnt/swapfile") == 512 * rd.MIB
    assert (vm.root / "etc/fstab").read_text().count("/mnt/swapfile") == 1

    rd.setup(vm.cfg, "i-1", m)  # swap disabled again: fstab entry goes
    assert "/mnt/swapfile" not in (vm.root / "etc/fstab").read_text()


def test_swap_that_does_not_fit_is_skipped_with_warning(vm, caplog):
    fs = SimpleNamespace(f_blocks=256, f_frsize=4096, f_bavail=256)  # 1 MiB
    m = rd.Machine(vm.m.root, vm.runner, vm.m.sleep, vm.m.clock, vm.m.mknod, lambda p: fs)
    out = rd.setup(rd.DiskSettings(device="/dev/loop3", swap_enabled=True), "i-1", m)
    assert out.swap_mib == 0 and "does not fit" in caplog.text
    assert "fallocate" not in vm.runner.commands()


# --------------------------------------------------------------------------
# Settings and schema
# --------------------------------------------------------------------------


def test_defaults():
    s = rd.load_settings({})
    assert (s.enabled, s.device, s.filesystem, s.mountpoint, s.swap_enabled, s.wait_seconds) \
        == (True, None, "ext4", "/mnt", False, 0.0)
    assert len(s.label) <= 12


@pytest.mark.parametrize("cfg,key", [
    ({"filesystem": "ntfs"}, "azure_resource_disk.filesystem"),
    ({"label": "a label with spaces"}, "azure_resource_disk.label"),
    ({"mountpoint": "relative"}, "azure_resource_disk.mountpoint"),
    ({"mountpoint": "/"}, "azure_resource_disk.mountpoint"),
    ({"mountpoint": "/mnt/../etc"}, "azure_resource_disk.mountpoint"),
    ({"swap": {"size": "2G"}}, "azure_resource_disk.swap.size"),
    ({"swap": {"size": "150%"}}, "azure_resource_disk.swap.size"),
    ({"wait_seconds": -1}, "azure_resource_disk.wait_seconds"),
    ({"mount_options": "defaults nofail"}, "azure_resource_disk.mount_options"),
])
def test_schema_errors_name_the_key(cfg, key):
    with pytest.raises(ConfigError) as err:
        rd.load_settings({"azure_resource_disk": cfg})
    assert f"invalid config at {key}:" in str(err.value)


def test_unknown_key_is_rejected():
    with pytest.raises(ConfigError, match="fs_type"):
        rd.load_settings({"azure_resource_disk": {"fs_type": "ext4"}})


def test_datasource_never_destroy_ntfs_is_honoured():
    assert rd.load_settings({"datasource": {"Azure": {"never_destroy_ntfs": True}}}) \
        .never_destroy_ntfs
    assert rd.load_settings({"azure_resource_disk": {"never_destroy_ntfs": True}}) \
        .never_destroy_ntfs
    assert not rd.load_settings({"datasource": {"Azure": {}}}).never_destroy_ntfs


def test_swap_settings():
    s = rd.load_settings({"azure_resource_disk": {"swap": {"enabled": True, "size": 4096}}})
    assert (s.swap_enabled, s.swap_size) == (True, "4096")


# --------------------------------------------------------------------------
# Adapter
# --------------------------------------------------------------------------


def test_adapter_meta_and_no_schema_attribute():
    import cc_azure_resource_disk as shim
    from cloudinit_azure.modules import resource_disk as mod

    assert mod.meta["frequency"] == "always" and mod.meta["distros"] == ["all"]
    assert not hasattr(mod, "schema") and not hasattr(shim, "schema")
    assert shim.handle is mod.handle


@pytest.mark.parametrize("style", ["22.4", "25.1"])
def test_adapter_calls_core_with_instance_id(monkeypatch, style):
    from cloudinit_azure.modules import resource_disk as mod

    seen = {}
    monkeypatch.setattr(rd, "setup", lambda cfg, iid, machine, **kw: seen.update(
        cfg=cfg, iid=iid, machine=machine))
    cloud = SimpleNamespace(get_instance_id=lambda: "i-42")
    cfg = {"azure_resource_disk": {"filesystem": "xfs"},
           "datasource": {"Azure": {"never_destroy_ntfs": True}}}
    if style == "22.4":
        mod.handle("azure_resource_disk", cfg, cloud, logging.getLogger("t"), [])
    else:
        mod.handle(name="azure_resource_disk", cfg=cfg, cloud=cloud, args=[])
    assert seen["iid"] == "i-42"
    assert seen["cfg"].filesystem == "xfs" and seen["cfg"].never_destroy_ntfs
    assert seen["machine"].root == "/" and seen["machine"].runner is run


def test_adapter_logs_and_reraises_errors(caplog):
    from cloudinit_azure.modules import resource_disk as mod

    with pytest.raises(ConfigError):
        mod.handle(name="x", cfg={"azure_resource_disk": {"filesystem": "zfs"}},
                   cloud=None, args=[])
    assert "azure_resource_disk.filesystem" in caplog.text


def test_raw_disk_on_a_later_boot_of_the_instance_is_not_touched(tmp_path, caplog):
    root = str(tmp_path)
    nvme(root, "nvme0", "nvme0n1", "Microsoft NVMe Direct Disk", "259:0")
    with open(tmp_path / "dev/nvme0n1", "wb") as f:  # the user's data, no signature
        f.write(b"raw user data" + bytes(4 * rd.MIB))
    rd.write_marker(machine(root, FakeRunner(root)), rd.Marker("i-1", "/dev/nvme0n1",
                                                               "/dev/nvme0n1p1", "u-0"))
    runner = FakeRunner(root, new_part=("nvme0n1", "nvme0n1p1", "259:1"))
    with caplog.at_level(logging.INFO):
        out = rd.setup(rd.DiskSettings(), "i-1", machine(root, runner))
    assert out.decision.action == "skip" and "not a new instance" in out.decision.reason
    assert not {"sfdisk", "mkfs.ext4", "wipefs"} & set(runner.commands())
    assert [r.levelno for r in caplog.records if "leaving" in r.getMessage()] == [logging.INFO]
    # The same disk blank (the platform replaced it): formatted.
    (tmp_path / "dev/nvme0n1").write_bytes(bytes(4 * rd.MIB))
    mknod = lambda p, mode, dev: _write(p, "")  # noqa: E731
    out = rd.setup(rd.DiskSettings(), "i-1", machine(root, runner, mknod=mknod))
    assert out.decision.action == "format" and "came back raw and blank" in out.decision.reason


@pytest.mark.parametrize("name", ["DATALOSS_WARNING_README.txt ", " System Volume Information",
                                  " dataloss_warning_readme.txt", "System Volume Information\t",
                                  " "])
def test_azures_names_with_a_blank_are_user_files(name):
    assert rd.user_files(AZURE_FILES + [name]) == [name]
    d = rd.decide(NTFS1, CFG, ntfs_files=[name], is_new_instance=True)
    assert d.action == "skip" and "holds user files" in d.reason


def test_azures_names_in_any_case_are_azures():
    assert rd.user_files(["dataloss_warning_readme.TXT", "SYSTEM VOLUME INFORMATION"]) == []


def test_an_msr_partition_carrying_a_file_system_is_not_azures_layout():
    used_msr = rd.DiskLayout("/dev/sdb", "gpt", partitions=(
        rd.Partition("/dev/sdb1", 1, "ext4", "data", "u-9", rd.MSR_GUID),
        GPT_MSR.partitions[1]))
    assert rd.ntfs_candidate(used_msr) is None
    d = rd.decide(used_msr, CFG, ntfs_files=AZURE_FILES, is_new_instance=True)
    assert d.action == "skip" and "2 partitions (ext4, ntfs)" in d.reason
    assert rd.ntfs_candidate(GPT_MSR) == GPT_MSR.partitions[1]


def test_settings_defaults_are_the_schemas_only():
    # One source: the dataclass's defaults are read from the schema, so unit
    # tests use the values production uses (mount_options once differed).
    assert rd.DiskSettings() == rd.load_settings({})
    assert "x-systemd.after=cloud-init.service" in rd.DiskSettings().mount_options
