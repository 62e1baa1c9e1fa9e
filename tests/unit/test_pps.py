"""Preprovisioning core: classification, the wait's plan and orchestration, link events."""

from __future__ import annotations

import logging
import struct

import pytest

from cloudinit_azure import pps
from cloudinit_azure.report import OvfError, ProvisioningError

# --- classify --------------------------------------------------------------------


@pytest.mark.parametrize("flag,ovf_type,imds_type,kind", [
    (True, "Running", None, pps.RUNNING),
    (True, "Savable", "Savable", pps.SAVABLE),
    (True, "PreprovisionedOSDisk", None, pps.OS_DISK),
    (False, None, "Savable", pps.SAVABLE),         # IMDS alone names the pool
    (True, None, "None", pps.RUNNING),             # the legacy flag alone
    (True, "Running", "Savable", pps.SAVABLE),     # Savable wins, as in cloud-init
    (True, "Running", "PreprovisionedOSDisk", pps.OS_DISK),
])
def test_classify_known_types(flag, ovf_type, imds_type, kind):
    pool = pps.classify(flag, ovf_type, imds_type, marker=None)
    assert pool is not None and pool.kind == kind
    assert pool.fallback is None and pool.resumed is False


@pytest.mark.parametrize("flag,ovf_type,imds_type", [
    (False, None, None), (False, None, "None"), (False, "", "None")])
def test_classify_ordinary_vm(flag, ovf_type, imds_type):
    assert pps.classify(flag, ovf_type, imds_type, marker=None) is None


def test_stale_marker_on_an_ordinary_vm_is_ignored():
    assert pps.classify(False, None, "None", marker="running") is None


def test_unknown_type_waits_as_running_and_says_so():
    pool = pps.classify(True, "Frobnicated", None, marker=None)
    assert pool.kind == pps.RUNNING
    assert pool.declared == "Frobnicated"
    assert "unknown preprovisioning type 'Frobnicated'" in pool.fallback


def test_marker_resumes_except_for_os_disk():
    assert pps.classify(True, "Running", None, marker="running").resumed is True
    assert pps.classify(True, "Savable", None, marker="savable").resumed is True
    assert pps.classify(True, "PreprovisionedOSDisk", None, marker="x").resumed is False


# --- plan ------------------------------------------------------------------------


def test_plans():
    running = pps.plan(pps.Pool(pps.RUNNING))
    assert running == pps.Plan(True, False, True, ("vnet_switch",), True)
    savable = pps.plan(pps.Pool(pps.SAVABLE))
    assert savable == pps.Plan(True, True, True, ("nic_detach", "nic_attach"), True)
    os_disk = pps.plan(pps.Pool(pps.OS_DISK))
    assert os_disk.waits == ("shutdown",) and not os_disk.remember and not os_disk.poll
    resumed = pps.plan(pps.Pool(pps.RUNNING, resumed=True))
    assert resumed == pps.Plan(False, False, False, (), True)


@pytest.mark.parametrize("status,verdict", [
    (200, "done"), (404, "wait"), (410, "wait"), (429, "wait"),
    (500, "renew"), (503, "renew"), (None, "renew")])
def test_poll_next(status, verdict):
    assert pps.poll_next(status) == verdict


def test_should_log_backs_off():
    assert [n for n in range(1, 130) if pps.should_log(n)] == [
        1, 2, 4, 8, 16, 32, 60, 64, 120, 128]


# --- the customer's document -------------------------------------------------------

GOOD = b"""<?xml version="1.0"?>
<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"
  xmlns:wa="http://schemas.microsoft.com/windowsazure">
 <wa:ProvisioningSection><wa:LinuxProvisioningConfigurationSet>
  <wa:HostName>cust</wa:HostName><wa:UserName>alice</wa:UserName>
 </wa:LinuxProvisioningConfigurationSet></wa:ProvisioningSection>
 <wa:PlatformSettingsSection><wa:PlatformSettings>
  <wa:PreprovisionedVm>%s</wa:PreprovisionedVm>
 </wa:PlatformSettings></wa:PlatformSettingsSection>
</Environment>
"""


def test_customer_document_parsed():
    ovf = pps.customer_document(GOOD % b"false")
    assert (ovf.username, ovf.hostname) == ("alice", "cust")


@pytest.mark.parametrize("data,reason,ovf_error", [
    (b"", "reprovisiondata: empty document", None),
    (b"<Environment><bad", "reprovisiondata: not a valid ovf-env.xml",
     "ovf-env.xml is not well-formed XML"),
    (b'{"error": "Not found"}', "reprovisiondata: not a valid ovf-env.xml",
     "ovf-env.xml is not well-formed XML"),
    (GOOD % b"true", "reprovisiondata: a preprovisioned (pool) document, not the customer's",
     None),
])
def test_customer_document_refused_with_a_reason(data, reason, ovf_error):
    with pytest.raises(OvfError) as err:
        pps.customer_document(data)
    assert err.value.reason == reason
    assert err.value.supporting_data.get("ovf_error") == ovf_error


# --- the wait ------------------------------------------------------------------------


