"""Issue 4: the resource disk module in real boots (cloud-init 22.4.2 and 25.1.4).

Each scenario boots our datasource and modules in the simulator; the report
shows what is mounted on /mnt and the VM's fstab, the kept upper layer shows
our marker file, and cloud-init.log says what the module decided and why.
Timings are printed, never asserted.
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

pytestmark = pytest.mark.integration

MARKER = "var/lib/cloudinit-azure/resource-disk.json"
_REPORTS: dict = {}


def _boot(run_boot, tmp_path_factory, text, cloud_init):
    """Boot once per (scenario, version); keep the upper layer and the logs."""
    key = (text, cloud_init)
    if key not in _REPORTS:
        work = tmp_path_factory.mktemp("rd")
        report = run_boot(text, cloud_init=cloud_init, datasource="plugin",
                          keep=str(work / "keep"), logs_to=str(work / "logs"))
        log = work / "logs" / "logs" / "cloud-init.log"
        _REPORTS[key] = (report, log.read_text(errors="replace") if log.exists() else "",
                         work / "keep")
    return _REPORTS[key]


def _ok(r):
    assert r["sim_error"] is None, r.get("traceback")
    assert r["datasource"] == "plugin"
    assert r["verdict"]["ok"], r["verdict"]
    assert r["ready"] and r["ready_count"] == 1 and r["failure"] is None
    assert r["cloud_init_status"] == "done", (r["cloud_init_errors"], r["warnings"])


def _mnt_lines(fstab):
    return [ln for ln in fstab.splitlines()
            if ln.split() and not ln.startswith("#") and ln.split()[1] == "/mnt"]


def _decisions(log):
    """The module's decision lines, in order: ("format"|"mount"|"leaving", text)."""
    out = []
    for line in log.splitlines():
        m = re.search(r"resource disk: (format|mount|leaving) (.*)", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _marker(keep):
    path = keep / MARKER
    return json.loads(path.read_text()) if path.exists() else None


def _fstab_uuid(fstab):
    lines = _mnt_lines(fstab)
    assert len(lines) == 1, fstab
    return lines[0].split()[0].removeprefix("UUID=")


def test_blank_ntfs_becomes_ext4_at_mnt_and_cloud_inits_mounts_stay_out(
        run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, None, cloud_init)
    _ok(r)
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}
    assert [d[0] for d in _decisions(log)] == ["format"]
    assert "empty NTFS volume on a new instance" in _decisions(log)[0][1]
    # Co-existence: exactly one /mnt line, ours (cc_mounts tags its lines
    # comment=cloudconfig; disk_setup/mounts never act on the disk).
    lines = _mnt_lines(r["fstab"])
    assert len(lines) == 1 and lines[0].startswith("UUID=")
    assert "nofail" in lines[0].split()[3]
    assert "comment=cloudconfig" not in r["fstab"]
    assert _marker(keep)["fs_uuid"] == _fstab_uuid(r["fstab"])


USER_FILE = """
name: rd-user-file
resource_disk: {files: [dataloss_warning_readme.txt, important.db]}
"""


def test_ntfs_with_a_user_file_is_left_alone_and_the_boot_is_ready(
        run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, USER_FILE, cloud_init)
    _ok(r)  # status "done": leaving user data alone is not a degraded boot
    assert r["resource_disk"] == {"fstype": None, "mountpoint": None}
    assert _mnt_lines(r["fstab"]) == []
    decisions = _decisions(log)
    assert [d[0] for d in decisions] == ["leaving"]
    assert "holds user files: important.db" in decisions[0][1]
    assert _marker(keep) is None


TWO_BOOTS = """
name: rd-two-boots
boots: 2
"""


def test_second_boot_mounts_without_reformatting(run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, TWO_BOOTS, cloud_init)
    _ok(r)
    assert [s["boot"] for s in r["stages"]].count(2) == 5
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}
    decisions = _decisions(log)
    # Boot 1 formats; boot 2 finds our file system and only mounts it.
    assert [d[0] for d in decisions] == ["format", "mount"], decisions
    assert "already carries our ext4 file system" in decisions[1][1]
    # The UUID formatted at boot 1 (marker) is the one fstab names after boot 2.
    assert _marker(keep)["fs_uuid"] == _fstab_uuid(r["fstab"])


REDEPLOY = """
name: rd-redeploy
boots: 2
resource_disk: {redeploy_before_boot: 2}
"""


