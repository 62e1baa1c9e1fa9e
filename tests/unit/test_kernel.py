from __future__ import annotations

import errno
import logging
import os
import struct

import pytest

from cloudinit_azure import kernel, settings
from cloudinit_azure.kernel import KernelConfig, cmdline
from cloudinit_azure.report import ConfigError
from cloudinit_azure.runner import Result
from tests.fakes import FakeRunner

# ------------------------------------------------------------ helpers


def _no_ioctl(path, request, arg):
    raise AssertionError(f"unexpected ioctl on {path}")


NO_IOCTL = _no_ioctl


def write(root, rel, data="", mode="w"):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(data)
    return path


def read(root, rel):
    with open(os.path.join(str(root), rel)) as f:
        return f.read()


def link(root, rel, target):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


VMBUS = "sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0004:00/VMBUS:00"


def add_disk(root, name, *, bus_path, vendor, model, partitions=(), timeout="30",
             majmin="8:0"):
    """A sysfs block device the way the kernel lays it out, with relative links."""
    scsi = f"{bus_path}/0:0:0:{name}"
    write(root, f"{scsi}/vendor", vendor.ljust(8) + "\n")
    write(root, f"{scsi}/model", model.ljust(16) + "\n")
    if timeout is not None:
        write(root, f"{scsi}/timeout", timeout + "\n")
    blk = f"{scsi}/block/{name}"
    os.makedirs(os.path.join(str(root), blk))
    os.symlink("../..", os.path.join(str(root), blk, "device"))
    link(root, f"sys/block/{name}", os.path.relpath(blk, "sys/block"))
    link(root, f"sys/class/block/{name}", os.path.relpath(blk, "sys/class/block"))
    for i, part in enumerate(partitions, start=1):
        write(root, f"{blk}/{part}/partition", f"{i}\n")
        link(root, f"sys/class/block/{part}", os.path.relpath(f"{blk}/{part}", "sys/class/block"))
        major, minor = majmin.split(":")
        link(root, f"sys/dev/block/{major}:{int(minor) + i}",
             os.path.relpath(f"{blk}/{part}", "sys/dev/block"))
    return scsi


@pytest.fixture
def azure_root(tmp_path):
    """Root on sda1 (Hyper-V), resource disk sdb with an unwritable timeout,
    data disk sdc, a non-Hyper-V disk sdd and an NVMe disk without a timeout."""
    root = tmp_path
    add_disk(root, "sda", bus_path=f"{VMBUS}/00000000-0000-8899-0000-000000000000/host0",
             vendor="Msft", model="Virtual Disk", partitions=["sda1", "sda2"])
    sdb = add_disk(root, "sdb",
                   bus_path=f"{VMBUS}/00000000-0001-8899-0000-000000000000/host1",
                   vendor="Msft", model="Virtual Disk", majmin="8:16", timeout=None)
    os.makedirs(os.path.join(str(root), sdb, "timeout"))  # writes fail with EISDIR
    add_disk(root, "sdc", bus_path=f"{VMBUS}/f8b3781a-1e82-4818-a1c3-63d806ec15bb/host3",
             vendor="Msft", model="Virtual Disk", majmin="8:32")
    add_disk(root, "sdd", bus_path="sys/devices/pci0000:00/0000:00:05.0/host4",
             vendor="QEMU", model="QEMU HARDDISK", majmin="8:48")
    add_disk(root, "sr0", bus_path=f"{VMBUS}/00000000-0001-0000-0000-000000000000/host2",
             vendor="Msft", model="Virtual CD/ROM", majmin="11:0")
    os.makedirs(os.path.join(str(root), "sys/devices/pci0000:00/nvme/nvme0n1"))
    link(root, "sys/block/nvme0n1", "../devices/pci0000:00/nvme/nvme0n1")
    write(root, "proc/self/mountinfo",
          "1 0 0:31 / / rw - overlay overlay rw\n"
          "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
          "23 22 0:5 / /dev rw - devtmpfs udev rw\n")
    return root


def timeout_of(root, name):
    return read(root, f"sys/block/{name}/device/timeout").strip()


def fake_which(*names):
    table = {n: f"/usr/sbin/{n}" for n in names}
    return table.get