class FakeReuse:
    """Scripted link events and reprovisiondata answers; records every call."""

    def __init__(self, links=(), answers=(), ready_error=None) -> None:
        self.links = dict(links)  # what -> how many slices until it happens
        self.answers = list(answers)
        self.ready_error = ready_error
        self.calls: list[str] = []

    def open_watch(self):
        self.calls.append("open_watch")

    def close_watch(self):
        self.calls.append("close_watch")

    def wait_link(self, what, timeout):
        self.calls.append(f"wait {what}")
        left = self.links.get(what, 0)
        if left:
            self.links[what] = left - 1
            return False
        return True

    def renew_lease(self):
        self.calls.append("renew")

    def fetch(self):
        status, body = self.answers.pop(0) if self.answers else (404, b"")
        self.calls.append(f"fetch {status}")
        return status, body

    def report_pool_ready(self):
        self.calls.append("pool ready")
        if self.ready_error:
            raise self.ready_error

    def remember_pool(self, kind):
        self.calls.append(f"remember {kind}")

    def sleep(self, seconds):
        self.calls.append("sleep")


def test_running_reports_ready_waits_for_the_switch_renews_and_polls():
    reuse = FakeReuse(answers=[(404, b""), (200, b"<doc/>")])
    assert pps.wait_for_customer(pps.Pool(pps.RUNNING), reuse) == b"<doc/>"
    assert reuse.calls == ["open_watch", "pool ready", "remember running",
                           "wait vnet_switch", "renew", "close_watch",
                           "fetch 404", "sleep", "fetch 200"]


def test_the_watch_is_open_before_the_pool_ready():
    reuse = FakeReuse(answers=[(200, b"x")])
    pps.wait_for_customer(pps.Pool(pps.SAVABLE), reuse)
    assert reuse.calls.index("open_watch") < reuse.calls.index("pool ready")


def test_running_polls_between_link_waits_so_a_missed_switch_cannot_hang():
    reuse = FakeReuse(links={"vnet_switch": 5}, answers=[(404, b""), (200, b"doc")])
    assert pps.wait_for_customer(pps.Pool(pps.RUNNING), reuse) == b"doc"
    assert "renew" not in reuse.calls  # the document came first: no lease renewal
    assert reuse.calls[-1] == "close_watch"


def test_savable_tolerates_a_failed_pool_ready_then_waits_for_the_new_nic():
    reuse = FakeReuse(links={"nic_detach": 2}, answers=[(200, b"doc")],
                      ready_error=ProvisioningError(detail="connection reset"))
    assert pps.wait_for_customer(pps.Pool(pps.SAVABLE), reuse) == b"doc"
    calls = reuse.calls
    assert calls[:3] == ["open_watch", "pool ready", "remember savable"]
    # No poll while the NIC is still there: only after the new one came up.
    detach = [c for c in calls if c == "wait nic_detach"]
    assert len(detach) == 3 and "fetch 200" not in calls[:calls.index("wait nic_attach")]
    assert calls[calls.index("wait nic_attach") + 1] == "renew"


def test_running_pool_ready_failure_is_a_provisioning_failure():
    reuse = FakeReuse(ready_error=ProvisioningError(detail="wireserver unreachable"))
    with pytest.raises(ProvisioningError):
        pps.wait_for_customer(pps.Pool(pps.RUNNING), reuse)
    assert "remember running" not in reuse.calls
    assert reuse.calls[-1] == "close_watch"


def test_resumed_wait_skips_the_pool_ready_and_polls():
    reuse = FakeReuse(answers=[(404, b""), (404, b""), (200, b"doc")])
    assert pps.wait_for_customer(pps.Pool(pps.RUNNING, resumed=True), reuse) == b"doc"
    assert "pool ready" not in reuse.calls
    assert [c for c in reuse.calls if c.startswith("fetch")] == [
        "fetch 404", "fetch 404", "fetch 200"]


def test_prepare_runs_once_after_the_pool_ready_and_before_the_wait():
    reuse = FakeReuse(links={"vnet_switch": 2}, answers=[(404, b""), (404, b""), (200, b"d")])
    pps.wait_for_customer(pps.Pool(pps.RUNNING), reuse,
                          prepare=lambda: reuse.calls.append("prepare"))
    assert reuse.calls[:5] == ["open_watch", "pool ready", "remember running", "prepare",
                               "wait vnet_switch"]
    assert reuse.calls.count("prepare") == 1


def test_prepare_runs_on_a_resumed_wait_before_polling():
    reuse = FakeReuse(answers=[(200, b"doc")])
    pps.wait_for_customer(pps.Pool(pps.SAVABLE, resumed=True), reuse,
                          prepare=lambda: reuse.calls.append("prepare"))
    assert reuse.calls.index("prepare") < reuse.calls.index("fetch 200")


def test_a_failed_prepare_is_logged_and_the_wait_goes_on(caplog):
    def broken():
        raise OSError("ssh-keygen broke")

    reuse = FakeReuse(answers=[(200, b"doc")])
    with caplog.at_level(logging.INFO, logger="cloudinit_azure.pps"):
        assert pps.wait_for_customer(pps.Pool(pps.RUNNING), reuse, prepare=broken) == b"doc"
    assert "could not prepare while waiting (ssh-keygen broke)" in caplog.text


