"""Power cuts in the simulator: the scenario key, the cut points, the recovery checks."""

from __future__ import annotations

import os

import pytest

from azure_sim import powercut, recovery
from azure_sim.scenario import ScenarioError, load_scenario


@pytest.mark.parametrize("at", ["after:init-local", "after:modules-final", "after:ready",
                                "request:health:1", "request:imds:12", "during:format",
                                "during:useradd", "during:fstab", "during:grub"])
def test_power_cut_points_accepted_and_a_recovery_boot_added(at):
    s = load_scenario(f'power_cut: {{at: "{at}"}}\n')
    assert s["power_cut"] == {"boot": 1, "at": at}
    assert s["boots"] == 2
    assert load_scenario(f'boots: 4\npower_cut: {{boot: 2, at: "{at}"}}\n')["boots"] == 4


@pytest.mark.parametrize("text", ['power_cut: {at: "after:lunch"}',
                                  'power_cut: {at: "request:health:0"}',
                                  'power_cut: {at: "request:dns:1"}',
                                  'power_cut: {at: "during:mkfs"}',
                                  'power_cut: {boot: 0, at: "after:init"}'])
def test_bad_power_cut_points_refused_naming_the_key(text):
    with pytest.raises(ScenarioError, match="power_cut"):
        load_scenario(text)


def test_point_splits_a_request_point():
    assert powercut.point({"boot": 1, "at": "request:goalstate:3"}) == {
        "boot": 1, "at": "request:goalstate:3", "kind": "request",
        "target": "goalstate:3", "endpoint": "goalstate", "n": 3}


def test_wrappers_are_inert_until_armed_and_the_hook_targets_the_file(tmp_path):
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/sbin/useradd").write_text("#!/bin/sh\n")
    plan = {"power_cut": powercut.point({"boot": 1, "at": "during:useradd"}),
            "platform": {}}
    powercut.install(plan, tmp_path)
    wrapper = (tmp_path / "usr/local/sbin/useradd").read_text()
    assert 'if [ "$step" = "useradd" ]' in wrapper
    assert 'exec /usr/sbin/useradd "$@"' in wrapper
    assert powercut.fired(plan, tmp_path) is None
    powercut.arm(plan, tmp_path)
    assert (tmp_path / powercut.ARMED).read_text() == "useradd\n"
    (tmp_path / powercut.ANNOUNCE).write_text("AZURE-SIM-POWER-CUT useradd exited 0\n")
    assert powercut.fired(plan, tmp_path) == "useradd exited 0"


def _sh_tree(tmp_path, step):
    """A wrapper run for real: a fake program, an armed file for ``step``."""
    real = tmp_path / "real"
    real.write_text(f"#!/bin/sh\necho ran \"$@\" >> {tmp_path}/log\nexit 3\n")
    real.chmod(0o755)
    wrapper = tmp_path / "wrapper"
    text = powercut.wrapper("format", "mkfs.ext4", str(real), str(tmp_path / "said"))
    wrapper.write_text(text.replace("/" + powercut.ARMED, str(tmp_path / "armed"))
                       .replace("sleep 600", "sleep 0"))
    wrapper.chmod(0o755)
    if step:
        (tmp_path / "armed").write_text(step + "\n/etc/fstab\n")
    return wrapper


@pytest.mark.parametrize("step", [None, "fstab"])
def test_wrapper_runs_the_real_program_untouched_unless_its_step_is_armed(tmp_path, step):
    import subprocess

    res = subprocess.run([str(_sh_tree(tmp_path, step)), "-q", "a b"], check=False)
    assert res.returncode == 3
    assert (tmp_path / "log").read_text() == "ran -q a b\n"
    assert not (tmp_path / "said").exists()


def test_armed_wrapper_runs_the_program_to_its_end_then_announces(tmp_path):
    import subprocess

    res = subprocess.run([str(_sh_tree(tmp_path, "format")), "/dev/vdb1"], check=False)
    assert res.returncode == 3
    assert (tmp_path / "log").read_text() == "ran /dev/vdb1\n"
    assert powercut.announced((tmp_path / "said").read_text()) == "mkfs.ext4 exited 3"


