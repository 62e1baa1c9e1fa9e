"""cloudinit-azure doctor over fake root trees: a good one, and one broken thing at a time."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudinit_azure import doctor
from cloudinit_azure.doctor import cli, plugin
from cloudinit_azure.doctor.facts import parse_dpkg_status, parse_version
from cloudinit_azure.doctor.tree import RootError, Tree

REPO = Path(__file__).resolve().parents[2]
SITE = "usr/lib/python3/dist-packages"
SSHD_CONFIG = """\
Include /etc/ssh/sshd_config.d/*.conf
#PasswordAuthentication yes
KbdInteractiveAuthentication no
"""
DPKG_STATUS = """\
Package: openssh-server
Status: install ok installed
Version: 1:9.2p1-2+deb12u3

Package: openssl
Status: install ok installed
Version: 3.0.15-1~deb12u1

Package: waagent
Status: deinstall ok config-files
Version: 2.7.3-1
"""


def _exe(root: Path, rel: str, data: bytes = b"#!/bin/sh\n") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o755)


def _file(root: Path, rel: str, text: str = "") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def good_tree(root: Path) -> Path:
    """A minimal tree that passes every check (Debian layout, merged /usr)."""
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "sbin").symlink_to("usr/sbin")
    (root / "bin").symlink_to("usr/bin")
    _file(root, "etc/os-release", 'PRETTY_NAME="Fake GNU/Linux 12"\n')
    # an absolute link must resolve inside the tree, not on this machine
    _exe(root, "usr/bin/python3.12")
    (root / "usr/bin/python3").symlink_to("/usr/bin/python3.12")
    _exe(root, "usr/bin/openssl", b"\x7fELF OpenSSL 3.0.15 19 Sep 2024")
    _exe(root, "usr/sbin/sshd", b"\x7fELF OpenSSH_9.2p1 Debian")
    for tool in ("sfdisk", "fdisk", "mkfs.ext4", "parted", "chpasswd", "ip", "blkid",
                 "mkswap", "dhclient"):
        _exe(root, f"usr/sbin/{tool}")
    for tool in ("sudo", "sed", "grep", "lsblk", "mount", "umount", "partx", "udevadm",
                 "fallocate", "eject", "ntfs-3g", "ntfsls"):
        _exe(root, f"usr/bin/{tool}")
    _file(root, "lib/modules/6.1.0-fake/kernel/fs/udf/udf.ko.xz")
    _file(root, f"{SITE}/cloudinit/__init__.py")
    _file(root, f"{SITE}/cloudinit/sources/__init__.py")
    _file(root, f"{SITE}/cloudinit/version.py", '__VERSION__ = "22.4.2"\n')
    for mod in ("cloudinit_azure", "cloudinit_azure/sources", "requests", "yaml",
                "jsonschema", "defusedxml", "cryptography", "pycdlib"):
        _file(root, f"{SITE}/{mod}/__init__.py")
    for shim in plugin.SHIMS:
        _file(root, f"{SITE}/{shim}.py", "from cloudinit_azure.modules import handle\n")
    _file(root, "etc/ssh/sshd_config", SSHD_CONFIG)
    (root / "etc/ssh/sshd_config.d").mkdir()
    _file(root, "etc/cloud/cloud.cfg", "datasource_list: [ NoCloud, Azure, None ]\n"
          "cloud_init_modules: [ seed_random, users_groups, ssh ]\n")
    _file(root, "etc/cloud/cloud.cfg.d/91_cloudinit_azure.cfg",
          (REPO / "config/cloud.cfg.d/91_cloudinit_azure.cfg").read_text())
    return root


@pytest.fixture
def tree(tmp_path):
    return good_tree(tmp_path / "root")


def _by_id(root):
    return {c.id: c for c in doctor.run(root)}


def test_good_tree_passes_every_check(tree):
    checks = doctor.run(tree)
    bad = [c for c in checks if c.status != "ok"]
    assert bad == []
    assert doctor.exit_code(checks) == 0
    ids = {c.id for c in checks}
    # Azure's documented list, each item
    assert {"python", "openssl", "openssh", "tool.sfdisk", "tool.fdisk", "tool.mkfs.ext4",
            "tool.parted", "tool.chpasswd", "tool.sudo", "tool.sed", "tool.grep", "tool.ip",
            "udf"} <= ids
    assert {"cloud-init", "plugin", "dhcp", "ntfs-3g", "sshd-dropin", "datasource-list",
            "datasource-pkg-list", "wiring", "modules", "settings", "waagent"} <= ids


def test_versions_are_read_from_the_tree_not_this_machine(tree):
    checks = _by_id(tree)
    assert "Python 3.12" in checks["python"].why  # this machine runs another
    assert "OpenSSL 3.0.15" in checks["openssl"].why
    assert "OpenSSH 9.2" in checks["openssh"].why
    assert "22.4.2" in checks["cloud-init"].why
    assert "not needed" in checks["udf"].why


def _rm(rel):
    def apply(root):
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            import shutil
            shutil.rmtree(path)
        else:
            path.unlink()
    return apply


def _write(rel, text):
    return lambda root: _file(root, rel, text)


def _exe_with(rel, data):
    return lambda root: _exe(root, rel, data)


BROKEN = [
    # (what is broken, how, check id, status, words in "why")
    ("no python3", _rm("usr/bin/python3"), "python", "error", "no python3"),
    ("python 3.7", lambda r: (_rm("usr/bin/python3")(r),
                              (r / "usr/bin/python3").symlink_to("python3.7"),
                              _exe(r, "usr/bin/python3.7")),
     "python", "error", "3.7 is older"),
    ("no openssl", _rm("usr/bin/openssl"), "openssl", "error", "no openssl"),
    ("openssl 0.9.8", _exe_with("usr/bin/openssl", b"OpenSSL 0.9.8 2010"),
     "openssl", "error", "0.9.8 is older"),
    ("no sshd", _rm("usr/sbin/sshd"), "openssh", "error", "no sshd"),
    ("openssh 5.1", _exe_with("usr/sbin/sshd", b"OpenSSH_5.1p1"), "openssh", "error",
     "5.1 is older"),
    ("openssh from dpkg 4.7", _write("var/lib/dpkg/status",
                                     "Package: openssh-server\nStatus: install ok installed\n"
                                     "Version: 1:4.7p1-1\n"),
     "openssh", "error", "4.7 is older"),
    ("no sfdisk", _rm("usr/sbin/sfdisk"), "tool.sfdisk", "error", "partitions"),
    ("no parted", _rm("usr/sbin/parted"), "tool.parted", "warning", "Azure lists it"),
    ("no fdisk", _rm("usr/sbin/fdisk"), "tool.fdisk", "warning", "Azure lists it"),
    ("no mkfs.ext4", _rm("usr/sbin/mkfs.ext4"), "tool.mkfs.ext4", "error", "formats"),
    ("no chpasswd", _rm("usr/sbin/chpasswd"), "tool.chpasswd", "error", "password"),
    ("no sudo", _rm("usr/bin/sudo"), "tool.sudo", "error", "sudo"),
    ("no sed", _rm("usr/bin/sed"), "tool.sed", "warning", "missing"),
    ("no grep", _rm("usr/bin/grep"), "tool.grep", "warning", "missing"),
    ("no ip", _rm("usr/sbin/ip"), "tool.ip", "error", "network"),
    ("sudo not executable", lambda r: (r / "usr/bin/sudo").chmod(0o644), "tool.sudo",
     "error", "missing"),
    ("no pycdlib, no udf", lambda r: (_rm(f"{SITE}/pycdlib")(r),
                                      _rm("lib/modules/6.1.0-fake/kernel/fs/udf")(r)),
     "udf", "error", "cannot be read"),
    ("udf but no pycdlib", _rm(f"{SITE}/pycdlib"), "udf", "warning", "pycdlib missing"),
    ("no cloud-init", _rm(f"{SITE}/cloudinit"), "cloud-init", "error", "not installed"),
    ("cloud-init 21.4", _write(f"{SITE}/cloudinit/version.py", '__VERSION__ = "21.4"\n'),
     "cloud-init", "error", "older than 22.4"),
    ("cloud-init 25.3", _write(f"{SITE}/cloudinit/version.py", '__VERSION__ = "25.3"\n'),
     "cloud-init", "warning", "newer than 25.1"),
    ("plug-in not installed", _rm(f"{SITE}/cloudinit_azure"), "plugin", "error",
     "not on the image's Python path"),
    ("a shim missing", _rm(f"{SITE}/cc_azure_ready.py"), "plugin", "error", "cc_azure_ready"),
    ("no requests", _rm(f"{SITE}/requests"), "python.requests", "error", "requests"),
    ("no jsonschema", _rm(f"{SITE}/jsonschema"), "python.jsonschema", "error", "jsonschema"),
    ("no eject", _rm("usr/bin/eject"), "tool.eject", "warning", "ejected"),
    ("no partx", _rm("usr/bin/partx"), "tool.partx", "warning", "re-read"),
    ("no DHCP client", _rm("usr/sbin/dhclient"), "dhcp", "error", "no supported DHCP"),
    ("no ntfs-3g", lambda r: (_rm("usr/bin/ntfs-3g")(r), _rm("usr/bin/ntfsls")(r)),
     "ntfs-3g", "warning", "never be proven empty"),
    ("no sshd_config", _rm("etc/ssh/sshd_config"), "sshd-dropin", "error", "sshd_config"),
    ("sshd_config without Include", _write("etc/ssh/sshd_config", "UsePAM yes\n"),
     "sshd-dropin", "warning", "no 'Include"),
    ("PasswordAuthentication before Include",
     _write("etc/ssh/sshd_config", "PasswordAuthentication no\n" + SSHD_CONFIG),
     "sshd-dropin", "warning", "comes before the Include"),
    ("no sshd_config.d", _rm("etc/ssh/sshd_config.d"), "sshd-dropin", "warning",
     "directory is missing"),
    ("cloud.cfg.d file not YAML", _write("etc/cloud/cloud.cfg.d/50_bad.cfg", "a: [b\n"),
     "config.parse", "error", "50_bad.cfg is not valid YAML"),
    ("datasource_list without Azure",
     _write("etc/cloud/cloud.cfg.d/90_list.cfg", "datasource_list: [ NoCloud, None ]\n"),
     "datasource-list", "error", "without Azure"),
    ("datasource_list lower-case azure",
     _write("etc/cloud/cloud.cfg.d/90_list.cfg", "datasource_list: [ azure ]\n"),
     "datasource-list", "error", "case-sensitive"),
    ("datasource_list over several lines",
     _write("etc/cloud/cloud.cfg.d/90_list.cfg", "datasource_list:\n  - Azure\n  - None\n"),
     "datasource-list", "warning", "single-line"),
    ("another datasource_pkg_list replaces ours",
     _write("etc/cloud/cloud.cfg.d/99_other.cfg", "datasource_pkg_list: [ cloudinit.sources ]\n"),
     "datasource-pkg-list", "error", "replacing ours"),
    ("datasource_pkg_list names a missing package",
     _write("etc/cloud/cloud.cfg.d/99_other.cfg",
            "datasource_pkg_list: [ cloudinit_azure.sources, vendor.sources ]\n"),
     "datasource-pkg-list", "error", "vendor.sources, not installed"),
    ("no wiring", _rm("etc/cloud/cloud.cfg.d/91_cloudinit_azure.cfg"), "wiring", "error",
     "91_cloudinit_azure.cfg is missing"),
    ("no wiring and so no datasource_pkg_list",
     _rm("etc/cloud/cloud.cfg.d/91_cloudinit_azure.cfg"), "datasource-pkg-list", "error",
     "built-in Azure datasource"),
    ("module listed that is not installed",
     _write("etc/cloud/cloud.cfg.d/95_mods.cfg", "cloud_init_modules: [ azure_frobnicate ]\n"),
     "modules", "error", "azure_frobnicate"),
    ("insert_modules false and none listed",
     _write("etc/cloud/cloud.cfg.d/95_mods.cfg",
            "datasource: {Azure: {insert_modules: false}}\n"),
     "modules", "warning", "never runs"),
    ("invalid plug-in setting",
     _write("etc/cloud/cloud.cfg.d/95_bad.cfg", "azure_resource_disk: {filesystem: 7}\n"),
     "settings", "error", "azure_resource_disk.filesystem"),
    ("waagent provisions too", _write("etc/waagent.conf", "Provisioning.Agent=waagent\n"),
     "waagent", "error", "Provisioning.Agent=waagent"),
    ("old waagent provisions too", _write("etc/waagent.conf", "Provisioning.Enabled=y\n"),
     "waagent", "error", "Provisioning.Enabled=y"),
    ("waagent formats the resource disk",
     _write("etc/waagent.conf", "Provisioning.Agent=auto\nResourceDisk.Format=y\n"),
     "waagent", "warning", "races azure_resource_disk"),
    ("waagent with provisioning disabled reports Ready on every start",
     _write("etc/waagent.conf", "Provisioning.Agent=disabled\n"),
     "waagent", "error", "also after a ProvisioningFailed"),
    # Debian 12's and 13's packaged /etc/waagent.conf (its settings, comments left out)
    ("Debian's packaged waagent.conf",
     _write("etc/waagent.conf", "Extensions.Enabled=y\nProvisioning.Agent=cloud-init\n"
            "Provisioning.DeleteRootPassword=y\nProvisioning.RegenerateSshHostKeyPair=y\n"
            "Provisioning.MonitorHostName=y\nProvisioning.DecodeCustomData=n\n"
            "Provisioning.ExecuteCustomData=n\nResourceDisk.Format=y\n"
            "ResourceDisk.Filesystem=ext4\nResourceDisk.MountPoint=/mnt/resource\n"
            "ResourceDisk.EnableSwap=n\nAutoUpdate.Enabled=n\nOS.EnableFirewall=n\n"),
     "waagent", "warning", "mounted at /mnt/resource"),
]


@pytest.mark.parametrize("what,breaks,check_id,status,words", BROKEN,
                         ids=[b[0] for b in BROKEN])
def test_each_broken_thing_is_named(tree, what, breaks, check_id, status, words):
    breaks(tree)
    checks = doctor.run(tree)
    got = {c.id: c for c in checks}[check_id]
    assert got.status == status, got
    assert words in got.why, got
    assert got.fix
    assert doctor.exit_code(checks) == {"warning": 1, "error": 2}[status]


def test_waagent_deferring_to_cloud_init_is_fine(tree):
    _file(tree, "etc/waagent.conf", "# defaults\nProvisioning.Agent=cloud-init\n"
          "ResourceDisk.Format=n\n")
    assert _by_id(tree)["waagent"].status == "ok"


def test_dpkg_versions_win_over_binary_strings(tree):
    _file(tree, "var/lib/dpkg/status", DPKG_STATUS)
    checks = _by_id(tree)
    assert "OpenSSH 9.2" in checks["openssh"].why
    assert "OpenSSL 3.0.15" in checks["openssl"].why


def test_busybox_udhcpc_and_dhcpcd_count_as_clients(tree):
    (tree / "usr/sbin/dhclient").unlink()
    _exe(tree, "usr/bin/busybox", b"\x7fELF\0ls\0udhcpc\0vi\0")
    assert "busybox udhcpc" in _by_id(tree)["dhcp"].why
    (tree / "usr/bin/busybox").unlink()
    _exe(tree, "usr/sbin/dhcpcd")
    assert _by_id(tree)["dhcp"].status == "warning"  # no timeout(1)
    _exe(tree, "usr/bin/timeout")
    assert _by_id(tree)["dhcp"].status == "ok"


def _snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            data = b"" if p.is_symlink() or p.is_dir() else p.read_bytes()
            out[str(p)] = (st.st_mode, st.st_mtime_ns, hashlib.sha256(data).hexdigest())
    return out


def test_the_tree_is_never_changed(tree):
    _file(tree, "etc/waagent.conf", "Provisioning.Agent=waagent\n")
    before = _snapshot(tree)
    doctor.run(tree)
    assert _snapshot(tree) == before


def test_links_cannot_leave_the_tree(tree):
    # /usr/bin/sudo -> /../../../usr/bin/sudo stays inside the root ("/.." is "/")
    (tree / "usr/bin/sudo").unlink()
    (tree / "usr/bin/sudo").symlink_to("/../../../../nowhere/sudo")
    assert _by_id(tree)["tool.sudo"].status == "error"
    (tree / "usr/bin/sudo").unlink()
    (tree / "usr/bin/sudo").symlink_to("/usr/bin/sudo")  # a loop
    assert Tree(tree).resolve("usr/bin/sudo") is None


@pytest.mark.parametrize("make,words", [
    (lambda p: p, "does not exist"),
    (lambda p: (p.write_text("x"), p)[-1], "is not a directory"),
    (lambda p: (p.mkdir(), p)[-1], "no etc or usr/"),
    (lambda p: (p.mkdir(), (p / "etc").mkdir(), p)[-1], "no usr/"),
    (lambda p: (p.mkdir(), (p / "etc").mkdir(), (p / "usr").write_text(""), p)[-1],
     "usr is not a directory"),
], ids=["missing", "a file", "empty dir", "no usr", "usr a file"])
def test_not_a_root_tree_exits_2(tmp_path, capsys, make, words):
    root = make(tmp_path / "x")
    with pytest.raises(RootError, match=words):
        doctor.run(root)
    assert cli.main(["--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_unreadable_tree_exits_2(tree, monkeypatch, capsys):
    real = os.listdir

    def listdir(path="."):
        if Path(path) == tree / "etc":
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "listdir", listdir)
    assert cli.main(["--root", str(tree)]) == 2
    assert "etc cannot be read: Permission denied" in capsys.readouterr().err


def test_json_report_and_exit_status(tree, capsys):
    (tree / "usr/bin/eject").unlink()
    assert cli.main(["--root", str(tree), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["exit"] == 1 and report["summary"]["warning"] == 1
    assert report["os"] == "Fake GNU/Linux 12"
    eject = next(c for c in report["checks"] if c["id"] == "tool.eject")
    assert eject["status"] == "warning" and eject["fix"].startswith("install eject")


def test_text_report_has_why_and_fix(tree, capsys):
    (tree / "usr/sbin/ip").unlink()
    assert cli.main(["--root", str(tree)]) == 2
    out = capsys.readouterr().out
    assert "ERROR   ip (iproute2): missing:" in out
    assert "fix: install iproute2" in out
    assert out.rstrip().endswith("(exit 2)")


def test_module_entry_point(tree):
    proc = subprocess.run([sys.executable, "-m", "cloudinit_azure", "doctor", "--root",
                           str(tree), "--json"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["exit"] == 0


def test_console_script_is_declared():
    text = (REPO / "setup.cfg").read_text()
    assert "cloudinit-azure = cloudinit_azure.__main__:main" in text


def test_shims_match_the_package():
    assert sorted(plugin.SHIMS) == sorted(p.stem for p in REPO.glob("cc_azure_*.py"))


def test_version_parsing():
    assert parse_version("1:9.2p1-2+deb12u3") == (9, 2)
    assert parse_version("3.0.15-1~deb12u1") == (3, 0, 15)
    assert parse_version("22.4.2") == (22, 4, 2)
    assert parse_version("") is None
    status = parse_dpkg_status(DPKG_STATUS)
    assert status == {"openssh-server": "1:9.2p1-2+deb12u3", "openssl": "3.0.15-1~deb12u1"}


def test_openssl_version_from_the_library_soname(tree):
    _exe(tree, "usr/bin/openssl", b"\x7fELF no version string here")
    _file(tree, "usr/lib/x86_64-linux-gnu/libssl.so.1.1")
    assert "OpenSSL 1.1 " in _by_id(tree)["openssl"].why
    (tree / "usr/lib/x86_64-linux-gnu/libssl.so.1.1").unlink()
    _file(tree, "usr/lib/x86_64-linux-gnu/libssl.so.0.9.8")
    assert _by_id(tree)["openssl"].status == "error"
    (tree / "usr/lib/x86_64-linux-gnu/libssl.so.0.9.8").unlink()
    assert _by_id(tree)["openssl"].status == "warning"  # no version anywhere