def test_an_os_disk_pool_vm_prepares_nothing():
    # Its customer boots afresh from the customer's DVD: nothing made here is kept.
    class Shutdown(Exception):
        pass

    def sleep(seconds):
        raise Shutdown

    reuse = FakeReuse()
    reuse.sleep = sleep
    with pytest.raises(Shutdown):
        pps.wait_for_customer(pps.Pool(pps.OS_DISK), reuse,
                              prepare=lambda: reuse.calls.append("prepare"))
    assert "prepare" not in reuse.calls


def test_poll_renews_the_lease_after_an_error_answer():
    reuse = FakeReuse(answers=[(500, b""), (None, b""), (410, b""), (200, b"doc")])
    assert pps.poll(reuse) == b"doc"
    assert reuse.calls == ["fetch 500", "renew", "sleep", "fetch None", "renew", "sleep",
                           "fetch 410", "sleep", "fetch 200"]


def test_poll_ignores_an_empty_200():
    reuse = FakeReuse(answers=[(200, b""), (200, b"doc")])
    assert pps.poll(reuse) == b"doc"


def test_os_disk_reports_ready_without_a_marker_and_waits_for_shutdown():
    class Shutdown(Exception):
        pass

    reuse = FakeReuse()
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise Shutdown  # the host powers the VM off

    reuse.sleep = sleep
    with pytest.raises(Shutdown):
        pps.wait_for_customer(pps.Pool(pps.OS_DISK), reuse)
    assert reuse.calls[:2] == ["open_watch", "pool ready"]
    assert not [c for c in reuse.calls if c.startswith(("remember", "fetch"))]
    assert sleeps == [pps.SHUTDOWN_LOG_S] * 3


def test_the_wait_logs_progress_at_info(caplog):
    caplog.set_level(logging.INFO, logger="cloudinit_azure.pps")
    reuse = FakeReuse(links={"vnet_switch": 2}, answers=[(404, b"")] * 2 + [(200, b"d")])
    pool = pps.classify(True, "Frobnicated", None, None)
    pps.wait_for_customer(pool, reuse)
    text = caplog.text
    assert "unknown preprovisioning type 'Frobnicated'" in text
    assert "reported Ready for the running pool" in text
    assert "still waiting for the vnet switch" in text
    assert "fetched the customer's ovf-env.xml" in text


# --- netlink --------------------------------------------------------------------------


def _link_msg(kind, index, name=None, oper=None) -> bytes:
    attrs = b""
    if name is not None:
        value = name.encode() + b"\0"
        attrs += struct.pack("=HH", 4 + len(value), pps.IFLA_IFNAME) + value
        attrs += b"\0" * ((4 - len(attrs) % 4) % 4)
    if oper is not None:
        attrs += struct.pack("=HHB", 5, pps.IFLA_OPERSTATE, oper) + b"\0\0\0"
    body = struct.pack("=BxHiII", 0, 1, index, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_parse_link_messages():
    data = (_link_msg(pps.RTM_NEWLINK, 2, "eth0", pps.OPER_DOWN)
            + _link_msg(20, 9)  # not a link message
            + _link_msg(pps.RTM_DELLINK, 2, "eth0", pps.OPER_DOWN))
    assert pps.parse_link_messages(data) == [
        pps.LinkEvent(False, 2, "eth0", pps.OPER_DOWN),
        pps.LinkEvent(True, 2, "eth0", pps.OPER_DOWN)]


def test_parse_link_messages_stops_at_a_truncated_message():
    data = _link_msg(pps.RTM_NEWLINK, 2, "eth0", pps.OPER_UP)
    assert pps.parse_link_messages(data[:-3]) == []
    assert pps.parse_link_messages(b"\x01\x00") == []


def test_tracker_vnet_switch_is_down_then_up_on_a_known_nic():
    tracker = pps.LinkTracker(known=[2])
    tracker.feed([pps.LinkEvent(False, 2, "eth0", pps.OPER_UP)])
    assert not tracker.happened("vnet_switch")
    tracker.feed([pps.LinkEvent(False, 2, "eth0", pps.OPER_DOWN)])
    assert not tracker.happened("vnet_switch")
    tracker.feed([pps.LinkEvent(False, 2, "eth0", pps.OPER_UP)])
    assert tracker.happened("vnet_switch")
    assert not tracker.happened("nic_attach")


def test_tracker_detach_then_a_new_nic_under_the_old_name():
    tracker = pps.LinkTracker(known=[1, 2])
    tracker.feed([pps.LinkEvent(True, 2, "eth0", pps.OPER_DOWN)])
    assert tracker.happened("nic_detach") and not tracker.happened("nic_attach")
    tracker.feed([pps.LinkEvent(False, 3, "eth0", pps.OPER_DOWN)])
    assert tracker.happened("nic_attach") and tracker.new_nic == "eth0"
