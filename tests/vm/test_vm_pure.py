"""The VM tier's pure parts: kernel command line, serial reports, SSH checks, bench maths."""

from __future__ import annotations

import base64
import json

import pytest

from tests.vm.test_requirements import _no_vm_needed


@_no_vm_needed
def test_builtin_boot_empties_datasource_pkg_list_on_the_kernel_command_line():
    from azure_sim import vm

    assert "cc: datasource_pkg_list: [] end_cc" in vm.kernel_cmdline("builtin")
    assert "cc:" not in vm.kernel_cmdline("plugin")


@_no_vm_needed
def test_cloud_init_reads_that_command_line_as_config():
    from cloudinit import util

    cfg = util.read_conf_from_cmdline(cmdline="root=LABEL=root " + __import__(
        "azure_sim.vm", fromlist=["x"]).BUILTIN_CMDLINE)
    assert cfg == {"datasource_pkg_list": []}


@_no_vm_needed
def test_every_report_block_on_the_serial_port_is_read():
    from azure_sim import vmconsole

    text = ("noise\r\nAZURE-SIM-REPORT-BEGIN\nYWJj\nZA==\nAZURE-SIM-REPORT-END 12.5\n"
            "AZURE-SIM-REPORT-BEGIN\nZWY=\nAZURE-SIM-REPORT-END 20\nAZURE-SIM-REPORT-BEGIN\nx")
    assert vmconsole.reports(text) == [("YWJjZA==", 12.5), ("ZWY=", 20.0)]


@_no_vm_needed
def test_host_key_change_is_judged_on_the_key_not_its_comment():
    from azure_sim.vmssh import key_changed

    first = "ssh-ed25519 AAAA1"
    assert key_changed(first, ["ssh-ed25519 AAAA1 root@vm"]) is False
    assert key_changed(first, ["ssh-ed25519 AAAA2"]) is True
    assert key_changed(None, ["ssh-ed25519 AAAA1"]) is None


@_no_vm_needed
def test_password_never_on_the_ssh_command_line(tmp_path):
    from azure_sim import vmssh

    helper = vmssh.write_askpass(tmp_path, "s3cret-Pa55")
    login = {"user": "u", "ip": "10.0.0.4", "askpass": str(helper)}
    cmd = vmssh.ssh_command(login, tmp_path / "kh", password=True)
    assert "s3cret-Pa55" not in " ".join(cmd) and "s3cret-Pa55" not in helper.read_text()
    assert oct((tmp_path / "ssh-password").stat().st_mode & 0o777) == "0o600"
    assert cmd[-2:] == ["u@10.0.0.4", "true"]


def _boot(n, *, report=None, ssh=None, t=100.0):
    out = {"boot": n, "timed_out": False, "t_qemu_start": t, "t_qemu_end": t + 40,
           "last_stage": "poweroff", "milestones": {"init_local_start": t + 15},
           "console_stages": []}
    if report is not None:
        out.update(report_b64=base64.b64encode(json.dumps(report).encode()).decode(),
                   report_guest_time=1000.0 + n, t_report=t + 38)
    if ssh is not None:
        out["ssh"] = ssh
    return out


