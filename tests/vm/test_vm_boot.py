"""Scenarios on the real boot path: Debian 12 + our .deb, QEMU, the simulator's platform."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _boot(text=None, **kw):
    from azure_sim import vm
    from azure_sim.scenario import load_scenario

    return vm.boot(load_scenario(text), **kw)


@pytest.fixture(scope="module")
def default_report():
    return _boot()


@pytest.fixture(scope="module")
def broken_report():
    return _boot((REPO / "scenarios/broken-ovf.yaml").read_text())


def _why(report):
    return (f"verdict {report['verdict']}; vm {report.get('vm')}; "
            f"warnings {report.get('warnings')[:10]}")


def test_default_reaches_ready(default_report):
    r = default_report
    assert r["verdict"]["ok"], _why(r)
    assert r["ready_count"] == 1
    assert r["cloud_init_status"] == "done", _why(r)
    assert r["vm"]["failed_units"] == []


def test_default_provisions_user_key_hostname_customdata(default_report):
    from azure_sim.scenario import DEFAULT_KEY

    r = default_report
    assert r["user"]["exists"] and r["user"]["name"] == "azureuser"
    assert DEFAULT_KEY in r["user"]["authorized_keys"]
    assert r["hostname"] == "sim-vm-01"
    assert r["custom_data_applied"]
    assert r["time_to_login_s"] is not None


def test_blank_ntfs_resource_disk_becomes_ext4_at_mnt(default_report):
    # The default resource disk is Azure's: one NTFS partition holding only
    # dataloss_warning_readme.txt, i.e. provably empty.
    r = default_report
    assert r["vm"]["resource_disk_link"], "the test udev rule did not link the disk"
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}, _why(r)


def test_ds_identify_finds_azure_by_itself(default_report):
    r = default_report
    # The image keeps Debian's configuration (no datasource_list anywhere in
    # /etc/cloud); the systemd generator chose Azure from DMI alone.
    assert r["vm"]["datasource_list_cfg"].strip() == ""
    assert "Azure" in r["vm"]["ds_identify_cfg"]
    assert r["instance_id"] == "6bd2a1c7-3f0e-4b8a-9c51-2d7e8f4a1b30"


def test_broken_ovf_reports_provisioning_failed(broken_report):
    r = broken_report
    assert r["verdict"]["ok"], _why(r)
    assert not r["ready"]
    assert r["failure"]["substatus"] == "ProvisioningFailed"


def test_hung_vm_is_killed_and_names_the_last_stage(tmp_path):
    r = _boot(timeout=25, logs_to=str(tmp_path / "logs"))
    assert r["vm"]["timed_out"]
    assert "timed out after 25 s; last stage on the serial console:" in r["sim_error"]
    assert r["vm"]["last_stage"] in r["sim_error"]
    assert r["vm"]["last_stage"] not in ("qemu started", "poweroff")
    console = Path(r["vm"]["serial_log"])
    assert console.exists() and console.stat().st_size > 0
    assert not r["verdict"]["ok"]
