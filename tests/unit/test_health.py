"""One outcome per instance: Ready or ProvisioningFailed, to the wireserver and KVP."""

from __future__ import annotations

import pytest

from cloudinit_azure import health, kvp
from cloudinit_azure.report import OvfError, WireserverError, decode_report
from cloudinit_azure.wireserver import GoalState

GS = GoalState("1", "container", "instance", None)


class FakeWireserver:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def goal_state(self):
        if self.fail:
            raise WireserverError("network unreachable")
        return GS

    def report_ready(self, gs):
        self.calls.append(("ready", gs))

    def report_failure(self, gs, description):
        self.calls.append(("failure", gs, description))


@pytest.fixture
def paths(tmp_path):
    return {"kvp_pool": str(tmp_path / "kvp"), "state_dir": str(tmp_path / "state")}


def test_ready_is_sent_once_per_instance(paths):
    ws = FakeWireserver()
    r = health.Reporter("127.0.0.1", client=ws, vm_id="vm", **paths)
    assert r.ready("iid-1") is True
    assert r.ready("iid-1") is False
    assert [c[0] for c in ws.calls] == ["ready"]
    records = kvp.read(paths["kvp_pool"])
    assert [k for k, _ in records] == ["PROVISIONING_REPORT"]
    assert decode_report(records[0][1])["result"] == "success"
    assert health.reported(paths["state_dir"], "iid-1") == "ready"
    assert health.Reporter("127.0.0.1", client=ws, **paths).ready("iid-2") is True


def test_failure_blocks_a_later_ready(paths):
    ws = FakeWireserver()
    r = health.Reporter("127.0.0.1", client=ws, vm_id="vm", **paths)
    assert r.failure(OvfError("ovf-env.xml is not well-formed XML", line=1), "iid") is True
    assert r.ready("iid") is False
    assert r.failure(OvfError(), "iid") is False
    assert [c[0] for c in ws.calls] == ["failure"]
    description = ws.calls[0][2]
    decoded = decode_report(description)
    assert decoded["result"] == "error"
    assert decoded["reason"] == "ovf-env.xml is not well-formed XML"
    assert decoded["line"] == "1" and decoded["vm_id"] == "vm"
    assert len(description) <= 512


def test_failure_reaches_kvp_even_when_the_wireserver_is_unreachable(paths):
    r = health.Reporter("127.0.0.1", client=FakeWireserver(fail=True), **paths)
    assert r.failure(OvfError("bad"), None) is False
    records = kvp.read(paths["kvp_pool"])
    assert decode_report(records[0][1])["reason"] == "bad"
    assert health.reported(paths["state_dir"], "unknown") == "failed"


def test_ready_failure_propagates_and_is_not_remembered(paths):
    r = health.Reporter("127.0.0.1", client=FakeWireserver(fail=True), **paths)
    with pytest.raises(WireserverError):
        r.ready("iid")
    assert health.reported(paths["state_dir"], "iid") is None
