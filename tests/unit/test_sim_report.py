"""azure-sim report: build_report from hand-made observations, verdict, summary."""

from __future__ import annotations

import json

from azure_sim.report import build_report, decode_description, parse_leases, summary
from cloudinit_azure.report import Report

T0 = 1_700_000_000.0
DESC = Report("error", "missing UserName in ovf-env.xml",
              {"element": "ProvisioningSection|x"}, "vm-1",
              "2024-01-01T00:00:00.000000Z").encode()


def _health(t: float, state: str, substatus=None, description=None) -> dict:
    return {"t": T0 + t, "t_end": T0 + t + 0.001, "endpoint": "health", "method": "POST",
            "path": "/machine?comp=health", "status": 200,
            "health": {"state": state, "substatus": substatus,
                       "description": description}}


def _req(t: float, endpoint: str, method: str, path: str, status) -> dict:
    return {"t": T0 + t, "t_end": T0 + t, "endpoint": endpoint, "method": method,
            "path": path, "status": status}


def _raw(**over) -> dict:
    raw = {
        "t0": T0,
        "error": None,
        "stages": [
            {"boot": 1, "stage": "init-local", "start": T0, "end": T0 + 0.5, "rc": 0,
             "cpu_s": 0.4, "maxrss_kb": 40960},
            {"boot": 1, "stage": "init", "start": T0 + 0.6, "end": T0 + 1.2, "rc": 0,
             "cpu_s": 0.5, "maxrss_kb": 51200},
        ],
        "watch": {"authorized_keys": T0 + 1.1, "host_keys": T0 + 1.3},
        "user": {"name": "azureuser", "exists": True, "authorized_keys": ["k"],
                 "password_login_allowed": False},
        "hostname": "sim-vm-01",
        "etc_hostname": "sim-vm-01",
        "files": {"/var/tmp/custom-data-applied": "ok\n"},
        "mounts": [{"mountpoint": "/mnt", "fstype": "ntfs3", "source": "/dev/loop7p1",
                    "majmin": "7:1"}],
        "resource_disk_device": "loop7",
        "fstab": "",
        "kvp": [],
        "status_raw": json.dumps({"status": "done", "extended_status": "done",
                                  "errors": [], "recoverable_errors": {}}),
    }
    raw.update(over)
    return raw


def _build(raw=None, journal=None, leases="", expect="ready"):
    return build_report(scenario={"name": "t", "expect": expect},
                        raw=_raw() if raw is None else raw,
                        journal=[] if journal is None else journal, leases=leases,
                        cloud_init="22.4.2", datasource="builtin", wall_s=2.71828)


READY_JOURNAL = [
    _req(0.40, "imds", "GET", "/metadata/instance?api-version=2021-08-01", 200),
    _req(0.42, "goalstate", "GET", "/machine/?comp=goalstate", 200),
    _health(0.45, "Ready"),
]


def test_ready_boot():
    r = _build(journal=READY_JOURNAL)
    assert r["ready"] is True
    assert r["ready_count"] == 1
    assert r["failure"] is None
    assert r["time_to_ready_s"] == 0.45
    assert r["time_to_login_s"] == 1.1
    assert r["time_to_host_keys_s"] == 1.3
    assert r["time_to_provisioned_s"] == 1.3
    assert [(q["t"], q["endpoint"], q["method"], q["status"]) for q in r["requests"]] == [
        (0.4, "imds", "GET", 200), (0.42, "goalstate", "GET", 200),
        (0.45, "health", "POST", 200)]
    assert r["health_reports"] == [{"t": 0.45, "state": "Ready", "substatus": None,
                                    "description": None, "decoded": None}]
    assert r["cloud_init_status"] == "done"
    assert r["custom_data_applied"] is True
    assert r["resource_disk"] == {"fstype": "ntfs3", "mountpoint": "/mnt"}
    assert r["stages"][1] == {"boot": 1, "stage": "init", "start": 0.6, "seconds": 0.6,
                              "rc": 0, "cpu_s": 0.5, "maxrss_mb": 50.0}
    assert r["cpu_s"] == 0.9
    assert r["peak_rss_mb"] == 50.0
    assert r["wall_s"] == 2.718
    assert (r["cloud_init_version"], r["datasource"], r["scenario"]) == (
        "22.4.2", "builtin", "t")
    assert r["verdict"] == {"expected": "ready", "ok": True, "problems": []}
    assert "traceback" not in r
    json.dumps(r)  # the report is JSON-serialisable


