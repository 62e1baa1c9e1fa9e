"""The VM tier says what is missing; the pure parts work without QEMU."""

from __future__ import annotations

import shutil

import pytest


def _no_vm_needed(fn):
    fn._no_vm_needed = True
    return fn


@_no_vm_needed
def test_missing_qemu_is_named(monkeypatch):
    from azure_sim import vm

    real = shutil.which
    monkeypatch.setattr(vm.shutil, "which",
                        lambda name: None if name == vm.QEMU else real(name))
    monkeypatch.setattr(vm.os, "geteuid", lambda: 0)
    assert "qemu-system-x86" in vm.missing_requirement()


@_no_vm_needed
def test_missing_debootstrap_is_named(monkeypatch, tmp_path):
    from azure_sim import vmimage

    monkeypatch.setattr(vmimage.shutil, "which",
                        lambda name: None if name == "debootstrap" else "/bin/true")
    monkeypatch.setattr(vmimage.os, "geteuid", lambda: 0)
    assert "debootstrap" in vmimage.missing_tools()


@_no_vm_needed
def test_missing_kernel_is_named(tmp_path):
    from azure_sim import vmimage

    (tmp_path / "boot").mkdir()
    with pytest.raises(vmimage.ImageError, match="no kernel"):
        vmimage.kernel_files(tmp_path)


@_no_vm_needed
def test_qemu_command_has_platform_devices(tmp_path):
    from azure_sim import vm

    plan = {"workdir": str(tmp_path), "accel": "tcg", "memory_mib": 1024, "cpus": 2,
            "kernel": "k", "initrd": "i", "root_disk": "root.qcow2", "dmi_uuid": "u-u",
            "iso": "o.iso", "resource_disk": "d.img",
            "platform": {"nics": [{"peer": "azplat0", "mac": "00:0d:3a:12:34:56"}]}}
    cmd = " ".join(vm.qemu_command(plan))
    # the run's own overlay: the cached image is never written
    assert "file=root.qcow2,if=none,id=root0,format=qcow2" in cmd
    assert "type=3,manufacturer=Microsoft Corporation,asset=7783-7084-3265-9085-8269-3286-77" \
        in cmd
    assert "tap,id=n0,ifname=azplat0,script=no" in cmd
    assert "media=cdrom" in cmd and "serial=AZURE-SIM-RESOURCE" in cmd


from tests.vm.test_vm_boot import OLD_BUILDS  # noqa: E402

OLD_BUILD = OLD_BUILDS["22.4.2"]  # 0.1.0: the wiring was a conffile


@pytest.mark.parametrize("release", ["bookworm", "trixie"])
def test_deb_installs_removes_and_purges_cleanly(release):
    from azure_sim import packaging, vm, vmimage

    result = packaging.install_purge(vm.default_deb(), vmimage.build_tree(release=release))
    assert result["problems"] == []
    # no conffile: apt remove keeps nothing that names the plug-in
    assert result["conffiles"] == ""
    assert "cloudinit_azure.sources" in result["pkg_list_installed"]
    assert result["pkg_list_removed"] == "null"


def test_deb_upgrades_over_the_conffile_build():
    from azure_sim import packaging, vm, vmimage

    old = packaging.old_deb(OLD_BUILD)
    result = packaging.install_purge(vm.default_deb(), vmimage.build_tree(), old=old)
    assert result["problems"] == []
    assert result["pkg_list_removed"] == "null"


def test_lintian_is_clean():
    from azure_sim import packaging

    assert packaging.lintian() == []
