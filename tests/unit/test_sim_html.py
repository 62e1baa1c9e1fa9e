"""The one-page HTML report of a boot (azure-sim boot --html)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

from azure_sim import cli, html_report  # noqa: E402


def _report(**over):
    report = {
        "scenario": "default", "cloud_init_version": "22.4.2", "datasource": "plugin",
        "ready": True, "ready_count": 1,
        "health_reports": [{"t": 0.41, "state": "Ready", "substatus": None,
                            "description": None, "decoded": None}],
        "failure": None, "time_to_ready_s": 0.41, "time_to_login_s": 0.39,
        "time_to_host_keys_s": 0.38, "time_to_provisioned_s": 0.41,
        "requests": [
            {"t": 0.1, "endpoint": "imds", "method": "GET", "path": "/metadata/instance",
             "status": 500},
            {"t": 0.2, "endpoint": "imds", "method": "GET", "path": "/metadata/instance",
             "status": "reset"},
            {"t": 0.3, "endpoint": "imds", "method": "GET", "path": "/metadata/instance",
             "status": 200},
            {"t": 0.35, "endpoint": "goalstate", "method": "GET",
             "path": "/machine/?comp=goalstate",
             "status": 200},
            {"t": 0.41, "endpoint": "health", "method": "POST", "path": "/machine?comp=health",
             "status": 200}],
        "user": {"name": "azureuser", "exists": True, "authorized_keys": ["ssh-ed25519 A"]},
        "hostname": "sim-vm-01", "custom_data_applied": True,
        "resource_disk": {"fstype": "ext4", "mountpoint": "/mnt"},
        "cloud_init_status": "done", "cloud_init_errors": [], "instance_id": "iid-1",
        "stages": [
            {"boot": 1, "stage": "init-local", "start": 0.0, "seconds": 0.45, "rc": 0,
             "cpu_s": 0.4, "maxrss_mb": 48.0},
            {"boot": 1, "stage": "init", "start": 0.5, "seconds": 0.7, "rc": 0,
             "cpu_s": 0.4, "maxrss_mb": 46.0},
            {"boot": 1, "stage": "modules-config", "start": 1.2, "seconds": 0.3, "rc": 0,
             "cpu_s": 0.3, "maxrss_mb": 41.0},
            {"boot": 1, "stage": "modules-final", "start": 1.5, "seconds": 0.3, "rc": 1,
             "cpu_s": 0.3, "maxrss_mb": 42.0}],
        "cpu_s": 1.4, "peak_rss_mb": 48.0, "sim_error": None, "wall_s": 2.5,
        "verdict": {"expected": "ready", "ok": True, "problems": []},
    }
    report.update(over)
    return report


FAILED = {"t": 0.33, "state": "NotReady", "substatus": "ProvisioningFailed",
          "description": "result=error|reason=ovf-env.xml is not well-formed XML",
          "decoded": {"result": "error", "reason": "ovf-env.xml is not well-formed XML",
                      "line": "1", "documentation_url": "https://aka.ms/linuxprovisioningerror"}}


def test_page_is_self_contained():
    page = html_report.render(_report())
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for external in ("<script", "<link", "src=", "href=", "url(", "@import"):
        assert external not in page
    assert page.count("<svg") == 1


def test_timeline_draws_stages_requests_and_moments():
    svg = html_report.timeline_svg(_report())
    # one bar per stage, one tick per request, each with a hover title
    assert len(re.findall(r'rx="3" fill="#', svg)) == 4
    assert svg.count('width="4"') == 5
    for lane in ("init-local", "modules-final", "imds requests", "goalstate requests",
                 "health requests"):
        assert f">{lane}</text>" in svg
    assert "Ready 0.41 s" in svg and "SSH key in place 0.39 s" in svg
    assert "host keys 0.38 s" in svg
    # status colours: 5xx and a reset red, 2xx green; a non-zero rc is printed
    assert svg.count('fill="#cf222e"><title>') == 2
    assert svg.count('fill="#1a7f37"><title>') == 3
    assert ">rc 1</text>" in svg


def test_failure_is_the_headline():
    page = html_report.render(_report(
        ready=False, ready_count=0, time_to_ready_s=None, time_to_login_s=None,
        health_reports=[FAILED], failure=FAILED,
        verdict={"expected": "ready", "ok": False, "problems": ["no Ready health report"]}))
    assert 'class="banner bad"' in page
    assert "ProvisioningFailed: ovf-env.xml is not well-formed XML" in page
    assert "<li>no Ready health report</li>" in page
    assert "ProvisioningFailed 0.33 s" in page  # the moment on the timeline
    assert "Failure report (decoded)" in page and "<td>line</td><td>1</td>" in page


def test_text_is_escaped():
    page = html_report.render(_report(scenario="<script>alert(1)</script>",
                                      hostname="a&b"))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page and "a&amp;b" in page


def test_boot_without_stages_still_renders():
    page = html_report.render(_report(stages=[], requests=[], health_reports=[],
                                      ready=False, time_to_ready_s=None,
                                      time_to_login_s=None, time_to_host_keys_s=None,
                                      sim_error="sandbox could not start: no loop devices",
                                      verdict={"expected": "ready", "ok": False,
                                               "problems": ["simulator: ..."]}))
    assert "sandbox could not start: no loop devices" in page
    assert "<svg" in page


def test_kvp_records_are_listed():
    page = html_report.render(_report(kvp=[{"key": "PROVISIONING_REPORT",
                                            "value": "result=success|agent=x"}]))
    assert "<td>PROVISIONING_REPORT</td><td>result=success|agent=x</td>" in page


def test_vm_timings_are_listed():
    page = html_report.render(_report(vm={"accel": "tcg", "boot_to_ready_s": 23.1,
                                          "serial_log": "/x"}))
    assert "(QEMU VM)" in page and "boot_to_ready_s" in page and "serial_log" not in page


def test_axis_steps_are_round():
    assert html_report.nice_step(1.8) == 0.5
    assert html_report.nice_step(10) == 2
    assert html_report.nice_step(70) == 10
    assert html_report.nice_step(0) == 1.0


def test_moment_labels_do_not_overlap():
    spans = [(300, 120), (310, 140), (330, 90), (700, 80)]
    rows = html_report.label_rows(spans)
    assert rows[:3] == [0, 1, 2] and rows[3] == 0
    placed = {}
    for (x, w), row in zip(spans, rows):
        for x2, w2 in placed.get(row, []):
            assert x >= x2 + w2 or x + w <= x2
        placed.setdefault(row, []).append((x, w))


def test_cli_writes_the_page(tmp_path, monkeypatch, capsys):
    from azure_sim import boot

    monkeypatch.setattr(boot, "boot", lambda scenario, **kw: _report())
    out = tmp_path / "boot.html"
    assert cli.main(["boot", "--html", str(out), "--quiet"]) == 0
    assert "Ready after 0.41 s" in out.read_text()