def test_python_hook_cuts_before_the_rename_onto_a_watched_file_only(tmp_path):
    import subprocess
    import sys

    armed, said = tmp_path / "armed", tmp_path / "said"
    hook = tmp_path / "azure_sim_power_cut.py"
    hook.write_text(powercut.hook(str(said)).replace("/" + powercut.ARMED, str(armed))
                    .replace("time.sleep(600)", "raise SystemExit(9)"))
    fstab = tmp_path / "fstab"
    armed.write_text(f"fstab\n{fstab}\n")
    code = ("import os, azure_sim_power_cut\n"
            f"open({str(tmp_path / 'other')!r}, 'w').write('x')\n"
            f"open({str(tmp_path / 'tmp')!r}, 'w').write('new')\n"
            f"os.replace({str(tmp_path / 'tmp')!r}, {str(fstab)!r})\n")
    run = [sys.executable, "-c", code]
    res = subprocess.run(run, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, check=False)
    assert res.returncode == 9
    assert powercut.announced(said.read_text()) == f"rename onto {fstab}"
    assert not fstab.exists() and (tmp_path / "other").exists()
    armed.write_text("useradd\n")  # armed for another step: the hook stays out
    said.unlink()
    res = subprocess.run(run, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, check=False)
    assert res.returncode == 0 and fstab.read_text() == "new" and not said.exists()


def test_announced_finds_the_mark_among_other_serial_output():
    assert powercut.announced("boot noise\r\nAZURE-SIM-POWER-CUT useradd exited 0\r\n") \
        == "useradd exited 0"
    assert powercut.announced("AZURE-SIM-REPORT-BEGIN\nabc\n") is None


def test_after_ready_fires_only_once_ready_is_delivered(tmp_path):
    plan = {"power_cut": powercut.point({"boot": 1, "at": "after:ready"}), "platform": {}}
    state = tmp_path / "var/lib/cloudinit-azure"
    state.mkdir(parents=True)
    marker = state / "health-x.json"
    marker.write_text('{"state": "ready", "delivered": false}')
    assert powercut.fired(plan, tmp_path) is None
    marker.write_text('{"state": "ready", "delivered": true}')
    assert "Ready delivered" in powercut.fired(plan, tmp_path)