def test_failure_from_health_not_ready_decoded():
    journal = READY_JOURNAL[:2] + [_health(0.5, "NotReady", "ProvisioningFailed", DESC)]
    r = _build(journal=journal, expect="failure")
    assert r["ready"] is False
    assert r["ready_count"] == 0
    f = r["failure"]
    assert (f["t"], f["state"], f["substatus"]) == (0.5, "NotReady", "ProvisioningFailed")
    assert f["description"] == DESC
    assert f["decoded"]["result"] == "error"
    assert f["decoded"]["reason"] == "missing UserName in ovf-env.xml"
    # A field holding the delimiter survives the CSV quoting.
    assert f["decoded"]["element"] == "ProvisioningSection|x"
    assert f["decoded"]["vm_id"] == "vm-1"
    assert r["time_to_ready_s"] is None
    assert r["time_to_provisioned_s"] is None
    assert r["verdict"] == {"expected": "failure", "ok": True, "problems": []}


def test_failure_from_kvp_only():
    kvp = [{"key": "PROVISIONING_REPORT",
            "value": "result=error|reason=no media|agent=x/1"},
           {"key": "other", "value": "result=error|reason=ignored"}]
    r = _build(raw=_raw(kvp=kvp), journal=READY_JOURNAL[:2], expect="failure")
    assert r["failure"] == {"t": None, "state": None, "substatus": None,
                            "description": None,
                            "decoded": {"result": "error", "reason": "no media",
                                        "agent": "x/1"}}
    assert r["kvp"] == kvp
    assert r["verdict"]["ok"] is True


def test_kvp_success_report_is_no_failure():
    kvp = [{"key": "PROVISIONING_REPORT", "value": "result=success|agent=x/1"}]
    r = _build(raw=_raw(kvp=kvp), journal=READY_JOURNAL)
    assert r["failure"] is None
    assert r["verdict"]["ok"] is True


def test_health_failure_wins_over_kvp():
    kvp = [{"key": "PROVISIONING_REPORT", "value": "result=error|reason=from kvp"}]
    r = _build(raw=_raw(kvp=kvp),
               journal=[_health(0.3, "NotReady", "ProvisioningFailed", DESC)],
               expect="failure")
    assert r["failure"]["state"] == "NotReady"
    assert r["failure"]["decoded"]["reason"] == "missing UserName in ovf-env.xml"


def test_time_relative_to_t0_and_missing_watch():
    raw = _raw(t0=T0 + 1.0, watch={"authorized_keys": None, "host_keys": None})
    r = _build(raw=raw, journal=READY_JOURNAL)
    assert r["time_to_ready_s"] == -0.55
    assert r["requests"][0]["t"] == -0.6
    assert r["time_to_login_s"] is None
    assert r["time_to_host_keys_s"] is None
    assert r["time_to_provisioned_s"] is None
    assert r["stages"][0]["start"] == -1.0


def test_no_t0_gives_no_times():
    r = _build(raw=_raw(t0=None), journal=READY_JOURNAL)
    assert r["time_to_ready_s"] is None
    assert all(q["t"] is None for q in r["requests"])


