"""The outbox: an outcome is pending until delivered; the health POST itself."""

from __future__ import annotations

import os
import stat

import pytest

from cloudinit_azure import health
from cloudinit_azure.health import Outbox, Outcome
from cloudinit_azure.report import WireserverError
from cloudinit_azure.wireserver import GoalState

GS = GoalState("1", "container", "instance", None)


class FakeWireserver:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def goal_state(self):
        if self.fail:
            raise WireserverError(detail="network unreachable")
        return GS

    def report_ready(self, gs):
        self.calls.append(("ready", gs))

    def report_failure(self, gs, description):
        self.calls.append(("failure", gs, description))


@pytest.fixture
def outbox(tmp_path):
    return Outbox(str(tmp_path / "state"), str(tmp_path / "run"))


def test_an_outcome_survives_and_the_attempt_is_noted_for_this_boot_only(outbox, tmp_path):
    assert outbox.get("iid") is None and not outbox.attempted("iid")
    outbox.put("iid", Outcome("failed", False, "result=error|reason=x"))
    assert outbox.get("iid") == Outcome("failed", False, "result=error|reason=x")
    assert outbox.attempted("iid")
    marker = tmp_path / "state" / "health-iid.json"
    assert stat.S_IMODE(os.stat(marker).st_mode) == 0o600
    next_boot = Outbox(str(tmp_path / "state"), str(tmp_path / "run2"))  # a fresh /run
    assert not next_boot.attempted("iid")
    assert next_boot.get("iid").delivered is False


def test_markers_of_the_plug_in_before_the_outbox_count_as_delivered(outbox, tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "health-old.json").write_text('{"state": "ready"}')
    (tmp_path / "state" / "health-bad.json").write_text('{"state": "maybe"}')
    assert outbox.get("old") == Outcome("ready", True)
    assert outbox.get("bad") is None


def test_an_instance_id_cannot_leave_the_state_directory(outbox, tmp_path):
    outbox.put("../../x", Outcome("ready", True))
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["health-.._.._x.json"]


def test_send_ready_or_failure_after_a_fresh_goal_state():
    ws = FakeWireserver()
    health.send("127.0.0.1", None, 1, client=ws)
    health.send("127.0.0.1", "result=error", 1, client=ws)
    assert ws.calls == [("ready", GS), ("failure", GS, "result=error")]
    with pytest.raises(WireserverError):
        health.send("127.0.0.1", None, 1, client=FakeWireserver(fail=True))


def test_a_pending_outcome_syncs_the_file_system_first(tmp_path, monkeypatch):
    from cloudinit_azure import atomic
    from cloudinit_azure.health import Outbox, Outcome

    synced = []
    monkeypatch.setattr(atomic, "sync_filesystem", lambda path: synced.append(str(path)))
    box = Outbox(str(tmp_path / "state"), str(tmp_path / "run"))
    box.put("iid", Outcome("ready", False))
    assert synced == [str(tmp_path / "state")]
    box.put("iid", Outcome("ready", True))  # delivered: the marker alone (fsynced)
    assert synced == [str(tmp_path / "state")]


def test_write_back_syncs_the_outboxs_file_system_and_makes_its_directory(tmp_path,
                                                                         monkeypatch):
    from cloudinit_azure import atomic
    from cloudinit_azure.health import Outbox

    synced = []
    monkeypatch.setattr(atomic, "sync_filesystem", lambda path: synced.append(str(path)))
    Outbox(str(tmp_path / "state"), str(tmp_path / "run")).write_back()
    assert synced == [str(tmp_path / "state")] and (tmp_path / "state").is_dir()
