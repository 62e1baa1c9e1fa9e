"""azure-sim: the report's ``waagent`` part (one consistent story) and the guest's collector."""

from __future__ import annotations

import pytest

from azure_sim import waagent_guest, waagent_report
from azure_sim.scenario import DEFAULT_VM_ID

PLUGIN = {"user-agent": "python-requests/2.28.1"}
AGENT = {"user-agent": "WALinuxAgent/2.12.0.2"}


def _health(t, state, substatus=None, headers=PLUGIN):
    return {"t": t, "endpoint": "health", "headers": headers,
            "health": {"state": state, "substatus": substatus}}


def _states(*reports):
    return waagent_report.story_problems(waagent_report.health_reports(list(reports)))


def test_the_consistent_stories():
    assert _states(_health(1, "Ready")) == []
    assert _states(_health(1, "NotReady", "ProvisioningFailed"),
                   _health(9, "NotReady", "ProvisioningFailed", AGENT)) == []
    # the agent's own provisioning before any outcome of ours is no contradiction
    assert _states(_health(1, "NotReady", "Provisioning", AGENT), _health(2, "Ready", None,
                                                                          AGENT)) == []
    # a repeated Ready is not a contradiction (the verdict counts Readys itself)
    assert _states(_health(1, "Ready"), _health(5, "Ready", None, AGENT)) == []


@pytest.mark.parametrize("reports, problem", [
    ((_health(1, "NotReady", "ProvisioningFailed"), _health(5, "Ready", None, AGENT)),
     "Ready by waagent after a ProvisioningFailed"),
    ((_health(1, "Ready"), _health(5, "NotReady", "Provisioning", AGENT)),
     "NotReady/Provisioning by waagent after our Ready"),
    ((_health(1, "Ready"), _health(5, "NotReady", "ProvisioningFailed")),
     "NotReady/ProvisioningFailed by cloud-init after our Ready"),
])
def test_contradictions(reports, problem):
    assert _states(*reports) == [problem]


def test_marker_matches_in_either_byte_order():
    swapped = "c7a1d26b-0e3f-8a4b-9c51-2d7e8f4a1b30"
    assert waagent_report.marker_matches(swapped, DEFAULT_VM_ID)
    assert waagent_report.marker_matches(DEFAULT_VM_ID.upper() + "\n", DEFAULT_VM_ID)
    assert not waagent_report.marker_matches("", DEFAULT_VM_ID)
    assert not waagent_report.marker_matches("00000000-0e3f-8a4b-9c51-2d7e8f4a1b30",
                                             DEFAULT_VM_ID)


def _guest(**kw):
    base = {"settled": "loop", "provisioned": {"text": DEFAULT_VM_ID}, "ovf_copy": {},
            "custom_data_runs": 1}
    return {**base, **kw}


UPLOAD = {"t": 3, "endpoint": "hostplugin-status", "headers": AGENT,
          "vm_status": {"status": "Ready"}}


def test_summary_of_a_ready_vm():
    summary, problems = waagent_report.summarize(_guest(), [_health(1, "Ready"), UPLOAD],
                                                 DEFAULT_VM_ID, "ready")
    assert problems == []
    assert summary["reached_extension_loop"] and summary["status_uploads"] == 1
    assert summary["agent_health_reports"] == [] and summary["agent_requests"] == [
        "hostplugin-status"]
    assert summary["health_reports"] == [{"t": 0, "state": "Ready", "substatus": None,
                                          "by": "cloud-init"}]


@pytest.mark.parametrize("guest, journal, expect, problem", [
    (_guest(settled=None), [UPLOAD], "ready", "no extension loop"),
    (_guest(), [], "ready", "no extension loop"),
    (_guest(provisioned=None), [UPLOAD], "ready", "marker None is not this VM's"),
    (_guest(custom_data_runs=2), [UPLOAD], "ready", "customData ran 2 times"),
    (_guest(settled="waiting", provisioned=None, ovf_copy={}), [], "failure",
     "copy is left after the failure"),
    (_guest(settled="loop", provisioned=None, ovf_copy=None), [], "failure",
     "not waiting for ovf-env.xml"),
    (None, [], "ready", "did not report on the agent"),
])
def test_summary_problems(guest, journal, expect, problem):
    _, problems = waagent_report.summarize(guest, journal, DEFAULT_VM_ID, expect)
    assert any(problem in p for p in problems), problems


def test_add_only_with_the_agent_and_fails_the_verdict():
    report = {"verdict": {"ok": True, "problems": []}}
    waagent_report.add(report, {}, [], {"waagent": False}, DEFAULT_VM_ID)
    assert "waagent" not in report and report["verdict"]["ok"]
    waagent_report.add(report, {}, [], {"waagent": True, "expect": "ready"}, DEFAULT_VM_ID)
    assert not report["verdict"]["ok"] and report["waagent"]["settled"] is None


# --- the guest's collector (runs in the VM) -------------------------------------

LOG_LOOP = ("2026-12-01T10:00:00.1Z INFO Daemon Provisioning already completed, skipping.\n"
            "2026-12-01T10:00:09.1Z ERROR ExtHandler Failed to mount resource disk x\n"
            "2026-12-01T10:00:10.1Z INFO ExtHandler ProcessExtensionsGoalState completed "
            "[incarnation_1 12 ms]\n")


def test_settled_from_both_agent_versions_logs():
    assert waagent_guest.settled(LOG_LOOP) == "loop"
    assert waagent_guest.settled("x INFO ExtHandler ProcessExtensionsInGoalState completed"
                                 " [Incarnation: 1; 5 ms]") == "loop"
    assert waagent_guest.settled("x INFO Daemon Waiting for cloud-init to copy ovf-env.xml "
                                 "to /var/lib/waagent/ovf-env.xml [1800 retries]") == "waiting"
    assert waagent_guest.settled("x INFO Daemon Run daemon") is None


def test_wait_is_bounded(tmp_path):
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    assert waagent_guest.wait(tmp_path, 5, 15, clock=lambda: now[0], sleep=sleep) == (None, 5)
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/waagent.log").write_text(LOG_LOOP)
    slept.clear()
    assert waagent_guest.wait(tmp_path, 5, 15, clock=lambda: now[0], sleep=sleep)[0] == "loop"
    assert slept == [15]  # a few goal-state periods more: status uploads


def test_observe_reads_the_agents_directory_and_log(tmp_path):
    assert waagent_guest.observe({}, tmp_path) is None
    (tmp_path / "var/log").mkdir(parents=True)
    (tmp_path / "var/log/waagent.log").write_text(LOG_LOOP)
    lib = tmp_path / "var/lib/waagent"
    lib.mkdir(parents=True, mode=0o700)
    (lib / "provisioned").write_text(DEFAULT_VM_ID)
    (lib / "ovf-env.xml").write_text("<UserPassword>REDACTED</UserPassword>")
    (tmp_path / "var/tmp").mkdir()
    (tmp_path / "var/tmp/custom-data-runs").write_text("ran\n")
    got = waagent_guest.observe({"waagent": True, "waagent_settle_s": 0}, tmp_path)
    assert got["settled"] == "loop" and got["provisioning_skipped"]
    assert got["provisioned"]["text"] == DEFAULT_VM_ID
    assert got["ovf_copy"]["redacted"] and got["custom_data_runs"] == 1
    assert got["errors"] == ["ExtHandler Failed to mount resource disk x"]
    assert got["lib_files"] == ["ovf-env.xml", "provisioned"]