def oem0_table(payload: bytes, table_id=b"MICROSFT", signature=b"OEM0") -> bytes:
    header = (signature + struct.pack("<I", 36 + len(payload)) + b"\x01\x00"
              + b"VRTUAL" + table_id + struct.pack("<III", 1, 0x5446534D, 1))
    assert len(header) == 36
    return header + payload


class IoctlRecorder:
    def __init__(self, error=None):
        self.calls = []
        self.error = error

    def __call__(self, path, request, arg):
        self.calls.append((path, request, bytes(arg)))
        if self.error:
            raise self.error


# ------------------------------------------------------------ NUMA


@pytest.mark.parametrize("release, version, numa_off", [
    ("2.6.32-754.el6.x86_64", (2, 6, 32), True),
    ("2.6.9-89.EL", (2, 6, 9), True),
    ("2.6.36", (2, 6, 36), True),
    ("2.6.37", (2, 6, 37), False),
    ("2.6.39-400.el5uek", (2, 6, 39), False),
    ("3.10.0", (3, 10, 0), False),
    ("3.10.0-1160.el7.x86_64", (3, 10, 0), False),
    ("5.15.0-1051-azure", (5, 15, 0), False),
    ("6.1.0-13-cloud-amd64", (6, 1, 0), False),
    ("10.0", (10, 0), False),  # "10.0" < "2.6.37" as strings; not as numbers
    ("weird", None, False),
])
def test_kernel_version_table(release, version, numa_off):
    assert kernel.kernel_version(release) == version
    assert kernel.needs_numa_off(release) is numa_off


def test_numa_off_added_only_for_old_kernels(tmp_path):
    write(tmp_path, "etc/default/grub", 'GRUB_CMDLINE_LINUX="quiet"\n')
    cfg = KernelConfig(entropy=False, scsi_timeout=False, serial_console=False)
    runner = FakeRunner()
    new = kernel.apply(str(tmp_path), cfg, release="5.15.0-1051-azure", runner=runner,
                       which=fake_which("update-grub"), ioctl=NO_IOCTL)
    assert new.cmdline is None and runner.calls == []
    assert read(tmp_path, "etc/default/grub") == 'GRUB_CMDLINE_LINUX="quiet"\n'
    old = kernel.apply(str(tmp_path), cfg, release="2.6.32-754.el6.x86_64", runner=runner,
                       which=fake_which("update-grub"), ioctl=NO_IOCTL)
    assert old.numa_off_wanted and old.cmdline.added == ("numa=off",)
    assert read(tmp_path, "etc/default/grub") == 'GRUB_CMDLINE_LINUX="quiet numa=off"\n'
    assert runner.calls == [["/usr/sbin/update-grub"]]


# ------------------------------------------------------------ entropy


def test_entropy_credited_through_ioctl(tmp_path):
    payload = bytes(range(1, 65))
    write(tmp_path, kernel.OEM0, oem0_table(payload), mode="wb")
    rec = IoctlRecorder()
    out = kernel.seed_entropy(str(tmp_path), ioctl=rec)
    assert out == kernel.EntropyOutcome("credited", 64, 512)
    [(path, request, arg)] = rec.calls
    assert path == os.path.join(str(tmp_path), "dev/random")
    assert request == 0x40085203
    count, size = struct.unpack("=ii", arg[:8])
    assert (count, size) == (512, 64)
    assert arg[8:] == payload  # header bytes are never mixed in or credited


def test_struct_packing_pads_to_u32_and_caps_credit():
    packed = kernel.rand_pool_info(b"abc", 24)
    assert packed == struct.pack("=ii", 24, 3) + b"abc\0"
    assert kernel.credit_bits(b"x" * 64) == 512
    assert kernel.credit_bits(b"x" * 200) == 512
    assert kernel.credit_bits(b"x" * 10) == 80