def test_redeploy_hands_back_ntfs_and_it_is_reformatted(run_boot, tmp_path_factory,
                                                        cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, REDEPLOY, cloud_init)
    _ok(r)
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}
    decisions = _decisions(log)
    assert [d[0] for d in decisions] == ["format", "format"], decisions
    assert "came back as Azure's empty NTFS volume" in decisions[1][1]
    # fstab was moved to the new file system: one line, the new UUID.
    assert _marker(keep)["fs_uuid"] == _fstab_uuid(r["fstab"])


NO_DISK = """
name: rd-none
resource_disk: false
"""


def test_no_resource_disk_is_an_info_line_and_status_done(run_boot, tmp_path_factory,
                                                          cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, NO_DISK, cloud_init)
    _ok(r)
    assert r["resource_disk"] == {"fstype": None, "mountpoint": None}
    assert _mnt_lines(r["fstab"]) == []
    assert re.search(r"\.py\[INFO\]: resource disk: none found", log)
    assert not [w for w in r["warnings"] if "resource" in w]


RAW = """
name: rd-raw
resource_disk: {format: none}
"""


def test_raw_disk_is_formatted(run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, RAW, cloud_init)
    _ok(r)
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}
    decisions = _decisions(log)
    assert [d[0] for d in decisions] == ["format"] and "is raw" in decisions[0][1]
    assert _marker(keep)["fs_uuid"] == _fstab_uuid(r["fstab"])


SWAP = """
name: rd-swap
resource_disk: {size_mib: 128}
cloud_config: {azure_resource_disk: {swap: {enabled: true, size: 16}}}
"""


def test_swap_file_is_made_and_in_fstab(run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, SWAP, cloud_init)
    _ok(r)
    swap = [ln for ln in r["fstab"].splitlines() if ln.startswith("/mnt/swapfile")]
    assert swap == ["/mnt/swapfile\tnone\tswap\tsw,nofail\t0\t0"]
    assert "swap file does not fit" not in log
    # swapon is a stand-in in the sandbox (swap is global): it was asked, and
    # the host's swap is untouched (the no-leftovers check compares /proc/swaps).
    assert any(c.startswith("swapon") and "/mnt/swapfile" in c
               for c in r["host_global_calls"]), r["host_global_calls"]


BIG = """
name: rd-64gib
resource_disk: {size_mib: 65536}
"""


def _stamp(line):
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_64_gib_disk_ready_does_not_wait_for_formatting(run_boot, tmp_path_factory,
                                                        cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, BIG, cloud_init)
    _ok(r)
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}
    lines = log.splitlines()
    ready = next(i for i, ln in enumerate(lines) if "reported Ready to the wireserver" in ln)
    start = next(i for i, ln in enumerate(lines)
                 if "start: init-network/config-azure_resource_disk" in ln)
    end = next(i for i, ln in enumerate(lines)
               if "finish: init-network/config-azure_resource_disk" in ln)
    # Ordering, not timing: Ready was sent before the module began.
    assert ready < start < end
    took = (_stamp(lines[end]) - _stamp(lines[start])).total_seconds()
    after = (_stamp(lines[end]) - _stamp(lines[ready])).total_seconds()
    print(f"64 GiB {cloud_init}: time_to_ready_s={r['time_to_ready_s']} "
          f"resource disk module {took:.3f} s, finished {after:.3f} s after Ready, "
          f"wall {r['wall_s']} s")


SETTINGS_IN_CUSTOM_DATA = """
name: rd-settings-in-custom-data
ovf:
  custom_data: |
    #cloud-config
    azure_resource_disk: {mountpoint: /mnt/resource}
    azure_kernel: {numa: {enabled: false}}
    azure_network: {publish_hostname: {watch: false}}
    write_files:
      - path: /var/tmp/custom-data-applied
        content: "customData reached the VM\\n"
"""


def test_our_settings_in_custom_data_take_effect_and_status_stays_done(
        run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, SETTINGS_IN_CUSTOM_DATA, cloud_init)
    # cloud-init 25.1 validates user-data against its schema, whose top level
    # refuses unknown keys: without our namespaces registered this boot was
    # "degraded done" (a schema WARNING).
    _ok(r)
    assert "cloud-config failed schema validation" not in log
    assert not [w for w in r["warnings"] if "schema" in w], r["warnings"]
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt/resource"}
    lines = [ln.split() for ln in r["fstab"].splitlines()
             if ln.split() and not ln.startswith("#")]
    assert [ln[1] for ln in lines if ln[0].startswith("UUID=")] == ["/mnt/resource"]
    assert _mnt_lines(r["fstab"]) == []
    assert _marker(keep)["mountpoint"] == "/mnt/resource"