@_no_vm_needed
def test_two_boots_one_report_with_both_boots_stages_and_first_contact_key():
    from azure_sim import vmresult

    stage = {"stage": "init-local", "start": 1000.0 - 30, "end": 1000.0 - 20, "rc": 0,
             "cpu_s": 1.0, "maxrss_kb": 0, "boot": 1}
    g1 = {"stages": [stage], "t0": 970.0, "host_keys_pub": ["ssh-ed25519 K1"],
          "status_raw": '{"status": "done"}', "instance_id": "i-1"}
    g2 = dict(g1, host_keys_pub=["ssh-ed25519 K2"])
    ssh = {"t_login": 130.0, "t_password_login": None, "t_first_contact": 128.0,
           "first_host_key": "ssh-ed25519 K1", "host_keys_seen": ["ssh-ed25519 K1"],
           "attempts": 5, "last_error": None}
    result = {"boots": [_boot(1, report=g1, ssh=ssh), _boot(2, report=g2, t=200.0)]}
    journal = [{"t": 118.0, "endpoint": "health", "method": "POST", "path": "/", "status": 200,
                "health": {"state": "Ready"}}]
    plan = {"accel": "tcg", "root_image": "/x/root-k.img", "boots": 2}
    rep = vmresult.assemble(scenario={"name": "t", "expect": "ready"}, plan=plan,
                            result=result, journal=journal, leases="", cloud_init="22.4.2",
                            datasource="plugin", limit=300, started=90.0, t_boot=95.0,
                            serial_log=None, now=300.0)
    vm = rep["vm"]
    assert [s["boot"] for s in rep["stages"]] == [1, 2]
    assert vm["boot_to_ssh_login_s"] == 30.0 and vm["host_key_changed"] is False
    assert [b["ready_reports"] for b in vm["boots"]] == [1, 0]
    assert rep["ready_count"] == 1 and rep["sim_error"] is None


@_no_vm_needed
def test_a_boot_that_gives_no_report_is_named():
    from azure_sim import vmresult

    assert vmresult.boot_error(dict(_boot(2), timed_out=True), 25, 2) == (
        "boot 2: timed out after 25 s; last stage on the serial console: poweroff")


@_no_vm_needed
def test_a_hung_boot_carries_the_console_tail_and_the_platforms_last_requests():
    from azure_sim import vmresult

    console = "".join(f"\x1b[0;32mline {i}\x1b[0m\n\n" for i in range(60))
    console += "cloud-init[259]: running 'init-local'\n"
    journal = [{"t": 50.0, "endpoint": "imds", "method": "GET", "path": "/metadata/instance",
                "status": 200},
               {"t": 51.5, "endpoint": "pps", "event": "assigned"}]
    result = {"boots": [dict(_boot(1), timed_out=True, last_stage="init-local")]}
    plan = {"accel": "tcg", "root_image": "/x/root-k.img", "boots": 1}
    args = dict(scenario={"name": "t", "expect": "ready"}, plan=plan, result=result,
                journal=journal, leases="", cloud_init="22.4.2", datasource="plugin",
                limit=600, started=90.0, t_boot=95.0, serial_log=None, now=700.0)
    vm = vmresult.assemble(**args, console=console)["vm"]
    tail = vm["console_tail"]
    assert len(tail) == vmresult.TAIL_LINES and tail[-1].endswith("running 'init-local'")
    assert tail[0] == "line 21" and not any("\x1b" in line for line in tail)
    assert vm["platform_requests"] == ["+0.00s GET /metadata/instance -> 200",
                                       "+1.50s assigned pps -> "]
    # a boot that reported has neither
    ok = dict(args, result={"boots": [_boot(1, report={"stages": [], "t0": 115.0})]})
    assert "console_tail" not in vmresult.assemble(**ok, console=console)["vm"]


@_no_vm_needed
def test_guest_stage_rows_find_25_1s_network_unit_and_count_its_single_process():
    from azure_sim import vmreport

    units = {  # what systemctl show says on Debian 13: no cloud-init.service at all
        "cloud-init-local.service": {"ExecMainStartTimestampMonotonic": "10000000",
                                     "ExecMainExitTimestampMonotonic": "12000000",
                                     "CPUUsageNSec": "5000000"},
        "cloud-init-network.service": {"ExecMainStartTimestampMonotonic": "14000000",
                                       "ExecMainExitTimestampMonotonic": "15000000",
                                       "ExecMainStatus": "0", "CPUUsageNSec": "[not set]"},
        "cloud-init-main.service": {"CPUUsageNSec": "7250000000"},
    }

    def show(unit):
        return units.get(unit, {"ExecMainStartTimestampMonotonic": "0"})

    rows = vmreport.stages(lambda usec: usec / 1e6, show=show)
    assert [(r["stage"], r["start"], r["end"], r["cpu_s"]) for r in rows] == [
        ("init-local", 10.0, 12.0, 0.005), ("init", 14.0, 15.0, 0.0)]
    assert vmreport.main_cpu(show) == 7.25
    # Debian 12: the old unit name, and no single process
    units["cloud-init.service"] = units.pop("cloud-init-network.service")
    del units["cloud-init-main.service"]
    assert [r["stage"] for r in vmreport.stages(lambda u: u, show=show)] == [
        "init-local", "init"]
    assert vmreport.main_cpu(show) == 0.0