def test_fstab_mounts_skip_root_swap_and_noauto(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text(
        "# comment\nUUID=a / ext4 defaults 0 1\n/dev/disk/cloud/azure_resource-part1 /mnt"
        " auto defaults,nofail 0 2\n/mnt/swapfile none swap sw 0 0\nx /data ext4 noauto 0 0\n")
    assert powercut.fstab_mounts(tmp_path) == ["/mnt"]


def test_fstab_problems_find_garbage_and_a_second_resource_disk_line(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("/dev/disk/cloud/azure_resource-part1 /mnt ext4 defaults 0 2\n")
    assert recovery.fstab_problems(fstab) == []
    fstab.write_text("/dev/disk/cloud/azure_resource-part1 /mnt ext4 defaults 0 2\n"
                     "UUID=1 /mnt ext4 defaults 0 2\n/dev/sda1 /x\n")
    problems = recovery.fstab_problems(fstab)
    assert any("line 3 does not parse" in p for p in problems)
    assert any("2 resource-disk lines" in p for p in problems)


def test_grub_problems_catch_a_duplicate_argument_and_an_empty_file(tmp_path):
    grub = tmp_path / "etc/default/grub"
    grub.parent.mkdir(parents=True)
    grub.write_text('GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"\n')
    assert recovery.grub_problems(tmp_path) == []
    drop = tmp_path / "etc/default/grub.d/50-cloudinit-azure.cfg"
    drop.parent.mkdir()
    drop.write_text('GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX console=ttyS0,115200n8"\n')
    assert any("more than once" in p for p in recovery.grub_problems(tmp_path))
    drop.write_text("")
    assert any("is empty" in p for p in recovery.grub_problems(tmp_path))


def test_kvp_problems_catch_a_torn_record(tmp_path):
    pool = tmp_path / "pool"
    pool.write_bytes(b"K".ljust(512, b"\0") + b"V".ljust(2048, b"\0"))
    assert recovery.kvp_problems(pool) == []
    pool.write_bytes(pool.read_bytes() + b"half")
    assert recovery.kvp_problems(pool)


def test_written_files_empty_marker_and_leftover_temporary_found(tmp_path):
    state = tmp_path / "var/lib/cloudinit-azure"
    state.mkdir(parents=True)
    (state / "health-x.json").write_text("")
    (state / "health-x.json.tmp").write_text("{}")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("")
    problems = recovery.written_file_problems(tmp_path)
    assert any("health-x.json does not parse" in p for p in problems)
    assert any("temporary file" in p for p in problems)
    assert "/etc/hostname is empty" in problems


def test_sudoers_empty_file_found_without_visudo(tmp_path):
    d = tmp_path / "etc/sudoers.d"
    d.mkdir(parents=True)
    (d / "90-cloud-init-users").write_text("")
    os.chmod(d / "90-cloud-init-users", 0o440)
    assert recovery.sudoers_problems({"visudo": None}, tmp_path) == [
        "/etc/sudoers.d/90-cloud-init-users is empty"]


def test_vm_cut_is_due_at_the_next_stage_the_nth_request_or_ready(tmp_path):
    import json

    from azure_sim import vmpowercut

    journal = tmp_path / "journal.jsonl"
    journal.write_text("")
    plat = {"journal": str(journal)}

    def plan(at, boot=1):
        p = {"platform": dict(plat)}
        vmpowercut.plan(p, load_scenario(f'power_cut: {{boot: {boot}, at: "{at}"}}\n'),
                        tmp_path)
        return p

    p = plan("after:init-local")
    assert vmpowercut.due(p, 1, "init-local") is None
    assert vmpowercut.due(p, 1, "init") == "console: init began"
    assert vmpowercut.due(p, 2, "modules-final") is None  # not the cut boot
    p = plan("request:health:1")
    vmpowercut.arm(p, 1)
    assert (tmp_path / "power-cut.armed").exists()
    assert vmpowercut.due(p, 1, "init") is None
    (tmp_path / "power-cut").write_text("request health:1\n")
    assert vmpowercut.due(p, 1, "init") == "request health:1"
    vmpowercut.disarm(p)
    assert not (tmp_path / "power-cut.armed").exists()
    p = plan("after:ready")
    journal.write_text(json.dumps({"endpoint": "health", "status": 200,
                                   "health": {"state": "Ready"}}) + "\n")
    assert vmpowercut.due(p, 1, "init-local") == "Ready reached the platform"


def test_vm_during_cut_is_armed_by_fw_cfg_in_the_cut_boot_and_due_on_the_serial_line(
        tmp_path):
    from azure_sim import vmpowercut

    p = {"platform": {}, "workdir": str(tmp_path)}
    scenario = load_scenario('power_cut: {at: "during:grub"}\n'
                             'image_files: {/etc/default/grub: "GRUB_TIMEOUT=5\\n"}\n')
    vmpowercut.plan(p, scenario, tmp_path / "plat")
    args = vmpowercut.qemu_args(p, 1)
    assert args == ["-fw_cfg", f"name=opt/azure-sim/power-cut,file={tmp_path}/power-cut.armed",
                    "-fw_cfg", f"name=opt/azure-sim/image-files,file={tmp_path}/"
                               "image-files.tar"]
    assert (tmp_path / "power-cut.armed").read_text().splitlines() == [
        "grub", "/etc/default/grub", "/etc/default/grub.d/50-cloudinit-azure.cfg"]
    assert vmpowercut.qemu_args(p, 2) == []  # the recovery boot runs the image unchanged
    import tarfile

    with tarfile.open(tmp_path / "image-files.tar") as tar:
        member = tar.getmember("etc/default/grub")
        assert (member.uid, member.mode) == (0, 0o644)
        assert tar.extractfile(member).read() == b"GRUB_TIMEOUT=5\n"
    assert vmpowercut.due(p, 1, "init") is None
    (tmp_path / "report-1.raw").write_text("AZURE-SIM-POWER-CUT rename onto /etc/default/grub\r\n")
    assert vmpowercut.due(p, 1, "init") == "guest: rename onto /etc/default/grub"
    assert vmpowercut.due(p, 2, "init") is None


def test_vm_guest_hooks_cover_every_during_step_and_stay_off_the_console():
    from azure_sim import vmconsole, vmpowercut

    files = vmpowercut.guest_files()
    wrapped = {name.rsplit("/", 1)[1] for name in files if "/sbin/" in name}
    assert wrapped == {"mkfs.ext4", "useradd", "ssh-keygen"}
    from azure_sim.scenario import POWER_CUT_PATTERN

    during = POWER_CUT_PATTERN.split("during:(", 1)[1].split(")", 1)[0].split("|")
    assert vmpowercut.VM_STEPS == set(during)  # every during: point has its VM hook
    name = "sim-power-cut-hooks.service"
    unit = files[f"etc/systemd/system/{name}"][0].decode()
    assert "Before=cloud-init-main.service cloud-init-local.service" in unit
    # systemd prints "Starting <name> - <description>..." on the console
    described = name + " - " + unit.split("Description=", 1)[1].split("\n", 1)[0]
    assert not any(marker in described for _, marker in vmconsole.STAGE_MARKERS)
    arm = files["usr/lib/azure-sim/power-cut/arm.sh"][0].decode()
    assert "[ -e $fw/power-cut/raw ] || exit 0" in arm  # unarmed boots stop here
    for name, (data, _) in files.items():
        if name.endswith(("arm.sh", "/sbin/useradd")):
            import subprocess

            subprocess.run(["sh", "-n"], input=data, check=True)