def test_entropy_falls_back_to_urandom_without_credit(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    payload = os.urandom(64).replace(b"\0", b"\1")
    write(tmp_path, kernel.OEM0, oem0_table(payload), mode="wb")
    write(tmp_path, "dev/urandom", "")  # stands in for the device node
    rec = IoctlRecorder(PermissionError(errno.EPERM, "Operation not permitted"))
    out = kernel.seed_entropy(str(tmp_path), ioctl=rec)
    assert out == kernel.EntropyOutcome("mixed", 64, 0)
    assert len(rec.calls) == 1
    with open(os.path.join(str(tmp_path), "dev/urandom"), "rb") as f:
        assert f.read() == payload
    assert "EPERM" in caplog.text and "without credit" in caplog.text


def test_entropy_fallback_never_creates_a_device_file(tmp_path):
    write(tmp_path, kernel.OEM0, oem0_table(b"\x07" * 64), mode="wb")
    out = kernel.seed_entropy(str(tmp_path), ioctl=IoctlRecorder(OSError(errno.ENOTTY, "x")))
    assert out.status == "failed"
    assert not os.path.exists(os.path.join(str(tmp_path), "dev/urandom"))


def test_missing_table_skipped_quietly(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    rec = IoctlRecorder()
    assert kernel.seed_entropy(str(tmp_path), ioctl=rec).status == "absent"
    assert rec.calls == []
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize("table, status", [
    (oem0_table(b"\0" * 64), "consumed"),  # Linux 6.9+ zeroes it after seeding
    (oem0_table(b"\5" * 64, table_id=b"SOMEOEM "), "invalid"),
    (oem0_table(b"\5" * 64, signature=b"OEM1"), "invalid"),
    (b"OEM0short", "invalid"),
])
def test_table_not_usable(tmp_path, table, status):
    write(tmp_path, kernel.OEM0, table, mode="wb")
    rec = IoctlRecorder()
    assert kernel.seed_entropy(str(tmp_path), ioctl=rec).status == status
    assert rec.calls == []


# ------------------------------------------------------------ SCSI


def test_root_disk_resolved_from_mountinfo(azure_root):
    assert kernel.root_disks(str(azure_root)) == ["sda"]


def test_root_disk_by_source_name_and_through_device_mapper(tmp_path):
    add_disk(tmp_path, "sdb", bus_path=f"{VMBUS}/x/host0", vendor="Msft",
             model="Virtual Disk", partitions=["sdb1"], majmin="8:16")
    os.makedirs(os.path.join(str(tmp_path), "sys/devices/virtual/block/dm-0/slaves"))
    link(tmp_path, "sys/devices/virtual/block/dm-0/slaves/sdb1", "../../../../../class/block/sdb1")
    link(tmp_path, "sys/class/block/dm-0", "../../devices/virtual/block/dm-0")
    link(tmp_path, "dev/mapper/rootvg-root", "../dm-0")
    write(tmp_path, "proc/self/mountinfo",
          "22 1 254:0 / / rw - xfs /dev/mapper/rootvg-root rw\n")
    assert kernel.root_disks(str(tmp_path)) == ["sdb"]


def test_no_root_disk_on_overlay(tmp_path):
    write(tmp_path, "proc/self/mountinfo", "1 0 0:31 / / rw - overlay overlay rw\n")
    assert kernel.root_disks(str(tmp_path)) == []
    assert kernel.root_disks(str(tmp_path / "nothing")) == []


def test_hyperv_disks_need_msft_virtual_disk_on_vmbus(azure_root, tmp_path_factory):
    assert kernel.hyperv_disks(str(azure_root)) == ["sda", "sdb", "sdc"]
    # Msft-labelled disk that is not on the VMBus (e.g. an iSCSI target): not ours
    other = tmp_path_factory.mktemp("other")
    add_disk(other, "sde", bus_path="sys/devices/platform/iscsi/host9", vendor="Msft",
             model="Virtual Disk")
    assert kernel.hyperv_disks(str(other)) == []


def test_scsi_timeouts_on_fake_sysfs(azure_root, caplog):
    root = str(azure_root)
    out = kernel.set_scsi_timeouts(root, 300)
    assert out.written == ("sda", "sdc")
    assert out.skipped == ("sdb",)
    assert timeout_of(azure_root, "sda") == "300"
    assert timeout_of(azure_root, "sdc") == "300"
    assert timeout_of(azure_root, "sdd") == "30"  # not a Hyper-V disk: untouched
    assert "cannot set SCSI timeout of sdb" in caplog.text
    again = kernel.set_scsi_timeouts(root, 300)
    assert again.written == () and again.unchanged == ("sda", "sdc")
    assert not again.rule_written


def test_non_msft_root_disk_still_gets_timeout(tmp_path):
    add_disk(tmp_path, "sda", bus_path="sys/devices/pci0000:00/host0", vendor="QEMU",
             model="QEMU HARDDISK", partitions=["sda1"])
    write(tmp_path, "proc/self/mountinfo", "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n")
    assert kernel.set_scsi_timeouts(str(tmp_path), 180).written == ("sda",)
    assert timeout_of(tmp_path, "sda") == "180"


def test_udev_rule_text_and_idempotency(tmp_path):
    rule = kernel.udev_rule(300)
    assert rule.endswith("\n")
    body = [line for line in rule.splitlines() if not line.startswith("#")]
    assert body == [
        'ACTION=="add|change", SUBSYSTEM=="block", KERNEL=="sd*", ENV{DEVTYPE}=="disk", '
        'ATTRS{vendor}=="Msft*", ATTRS{model}=="Virtual Disk*", ATTR{device/timeout}="300"']
    root = str(tmp_path)
    assert kernel.install_udev_rule(root, 300)
    path = os.path.join(root, kernel.UDEV_RULE)
    assert path.endswith("etc/udev/rules.d/66-azure-scsi-timeout.rules")
    mtime = os.stat(path).st_mtime_ns
    assert not kernel.install_udev_rule(root, 300)
    assert os.stat(path).st_mtime_ns == mtime
    assert kernel.install_udev_rule(root, 120)
    assert 'ATTR{device/timeout}="120"' in read(tmp_path, kernel.UDEV_RULE)


# ------------------------------------------------------------ serial console, grub, getty


DEBIAN_GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'
CONSOLE_ONLY = KernelConfig(numa=False, entropy=False, scsi_timeout=False)


def test_grub_regenerated_only_when_changed_and_tool_exists(tmp_path):
    root = str(tmp_path)
    write(root, "etc/default/grub", DEBIAN_GRUB)
    runner = FakeRunner()
    first = kernel.apply(root, CONSOLE_ONLY, ioctl=NO_IOCTL, release="6.1.0", runner=runner,
                         which=fake_which("update-grub", "grub-mkconfig"))
    assert first.grub_regenerated
    assert runner.calls == [["/usr/sbin/update-grub"]]
    for _ in range(2):
        again = kernel.apply(root, CONSOLE_ONLY, ioctl=NO_IOCTL, release="6.1.0", runner=runner,
                             which=fake_which("update-grub"))
        assert not again.cmdline.changed and not again.grub_regenerated
    assert runner.calls == [["/usr/sbin/update-grub"]]
    assert 'GRUB_CMDLINE_LINUX="console=ttyS0,115200n8 earlyprintk=ttyS0"' in read(
        root, "etc/default/grub")


def test_no_grub_tool_edits_but_runs_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    write(tmp_path, "etc/default/grub", DEBIAN_GRUB)
    runner = FakeRunner()
    out = kernel.apply(str(tmp_path), CONSOLE_ONLY, ioctl=NO_IOCTL, release="6.1.0", runner=runner,
                       which=fake_which())
    assert out.cmdline.changed and not out.grub_regenerated
    assert runner.calls == []
    assert "no grub tool found" in caplog.text


def test_regenerate_grub_switch(tmp_path):
    write(tmp_path, "etc/default/grub", DEBIAN_GRUB)
    runner = FakeRunner()
    cfg = KernelConfig(numa=False, entropy=False, scsi_timeout=False, regenerate_grub=False)
    out = kernel.apply(str(tmp_path), cfg, ioctl=NO_IOCTL, release="6.1.0", runner=runner,
                       which=fake_which("update-grub"))
    assert out.cmdline.changed and runner.calls == []


@pytest.mark.parametrize("tools, dirs, grub, expected", [
    (("grub2-mkconfig",), ["boot/grub2"], "", ["/usr/sbin/grub2-mkconfig", "-o",
                                               "/boot/grub2/grub.cfg"]),
    (("grub2-mkconfig",), ["boot/efi/EFI/redhat/grub.cfg"], "",
     ["/usr/sbin/grub2-mkconfig", "-o", "/boot/efi/EFI/redhat/grub.cfg"]),
    (("grub-mkconfig",), [], "", ["/usr/sbin/grub-mkconfig", "-o", "/boot/grub/grub.cfg"]),
    (("grubby", "grub2-mkconfig"), ["boot/grub2"], "GRUB_ENABLE_BLSCFG=true\n",
     ["/usr/sbin/grubby", "--update-kernel=ALL", "--args=numa=off"]),
    (("grub2-mkconfig",), ["boot/grub2"], "GRUB_ENABLE_BLSCFG=true\n",
     ["/usr/sbin/grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]),
    (("update-grub", "grub-mkconfig"), [], "", ["/usr/sbin/update-grub"]),
])
def test_grub_tool_choice(tmp_path, tools, dirs, grub, expected):
    for d in dirs:
        if d.endswith(".cfg"):
            write(tmp_path, d, "")
        else:
            os.makedirs(os.path.join(str(tmp_path), d))
    write(tmp_path, "etc/default/grub", grub)
    assert kernel.grub_commands(str(tmp_path), ["numa=off"], fake_which(*tools)) == [expected]


def test_grub_tool_failure_is_logged_not_raised(tmp_path, caplog):
    write(tmp_path, "etc/default/grub", DEBIAN_GRUB)
    out = kernel.apply(str(tmp_path), CONSOLE_ONLY, ioctl=NO_IOCTL, release="6.1.0",
                       runner=FakeRunner(default=Result(1, "", "boom"), strict=True),
                       which=fake_which("update-grub"))
    assert out.cmdline.changed and not out.grub_regenerated
    assert "regenerating grub configuration failed" in caplog.text


def test_default_which_never_finds_host_tools_for_another_root(tmp_path):
    assert kernel.which_in(str(tmp_path))("sh") is None


def test_getty_symlink(tmp_path):
    root = str(tmp_path)
    assert kernel.enable_serial_getty(root, "ttyS0").status == "no-systemd"
    write(tmp_path, "lib/systemd/system/serial-getty@.service", "[Unit]\n")
    out = kernel.enable_serial_getty(root, "ttyS0")
    assert out.status == "enabled"
    path = os.path.join(root, "etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service")
    assert os.readlink(path) == "/lib/systemd/system/serial-getty@.service"
    assert kernel.enable_serial_getty(root, "ttyS0").status == "present"
    assert os.readlink(path) == "/lib/systemd/system/serial-getty@.service"


def test_console_tty_follows_the_args():
    assert kernel.console_tty(["console=tty0", "console=ttyS1,9600"]) == "ttyS1"
    assert kernel.console_tty(["quiet"]) == "ttyS0"


# ------------------------------------------------------------ everything, three boots


def test_apply_everything_three_times_converges(azure_root):
    root = str(azure_root)
    write(root, "etc/default/grub", DEBIAN_GRUB)
    os.makedirs(os.path.join(root, "etc/default/grub.d"))
    write(root, "usr/lib/systemd/system/serial-getty@.service", "[Unit]\n")
    write(root, kernel.OEM0, oem0_table(b"\x42" * 64), mode="wb")
    runner, rec = FakeRunner(), IoctlRecorder()
    cfg = KernelConfig.from_settings(settings.load("azure_kernel", {}))
    outs = [kernel.apply(root, cfg, release="2.6.32-754.el6.x86_64", runner=runner,
                         which=fake_which("update-grub"), ioctl=rec) for _ in range(3)]
    assert [o.entropy.status for o in outs] == ["credited"] * 3  # fresh each boot
    assert outs[0].scsi.written == ("sda", "sdc") and outs[2].scsi.written == ()
    assert outs[0].cmdline.added == ("numa=off", "console=ttyS0,115200n8", "earlyprintk=ttyS0")
    assert not outs[1].cmdline.changed and not outs[2].cmdline.changed
    assert runner.calls == [["/usr/sbin/update-grub"]]
    assert [o.getty.status for o in outs] == ["enabled", "present", "present"]
    assert read(root, "etc/default/grub") == DEBIAN_GRUB  # drop-in mode
    assert cmdline.current_words(root) == [
        "numa=off", "console=ttyS0,115200n8", "earlyprintk=ttyS0", "quiet"]


def test_disabled_parts_do_nothing(azure_root):
    root = str(azure_root)
    write(root, "etc/default/grub", DEBIAN_GRUB)
    write(root, kernel.OEM0, oem0_table(b"\x42" * 64), mode="wb")
    rec, runner = IoctlRecorder(), FakeRunner()
    cfg = KernelConfig(numa=False, entropy=False, scsi_timeout=False, serial_console=False)
    out = kernel.apply(root, cfg, release="2.6.32", runner=runner,
                       which=fake_which("update-grub"), ioctl=rec)
    assert out == kernel.KernelOutcome()
    assert rec.calls == [] and runner.calls == []
    assert timeout_of(azure_root, "sda") == "30"
    assert read(root, "etc/default/grub") == DEBIAN_GRUB
    assert not os.path.exists(os.path.join(root, kernel.UDEV_RULE))


# ------------------------------------------------------------ settings and the adapter


def test_defaults():
    cfg = KernelConfig.from_settings(settings.load("azure_kernel", None))
    assert cfg == KernelConfig()
    assert cfg.console_args == ("console=ttyS0,115200n8", "earlyprintk=ttyS0")
    assert cfg.scsi_seconds == 300


def test_partial_config_keeps_other_defaults():
    cfg = KernelConfig.from_settings(settings.load(
        "azure_kernel", {"azure_kernel": {"scsi_timeout": {"seconds": 120},
                                          "serial_console": {"getty": False}}}))
    assert cfg.scsi_seconds == 120 and cfg.scsi_timeout
    assert not cfg.getty and cfg.serial_console and cfg.regenerate_grub


@pytest.mark.parametrize("given, key", [
    ({"scsi_timeout": {"seconds": "300"}}, "azure_kernel.scsi_timeout.seconds"),
    ({"scsi_timeout": {"seconds": 0}}, "azure_kernel.scsi_timeout.seconds"),
    ({"numa": {"enabled": "yes"}}, "azure_kernel.numa.enabled"),
    ({"serial_console": {"args": 'console="ttyS0"'}}, "azure_kernel.serial_console.args"),
    ({"serial_console": {"bogus": 1}}, "azure_kernel.serial_console"),
    ({"entropy": True}, "azure_kernel.entropy"),
    ({"numa_off": True}, "azure_kernel"),
])
def test_schema_errors_name_the_key(given, key):
    with pytest.raises(ConfigError) as err:
        settings.load("azure_kernel", {"azure_kernel": given})
    assert f"at {key}:" in str(err.value)


def test_module_meta_and_handle_signatures(monkeypatch):
    import cc_azure_kernel
    from cloudinit_azure.modules import kernel as module

    assert cc_azure_kernel.meta == {"id": "cc_azure_kernel", "frequency": "always",
                                    "distros": ["all"]}
    assert not hasattr(cc_azure_kernel, "schema") and not hasattr(module, "schema")
    seen = []
    monkeypatch.setattr(kernel, "apply",
                        lambda root, config, **kw: seen.append((root, config, kw)))
    cfg = {"azure_kernel": {"numa": {"enabled": False}}}
    log = logging.getLogger("test")
    cc_azure_kernel.handle("azure_kernel", cfg, None, log, [])  # 22.4 positional
    cc_azure_kernel.handle(name="azure_kernel", cfg=cfg, cloud=None, args=[])  # 23.2+
    assert [s[0] for s in seen] == ["/", "/"]
    assert all(s[1] == KernelConfig(numa=False) for s in seen)
    assert seen[0][2]["log"] is log
    with pytest.raises(ConfigError):
        cc_azure_kernel.handle("azure_kernel", {"azure_kernel": {"x": 1}}, None, log, [])


def test_sysfs_key_points_the_scsi_part_at_another_tree(tmp_path):
    fake = tmp_path / "run/fake-sys"
    add_disk(fake, "sda", bus_path=f"{VMBUS}/f8b3781a-1e82-4818-a1c3-63d806ec15bb/host0",
             vendor="Msft", model="Virtual Disk")
    # add_disk lays the tree out under <root>/sys: the key names that directory.
    cfg = KernelConfig.from_settings(settings.load(
        "azure_kernel", {"azure_kernel": {"sysfs": "/run/fake-sys/sys"}}))
    assert cfg.sysfs == "/run/fake-sys/sys"
    out = kernel.set_scsi_timeouts(str(tmp_path), 300, sysfs=cfg.sysfs)
    assert out.written == ("sda",)
    assert read(fake, "sys/block/sda/device/timeout").strip() == "300"
    assert KernelConfig.from_settings(settings.load("azure_kernel", None)).sysfs == "/sys"
    with pytest.raises(ConfigError):
        settings.load("azure_kernel", {"azure_kernel": {"sysfs": "relative/path"}})


def test_kernel_config_defaults_are_the_schemas_only():
    assert KernelConfig() == KernelConfig.from_settings(settings.load("azure_kernel", {}))
    assert KernelConfig.from_settings({}) == KernelConfig()