def test_verdict_expect_ready_lists_every_problem():
    journal = [_health(0.3, "Ready"), _health(0.4, "NotReady", "ProvisioningFailed", DESC),
               _health(0.5, "Ready")]
    raw = _raw(status_raw=json.dumps({"status": "error", "extended_status": "degraded done",
                                      "errors": ["boom"]}),
               error="collect: kaput", traceback="tb", cloud_init_log_tail=["l"])
    r = _build(raw=raw, journal=journal)
    v = r["verdict"]
    assert v["ok"] is False
    assert v["expected"] == "ready"
    assert v["problems"] == ["simulator: collect: kaput", "a failure was reported",
                             "Ready reported 2 times",
                             "cloud-init status is degraded done"]
    assert r["cloud_init_errors"] == ["boom"]
    assert r["sim_error"] == "collect: kaput"
    assert r["traceback"] == "tb"
    assert r["cloud_init_log_tail"] == ["l"]


def test_verdict_expect_ready_without_any_report():
    r = _build(journal=READY_JOURNAL[:2], raw=_raw(status_raw="not json"))
    assert r["cloud_init_status"] == "unknown"
    assert r["verdict"]["problems"] == ["no Ready health report",
                                        "cloud-init status is unknown"]


def test_verdict_expect_failure_problems():
    r = _build(journal=READY_JOURNAL, expect="failure")
    assert r["verdict"] == {"expected": "failure", "ok": False,
                            "problems": ["no failure was reported", "Ready was reported"]}


def test_leases_parsed_star_hostname_empty():
    leases = ("1700003600 00:0d:3a:12:34:56 10.0.0.4 sim-vm-01 01:00:0d:3a:12:34:56\n"
              "1700003600 00:0d:3a:12:34:57 10.0.1.4 * *\n"
              "duid 00:01:00:01\n")
    assert parse_leases(leases) == [
        {"mac": "00:0d:3a:12:34:56", "ip": "10.0.0.4", "hostname": "sim-vm-01"},
        {"mac": "00:0d:3a:12:34:57", "ip": "10.0.1.4", "hostname": ""}]
    r = _build(journal=READY_JOURNAL, leases=leases)
    assert [x["mac"] for x in r["dhcp_leases"]] == ["00:0d:3a:12:34:56",
                                                     "00:0d:3a:12:34:57"]


def test_resource_disk_not_mounted():
    r = _build(raw=_raw(mounts=[]), journal=READY_JOURNAL)
    assert r["resource_disk"] == {"fstype": None, "mountpoint": None}


def test_resource_disk_found_by_device_elsewhere_than_mnt():
    mounts = [{"mountpoint": "/mnt/resource", "fstype": "ext4", "source": "/dev/loop7p1",
               "majmin": "7:1"}]
    r = _build(raw=_raw(mounts=mounts), journal=READY_JOURNAL)
    assert r["resource_disk"] == {"fstype": "ext4", "mountpoint": "/mnt/resource"}


def test_custom_data_not_applied():
    r = _build(raw=_raw(files={"/var/tmp/custom-data-applied": None}),
               journal=READY_JOURNAL)
    assert r["custom_data_applied"] is False


def test_decode_description_ignores_plain_text():
    assert decode_description(None) is None
    assert decode_description("Provisioning failed") is None
    assert decode_description("result=success|agent=a/1") == {"result": "success",
                                                               "agent": "a/1"}


def test_summary_mentions_verdict_and_events():
    ok = summary(_build(journal=READY_JOURNAL))
    assert "verdict: OK (expected ready)" in ok
    assert "GET /machine/?comp=goalstate -> 200" in ok
    assert "health: Ready" in ok
    assert "user azureuser: exists=True, keys=1" in ok
    journal = [_health(0.3, "NotReady", "ProvisioningFailed", DESC)]
    bad = summary(_build(journal=journal))
    assert "verdict: UNEXPECTED (expected ready)" in bad
    assert "  - no Ready health report" in bad
    assert "health: NotReady ProvisioningFailed (missing UserName in ovf-env.xml)" in bad
