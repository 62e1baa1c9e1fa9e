"""Preprovisioning end to end: pool flows against the simulator, both cloud-init versions.

cloud-init's own Azure datasource (22.4.2 and 25.1.4) is the reference that
the simulator plays each pool type as Azure does: it must complete every flow
(pool Ready, the wait, the customer's documents, the customer's Ready) and
end as the customer's VM. Each scenario boots once per version and datasource
(``_boot``); the ``no_leftovers`` fixture (conftest) checks the host after
every test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_sim import documents
from azure_sim.scenario import DEFAULT_KEY

pytestmark = pytest.mark.integration

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

UNKNOWN = """\
name: pps-unknown
pps: {type: Frobnicated, assign_after_s: 1.5, ovf: {username: dave, hostname: customer-vm-04}}
"""

REBOOT = """\
name: pps-reboot
pps: {type: running, assign_after_s: 8, reboot_after_s: 1,
      ovf: {username: erin, hostname: customer-vm-05}}
"""

FAULTS = """\
name: pps-faults
pps: {type: running, assign_after_s: 1.5, ovf: {username: frank, hostname: customer-vm-06}}
faults:
  - {endpoint: reprovisiondata, status: 500, count: 2}
  - {endpoint: reprovisiondata, status: reset}
"""

LATE_NIC = """\
name: pps-late-nic
pps: {type: savable, assign_after_s: 1.5, nic_attach_after_s: 2,
      ovf: {username: grace, hostname: customer-vm-07}}
faults:
  - {endpoint: reprovisiondata, status: 503}