NO_NTFS_TOOLS = """
name: rd-no-ntfs-3g
image_files:
  /usr/bin/ntfsls: null
  /usr/bin/ntfs-3g: null
  /usr/sbin/mount.ntfs-3g: null
  /usr/sbin/mount.ntfs: null
"""


def test_image_without_ntfs_3g_leaves_the_disk_alone_at_info_and_status_done(
        run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, NO_NTFS_TOOLS, cloud_init)
    _ok(r)
    assert r["resource_disk"] == {"fstype": None, "mountpoint": None}
    decisions = _decisions(log)
    assert [d[0] for d in decisions] == ["leaving"]
    assert "ntfs-3g is not installed" in decisions[0][1]
    assert re.search(r"\.py\[INFO\]: resource disk: leaving", log)
    assert not [w for w in r["warnings"] if "resource" in w]
    assert _marker(keep) is None


RAW_USED = """
name: rd-raw-used-by-the-user
boots: 2
resource_disk: {raw_use_before_boot: 2}
"""


def test_disk_the_user_wiped_and_wrote_raw_is_left_alone_on_the_next_boot(
        run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, RAW_USED, cloud_init)
    _ok(r)
    decisions = _decisions(log)
    # Boot 1 formats; the user wipes the signatures (wipefs -a) and writes data
    # to the block device; boot 2 must not reformat it: not a new instance.
    assert [d[0] for d in decisions] == ["format", "leaving"], decisions
    assert "not a new instance" in decisions[1][1]
    assert re.search(r"\.py\[INFO\]: resource disk: leaving", log)
    boot2 = log[log.rindex("leaving"):]
    assert "sfdisk" not in boot2 and "mkfs" not in boot2
    assert r["resource_disk"] == {"fstype": None, "mountpoint": None}
    assert not [w for w in r["warnings"] if "resource" in w]


RAW_REDEPLOY = """
name: rd-raw-redeploy
boots: 2
resource_disk: {format: none, redeploy_before_boot: 2}
"""


def test_raw_disk_replaced_blank_by_a_redeploy_is_formatted_again(
        run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, RAW_REDEPLOY, cloud_init)
    _ok(r)
    decisions = _decisions(log)
    assert [d[0] for d in decisions] == ["format", "format"], decisions
    assert "new instance" in decisions[0][1]
    assert "came back raw and blank" in decisions[1][1]
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}
    assert _marker(keep)["fs_uuid"] == _fstab_uuid(r["fstab"])


BLANK_NAMES = """
name: rd-azure-names-with-blanks
resource_disk:
  files: ["DATALOSS_WARNING_README.txt ", " System Volume Information"]
"""


def test_user_files_named_like_azures_with_a_blank_keep_the_disk(
        run_boot, tmp_path_factory, cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, BLANK_NAMES, cloud_init)
    _ok(r)
    decisions = _decisions(log)
    assert [d[0] for d in decisions] == ["leaving"], decisions
    assert "holds user files" in decisions[0][1]
    assert "holds user files: ' System Volume Information', " \
           "'DATALOSS_WARNING_README.txt '" in decisions[0][1]
    assert r["resource_disk"] == {"fstype": None, "mountpoint": None}
    assert _marker(keep) is None


GPT_AZURE = """
name: rd-gpt-msr-ntfs
resource_disk: {format: gpt}
"""
GPT_USED_MSR = """
name: rd-gpt-used-msr
resource_disk: {format: gpt_used_msr}
"""


def test_azures_gen2_layout_msr_plus_blank_ntfs_is_formatted(run_boot, tmp_path_factory,
                                                            cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, GPT_AZURE, cloud_init)
    _ok(r)
    decisions = _decisions(log)
    assert [d[0] for d in decisions] == ["format"], decisions
    assert "empty NTFS volume on a new instance" in decisions[0][1]
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt"}


def test_an_msr_partition_carrying_a_file_system_keeps_the_disk(run_boot, tmp_path_factory,
                                                               cloud_init):
    r, log, keep = _boot(run_boot, tmp_path_factory, GPT_USED_MSR, cloud_init)
    _ok(r)
    decisions = _decisions(log)
    assert [d[0] for d in decisions] == ["leaving"], decisions
    assert "2 partitions (ext4, ntfs)" in decisions[0][1]
    assert r["resource_disk"] == {"fstype": None, "mountpoint": None}
    assert _marker(keep) is None
