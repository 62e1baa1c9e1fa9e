"""The hand-off to the Azure Linux Agent: what it finds in /var/lib/waagent after our report.

The rules come from waagent's cloud-init provisioning handler (2.7.3 in Debian 12,
2.12 in Debian 13): a marker with this VM's id means "done, report nothing"; no
marker plus our ovf-env.xml copy means NotReady, then Ready. So: marker after our
Ready; neither copy nor marker after our ProvisioningFailed.
"""

from __future__ import annotations

import os
import stat

import pytest

from cloudinit_azure import waagent
from cloudinit_azure.flowstate import FlowConfig, Media
from cloudinit_azure.health import Outcome
from tests.unit.test_flow import UUID, FakeMachine, FakePlatform, boot, imds, ovf_bytes


class Recording(FakePlatform):
    """The fake platform with the hand-off in the same event list as the reports."""

    def hand_off(self, handoff):
        super().hand_off(handoff)
        self.events.append(("handoff", handoff))


def _waagent_accepts(marker: str, product_uuid: str) -> bool:
    """waagent's check of its marker (is_current_instance_id), restated for the test."""
    def correct(uuid):  # waagent's _correct_instance_id: first three fields byte-reversed
        parts = uuid.split("-")
        return "-".join([bytes.fromhex(p)[::-1].hex() for p in parts[:3]] + parts[3:])

    this = correct(product_uuid).lower()
    return this == marker.lower() or this == correct(marker).lower()


def test_the_marker_holds_the_id_waagent_itself_writes():
    # waagent's own example: the DMI form 544CDFD0-... is corrected to D0DF4C54-...
    assert waagent.agent_instance_id("544CDFD0-CB4E-4B4A-9954-5BDF3ED5C3B8") == \
        "d0df4c54-4ecb-4a4b-9954-5bdf3ed5c3b8"
    # and waagent accepts it, whichever byte order our instance id kept
    for iid in (UUID, waagent.agent_instance_id(UUID)):
        assert _waagent_accepts(waagent.agent_instance_id(iid), UUID)
    assert not _waagent_accepts(waagent.agent_instance_id(UUID), "0" * 8 + UUID[8:])


def test_plans():
    assert waagent.after_ready(UUID).write == ((waagent.MARKER,
                                                waagent.agent_instance_id(UUID)),)
    assert set(waagent.after_failure().remove) == {"ovf-env.xml", "provisioned"}
    assert waagent.on_copy(False).write == (("disable_agent", ""),)
    assert waagent.on_copy(True) == waagent.on_copy(None) == waagent.Handoff()


def test_apply_writes_private_files_and_removes_what_a_failure_must_not_leave(tmp_path):
    d = tmp_path / "var/lib/waagent"
    waagent.apply(waagent.after_ready(UUID), d)
    marker = d / "provisioned"
    assert marker.read_text() == waagent.agent_instance_id(UUID)
    assert stat.S_IMODE(os.stat(marker).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    (d / "ovf-env.xml").write_text("<copy/>")
    waagent.apply(waagent.after_failure(), d)
    assert os.listdir(d) == []
    waagent.apply(waagent.after_failure(), d)  # nothing left to remove: no error
    waagent.apply(waagent.after_failure(), tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_ready_writes_the_marker_before_the_ready_goes_out():
    p = Recording()
    state = boot(p, FakeMachine())
    assert state.provisioned
    order = [e[0] for e in p.events if e[0] in ("cache", "handoff", "health")]
    assert order == ["cache", "handoff", "handoff", "health"]
    assert p.handoffs == [waagent.Handoff(), waagent.after_ready(UUID)]


@pytest.mark.parametrize("media, admin", [
    (Media("device", "/dev/sr0", b"<Environment><bad"), "azureuser"),  # broken OVF
    (Media("device", "/dev/sr0", ovf_bytes(username="root")), "root"),  # reserved user
])
def test_a_failure_leaves_waagent_nothing_to_report_ready_on(media, admin):
    p = Recording(media=media, metadata=imds(admin=admin))
    state = boot(p, FakeMachine())
    assert state.failure and [h[2] for h in p.health()] == ["ProvisioningFailed"]
    assert p.handoffs[-1] == waagent.after_failure()
    assert waagent.after_ready(UUID) not in p.handoffs
    # removed before the failure report goes out
    order = [e[0] for e in p.events if e[0] in ("handoff", "health")]
    assert order[-2:] == ["handoff", "health"]


def test_a_failure_after_our_ready_removes_nothing():
    # A later boot of a provisioned instance that fails (IMDS down, no media): no
    # second outcome, and waagent's marker and the copy stay.
    from cloudinit_azure.report import ImdsError

    p = Recording(outbox={UUID: Outcome("ready", True)}, imds_error=ImdsError(detail="imds 403"),
                  media=False)
    boot(p, FakeMachine(), previous_instance_id=UUID)
    assert p.handoffs == [] and p.health() == []


def test_provision_guest_agent_false_disables_the_agent_as_waagent_would():
    ovf = ovf_bytes().replace(
        b"</ProvisioningSection>",
        b"</ProvisioningSection><PlatformSettingsSection xmlns=\"http://schemas.microsoft"
        b".com/windowsazure\"><PlatformSettings><ProvisionGuestAgent>false"
        b"</ProvisionGuestAgent></PlatformSettings></PlatformSettingsSection>")
    p = Recording(media=Media("device", "/dev/sr0", ovf))
    boot(p, FakeMachine(), config=FlowConfig())
    assert p.handoffs[0] == waagent.on_copy(False)


def test_live_platform_hands_off_into_its_data_dir(tmp_path):
    from cloudinit_azure import settings
    from cloudinit_azure.platform import LivePlatform
    from tests.fakes import fake_host

    live = LivePlatform(settings.load_datasource({}), host=fake_host(tmp_path))
    live.hand_off(waagent.after_ready(UUID))
    assert (tmp_path / "var/lib/waagent/provisioned").exists()
    (tmp_path / "file").write_text("not a directory")
    broken = LivePlatform({**settings.load_datasource({}), "data_dir": "/file"},
                          host=fake_host(tmp_path))
    broken.hand_off(waagent.after_ready(UUID))  # a failing hand-off is logged, never raised
    broken.hand_off(waagent.after_failure())
    assert (tmp_path / "file").read_text() == "not a directory"