"""

BAD_CUSTOMER = """\
name: pps-bad-customer
pps: {type: running, assign_after_s: 1, ovf_xml: "<Environment><bad"}
expect: failure
"""

NOT_OVF = """\
name: pps-not-ovf
pps: {type: savable, assign_after_s: 1, ovf_xml: '{"error": "Not found"}'}
expect: failure
"""

INLINE = {"unknown": UNKNOWN, "reboot": REBOOT, "faults": FAULTS, "late-nic": LATE_NIC,
          "bad-customer": BAD_CUSTOMER, "not-ovf": NOT_OVF}
_REPORTS: dict[tuple[str, str, str], dict] = {}
# 25.1.4 logs every failed reprovisiondata poll as a WARNING: status "degraded done".
DEGRADED = ["cloud-init status is degraded done"]


def _boot(run_boot, name: str, cloud_init: str, datasource: str = "builtin") -> dict:
    """Boot scenarios/pps-NAME.yaml (or an inline one) once per version and datasource."""
    key = (name, cloud_init, datasource)
    if key not in _REPORTS:
        path = SCENARIOS / f"pps-{name}.yaml"
        text = path.read_text() if path.exists() else INLINE[name]
        _REPORTS[key] = run_boot(text, cloud_init=cloud_init, datasource=datasource)
    return _REPORTS[key]


def _customer_provisioned(report: dict, user: str, hostname: str,
                          degraded: bool = False) -> None:
    """Everything the issue asks of a finished pool flow."""
    assert report["verdict"]["problems"] == (DEGRADED if degraded else []), report["verdict"]
    assert report["user"]["name"] == user and report["user"]["exists"]
    assert report["user"]["authorized_keys"] == [DEFAULT_KEY]
    assert report["hostname"] == hostname == report["etc_hostname"]
    assert report["custom_data_applied"] is True
    assert report["placeholder_user_exists"] is False
    assert report["placeholder_custom_data_applied"] is False
    assert report["cloud_init_status"] in ("done", "degraded done")
    pps = report["pps"]
    # The pool's Ready, then the customer's: two Readies, in that order.
    assert report["ready_count"] == 2
    assert pps["pool_ready_t"] < pps["assigned_t"] <= pps["customer_ready_t"]
    assert pps["assignment_to_ready_s"] > 0


def _link(report: dict, after: float) -> list[tuple[str, bool]]:
    return [(e["name"], e["down"]) for e in report["link_events"]
            if e["t"] is not None and e["t"] >= after]


# --- cloud-init's own datasource: the simulator's fidelity --------------------------


def test_builtin_running(run_boot, cloud_init):
    report = _boot(run_boot, "running", cloud_init)
    _customer_provisioned(report, "alice", "customer-vm-01")
    pps = report["pps"]
    assert pps["type"] == "running"
    # The wait ends with the vnet switch; then reprovisiondata gives the customer's ovf.
    assert pps["assigned_t"] <= pps["reprovision_fetched_t"] <= pps["customer_ready_t"]
    assert [("eth0", True), ("eth0", False)] == _link(report, pps["assigned_t"])[:2]
    # The built-in polls only after the switch: no 404 was needed.
    statuses = [r["status"] for r in report["requests"] if r["endpoint"] == "reprovisiondata"]
    assert statuses == [200]
    assert report["cloud_init_status"] == "done"


def test_builtin_savable(run_boot, cloud_init):
    report = _boot(run_boot, "savable", cloud_init)
    _customer_provisioned(report, "bob", "customer-vm-02")
    pps = report["pps"]
    assert pps["pool_ready_t"] < pps["nic_detached_t"] < pps["assigned_t"]
    assert pps["assigned_t"] <= pps["nic_attached_t"] < pps["reprovision_fetched_t"]
    assert pps["reprovision_fetched_t"] < pps["customer_ready_t"]
    # The VM ends on the new NIC, leased by its new MAC.
    new_mac = documents.customer_nic_mac()
    assert [link["mac"] for link in report["links"] if link["name"] == "eth0"] == [new_mac]
    assert [lease["mac"] for lease in report["dhcp_leases"]] == [new_mac]
    events = [e["line"] for e in report["link_events"]]
    assert any(line.startswith("Deleted") and "eth0" in line for line in events)
    assert report["cloud_init_status"] == "done"


def test_builtin_os_disk(run_boot, cloud_init):
    report = _boot(run_boot, "os-disk", cloud_init)
    _customer_provisioned(report, "carol", "customer-vm-03")
    steps = [s["event"] for s in report["pps"]["steps"]]
    assert steps == ["pool_ready", "power_off", "assign", "power_on"]
    # The pool boot's init-local was ended by the power-off; the customer's boot
    # provisions from its own DVD without any reprovisiondata.
    first = [s for s in report["stages"] if s["boot"] == 1]
    assert [s["stage"] for s in first] == ["init-local"] and first[0]["rc"] != 0
    assert [s["stage"] for s in report["stages"] if s["boot"] == 2][0] == "init-local"
    assert not [r for r in report["requests"] if r["endpoint"] == "reprovisiondata"]
    assert report["cloud_init_status"] == "done"


def test_builtin_unknown_type_is_played_as_running(run_boot, cloud_init):
    # PreprovisionedVm true with a type neither version knows: both take it as Running.
    report = _boot(run_boot, "unknown", cloud_init)
    _customer_provisioned(report, "dave", "customer-vm-04")
    assert report["pps"]["type"] == "Frobnicated"
    assert report["pps"]["reprovision_fetched_t"] is not None


def test_builtin_faults_during_the_wait(run_boot, cloud_init):
    # 500, 500, then a reset: each makes the built-in renew its lease and poll again.
    report = _boot(run_boot, "faults", cloud_init)
    _customer_provisioned(report, "frank", "customer-vm-06", degraded=cloud_init == "25.1.4")
    statuses = [r["status"] for r in report["requests"] if r["endpoint"] == "reprovisiondata"]
    assert statuses == [500, 500, "reset", 200]


def test_builtin_late_nic(run_boot, cloud_init):
    report = _boot(run_boot, "late-nic", cloud_init)
    _customer_provisioned(report, "grace", "customer-vm-07", degraded=cloud_init == "25.1.4")
    pps = report["pps"]
    assert pps["nic_attached_t"] - pps["assigned_t"] >= 1.9
    statuses = [r["status"] for r in report["requests"] if r["endpoint"] == "reprovisiondata"]
    assert statuses == [503, 200]


def test_builtin_reboot_during_the_wait(run_boot, cloud_init):
    # The restarted VM finds its reported-ready marker and goes straight to
    # polling reprovisiondata (404 until the assignment), no second pool Ready.
    report = _boot(run_boot, "reboot", cloud_init)
    pps = report["pps"]
    assert [s["event"] for s in pps["steps"]][:2] == ["pool_ready", "restart"]
    statuses = [r["status"] for r in report["requests"] if r["endpoint"] == "reprovisiondata"]
    assert 404 in statuses and statuses[-1] == 200
    _customer_provisioned(report, "erin", "customer-vm-05", degraded=cloud_init == "25.1.4")
    if cloud_init == "25.1.4":
        assert any("Polling IMDS failed" in w for w in report["warnings"])


def test_builtin_bad_customer_document(run_boot, cloud_init):
    report = _boot(run_boot, "bad-customer", cloud_init)
    assert report["verdict"]["ok"], report["verdict"]
    assert report["pps"]["customer_ready_t"] is None
    assert report["ready_count"] == 1  # the pool's only
    assert report["failure"]["substatus"] == "ProvisioningFailed"
    assert report["placeholder_user_exists"] is False


# --- the plug-in -----------------------------------------------------------------------

FLOWS = [("running", "alice", "customer-vm-01"), ("savable", "bob", "customer-vm-02"),
         ("os-disk", "carol", "customer-vm-03"), ("unknown", "dave", "customer-vm-04"),
         ("reboot", "erin", "customer-vm-05"), ("faults", "frank", "customer-vm-06"),
         ("late-nic", "grace", "customer-vm-07")]


@pytest.mark.parametrize("name,user,hostname", FLOWS, ids=[f[0] for f in FLOWS])
def test_plugin_flow(run_boot, cloud_init, name, user, hostname):
    report = _boot(run_boot, name, cloud_init, "plugin")
    # The plug-in logs its wait at INFO: "done" on both versions, faults included.
    _customer_provisioned(report, user, hostname)
    assert report["cloud_init_status"] == "done"
    pps = report["pps"]
    # The customer's Ready only once the customer's account, key and host keys exist.
    assert report["time_to_login_s"] <= pps["customer_ready_t"]
    assert report["time_to_host_keys_s"] <= pps["customer_ready_t"]


@pytest.mark.parametrize("name", ["bad-customer", "not-ovf"])
def test_plugin_bad_customer_document_is_a_provisioning_failure(run_boot, cloud_init, name):
    report = _boot(run_boot, name, cloud_init, "plugin")
    assert report["verdict"]["ok"], report["verdict"]
    assert report["ready_count"] == 1  # the pool's only
    failure = report["failure"]
    assert failure["substatus"] == "ProvisioningFailed"
    assert failure["decoded"]["reason"].startswith("reprovisiondata: ")
    # Neither the placeholder nor a half-provisioned customer.
    assert report["placeholder_user_exists"] is False
    assert report["user"]["exists"] is False