@_no_vm_needed
@pytest.mark.parametrize("extra, named", [
    ("pps: {type: running}", "pps (the VM platform does not play the pool"),
    ("media: seed", "media: seed"),
    ("on_azure: false", "on_azure: false"),
    ("cloud_config: {a: 1}", "cloud_config"),
    ("mount_shim: true", "mount_shim"),
    ("image_files: {/etc/x: hi}", "image_files without power_cut"),
])
def test_vm_refuses_what_only_the_sandbox_plays(extra, named, tmp_path):
    from azure_sim import vmplan
    from azure_sim.boot import SimError
    from azure_sim.scenario import load_scenario

    assert vmplan.unsupported(load_scenario("name: plain\n")) is None
    scenario = load_scenario(f"name: x\n{extra}\n")
    assert named in vmplan.unsupported(scenario)
    with pytest.raises(SimError, match="not supported with --vm"):
        vmplan.plan_vm(scenario, tmp_path, tmp_path / "no.deb", 60)
    assert not list(tmp_path.iterdir())  # refused before anything was made


@_no_vm_needed
def test_vm_bench_ratios_and_wrong_datasource_is_a_failed_row():
    from azure_sim import vmbench

    def report(module, ready, login):
        return {"verdict": {"ok": True, "problems": []}, "time_to_ready_s": ready,
                "vm": {"datasource_module": module, "boot_to_ssh_login_s": login,
                       "ssh_login_after_init_local_s": login - 7, "host_key_changed": False}}

    rows = [vmbench.row_from_report(report(vmbench.EXPECTED_MODULE[d], r, s), run=1,
                                    combo=("22.4.2", d))
            for d, r, s in (("builtin", 10.0, 34.0), ("plugin", 11.0, 30.0))]
    assert all(r["ok"] for r in rows)
    found = vmbench.ratios(vmbench.aggregate(rows, [("22.4.2", "builtin"),
                                                    ("22.4.2", "plugin")]))
    assert [round(r["value"], 2) for r in found] == [1.1, 0.88, 0.0]
    assert all(r["met"] for r in found)
    wrong = vmbench.row_from_report(report("cloudinit.sources.DataSourceAzure", 1, 2),
                                    run=1, combo=("22.4.2", "plugin"))
    assert not wrong["ok"] and "datasource ran" in wrong["reason"]


@_no_vm_needed
def test_login_key_joins_the_scenarios_keys_password_scenarios_use_the_password(tmp_path):
    from azure_sim import documents, vm
    from azure_sim.scenario import DEFAULT_KEY, load_scenario

    keyed = load_scenario()
    (tmp_path / "a").mkdir()
    login = vm._login(keyed, tmp_path / "a")
    added = (tmp_path / "a" / "ssh-login-key.pub").read_text().strip()
    assert keyed["ovf"]["public_keys"] == [DEFAULT_KEY, added] and "askpass" not in login
    assert added in [k["keyData"] for k in documents.imds_document(keyed)["compute"][
        "publicKeys"]]
    pw = load_scenario("ovf: {public_keys: [], password: 'Pw-1234567!'}\n")
    (tmp_path / "b").mkdir()
    login = vm._login(pw, tmp_path / "b")
    assert "key" not in login and pw["ovf"]["public_keys"] == []
    assert "Pw-1234567!" not in str(login)
    failing = load_scenario("expect: failure\n")
    assert vm._login(failing, tmp_path) is None
