"""Preprovisioning inside the provisioning flow, with the flow's fake seams.

A pool VM reports the pool's Ready through the wait's seam, waits, and the
flow then provisions the customer's document exactly as a normal VM's:
never the placeholder's user, never the placeholder's customData.
"""

from __future__ import annotations

import json

from cloudinit_azure.flowstate import Media
from cloudinit_azure.health import Outcome
from cloudinit_azure.imds import parse_instance_metadata
from tests.unit.test_flow import KEY, UUID, WA, FakeMachine, FakePlatform, boot, ovf_bytes


def pool_ovf(kind: str = "Running", *, username: str = "ppsplaceholder") -> bytes:
    settings = (f'<PlatformSettingsSection xmlns="{WA}"><PlatformSettings>'
                "<PreprovisionedVm>true</PreprovisionedVm>"
                f"<PreprovisionedVMType>{kind}</PreprovisionedVMType>"
                "</PlatformSettings></PlatformSettingsSection>")
    return ovf_bytes(username=username, custom=b"#cloud-config\n{}\n").replace(
        b"</Environment>", settings.encode() + b"</Environment>")


def pool_imds(admin: str, pps_type: str):
    doc = {"compute": {"vmId": UUID, "osProfile": {"computerName": "vm1",
                                                   "adminUsername": admin,
                                                   "disablePasswordAuthentication": "true"},
                       "publicKeys": [{"keyData": KEY, "path": "/p"}]},
           "network": {"interface": []}, "extended": {"compute": {"ppsType": pps_type}}}
    return parse_instance_metadata(json.dumps(doc).encode())


class Reuse:
    """The wait's seam: link events at once, reprovisiondata scripted."""

    def __init__(self, platform, answers):
        self.platform = platform
        self.answers = list(answers)

    def open_watch(self):
        pass

    def close_watch(self):
        pass

    def wait_link(self, what, timeout):
        self.platform.events.append(("link", what))
        return True

    def renew_lease(self):
        self.platform.events.append(("renew",))

    def fetch(self):
        status, body = self.answers.pop(0)
        self.platform.events.append(("reprovisiondata", status))
        return status, body

    def report_pool_ready(self):
        self.platform.events.append(("pool-ready",))

    def remember_pool(self, kind):
        self.platform.marker = kind

    def forget_pool(self):
        self.platform.marker = None

    def sleep(self, seconds):
        pass


class PoolPlatform(FakePlatform):
    def __init__(self, *, kind="Running", answers=(), customer_imds=None, marker=None):
        super().__init__(media=Media("device", "/dev/sr0", pool_ovf(kind)),
                         metadata=pool_imds("ppsplaceholder", kind))
        self.answers = list(answers)
        self.customer_imds = customer_imds or pool_imds("alice", "None")
        self.marker = marker
        self.cached: list[bytes] = []
        self.imds_calls = 0

    def instance_metadata(self):
        self.imds_calls += 1
        self.events.append(("imds",))
        return self.metadata if self.imds_calls == 1 else self.customer_imds

    def cache_ovf(self, redacted):
        self.cached.append(redacted)

    def pool_marker(self):
        return self.marker

    def write_back(self):
        self.events.append(("write_back",))

    def reuse(self, wireserver):
        self.events.append(("reuse", wireserver))
        return Reuse(self, self.answers)


CUSTOMER = ovf_bytes(username="alice", custom=b"#cloud-config\nruncmd: [customer]\n")


def test_pool_vm_reports_the_pool_ready_waits_and_provisions_only_the_customer():
    p, m = PoolPlatform(answers=[(404, b""), (200, CUSTOMER)]), FakeMachine()
    state = boot(p, m)
    assert state.provisioned and state.failure is None
    plan = state.provisioning
    assert plan.username == "alice"
    assert plan.userdata == b"#cloud-config\nruncmd: [customer]\n"
    # The placeholder never became a user; the customer did, once.
    assert [e for e in m.events if e[0] == "create_user"] == [("create_user", "alice")]
    names = [e[0] for e in p.events]
    pool_ready = names.index("pool-ready")
    customer_ready = next(i for i, e in enumerate(p.events)
                          if e[0] == "health" and e[2] == "Ready")
    assert pool_ready < names.index("reprovisiondata") < customer_ready
    assert ("link", "vnet_switch") in p.events and ("renew",) in p.events
    # IMDS again after the assignment (the customer's identity).
    assert names.count("imds") == 2
    # The cached copy is the customer's document, and the marker is gone.
    assert b"alice" in p.cached[-1] and p.marker is None
    assert "pool" in p.phases()


def test_savable_waits_for_the_nic_to_go_and_a_new_one_to_come():
    p, m = PoolPlatform(kind="Savable", answers=[(200, CUSTOMER)]), FakeMachine()
    assert boot(p, m).provisioned
    links = [e[1] for e in p.events if e[0] == "link"]
    assert links == ["nic_detach", "nic_attach"]


def test_resumed_wait_sends_no_second_pool_ready():
    p, m = PoolPlatform(answers=[(404, b""), (200, CUSTOMER)], marker="running"), FakeMachine()
    assert boot(p, m).provisioned
    assert ("pool-ready",) not in p.events
    assert [e for e in p.events if e[0] == "link"] == []


def test_bad_customer_document_fails_with_a_reason_and_applies_nothing():
    p, m = PoolPlatform(answers=[(200, b"<Environment><bad")]), FakeMachine()
    state = boot(p, m)
    assert not state.provisioned
    assert state.failure.startswith("reprovisiondata: ")
    assert not [e for e in m.events if e[0] == "create_user"]
    failed = [e for e in p.events if e[0] == "health" and e[2] == "ProvisioningFailed"]
    assert len(failed) == 1 and "reprovisiondata" in failed[0][3]
    assert not [e for e in p.events if e[0] == "health" and e[2] == "Ready"]


def test_reprovisiondata_that_is_not_an_ovf_env_fails():
    p, m = PoolPlatform(answers=[(200, b'{"error": "Not found"}')]), FakeMachine()
    state = boot(p, m)
    assert not state.provisioned and state.failure.startswith("reprovisiondata: ")
    assert not [e for e in m.events if e[0] == "create_user"]


def test_imds_still_preprovisioned_after_the_assignment_fails():
    p = PoolPlatform(answers=[(200, CUSTOMER)], customer_imds=pool_imds("alice", "Running"))
    m = FakeMachine()
    state = boot(p, m)
    assert state.failure == "IMDS still says preprovisioned after the assignment"
    assert not [e for e in m.events if e[0] == "create_user"]


def test_ordinary_vm_never_asks_for_the_pool_marker():
    class Strict(FakePlatform):
        def pool_marker(self):
            raise AssertionError("read the marker on an ordinary VM")

    assert boot(Strict(), FakeMachine()).provisioned


def test_an_instance_already_reported_is_not_reported_again_after_the_wait():
    p = PoolPlatform(answers=[(200, CUSTOMER)])
    p.outbox[UUID] = Outcome("ready", True)
    state = boot(p, FakeMachine())
    assert not [e for e in p.events if e[0] == "health"]
    assert state.failure is None


class SharedTimeline(FakeMachine):
    """The machine's steps on the platform's timeline, to see them against the wait."""

    def __init__(self, platform, **kw):
        super().__init__(**kw)
        self.platform = platform

    def _step(self, name, *args):
        self.platform.events.append(("machine", name, *args))
        super()._step(name, *args)


def test_host_keys_are_made_while_waiting_and_kept_after_the_assignment():
    p = PoolPlatform(answers=[(404, b""), (200, CUSTOMER)])
    m = SharedTimeline(p)
    state = boot(p, m)
    assert state.provisioned and state.host_keys == ("/etc/ssh/ssh_host_ed25519_key",)
    names = [e[0] if e[0] != "machine" else e[1] for e in p.events]
    # Made (as for a new instance) after the pool's Ready, before the customer is known ...
    assert names.index("pool-ready") < names.index("host_keys") < names.index("reprovisiondata")
    assert ("machine", "host_keys", True) in p.events
    # ... and after the assignment only checked (kept), before the customer's Ready.
    assert [e for e in m.events if e[0] == "host_keys"] == [("host_keys", True),
                                                            ("host_keys", False)]
    last_keys = max(i for i, n in enumerate(names) if n == "host_keys")
    ready = next(i for i, e in enumerate(p.events) if e[0] == "health" and e[2] == "Ready")
    assert names.index("create_user") < last_keys < ready


def test_host_keys_that_failed_during_the_wait_are_made_after_the_assignment():
    class FailsOnce(SharedTimeline):
        def generate_host_keys(self, new_instance):
            if not [e for e in self.events if e[0] == "host_keys"]:
                self.events.append(("host_keys", new_instance))
                raise OSError("no entropy yet")
            return super().generate_host_keys(new_instance)

    p = PoolPlatform(answers=[(200, CUSTOMER)])
    m = FailsOnce(p)
    assert boot(p, m).provisioned
    # The second attempt is the flow's own, for a new instance: stale keys replaced.
    assert [e for e in m.events if e[0] == "host_keys"] == [("host_keys", True),
                                                            ("host_keys", True)]


def test_an_ordinary_vm_makes_its_host_keys_once():
    p, m = FakePlatform(), FakeMachine()
    assert boot(p, m).provisioned
    assert [e for e in m.events if e[0] == "host_keys"] == [("host_keys", True)]


def test_the_accounts_groups_are_prepared_while_waiting_before_the_customer_is_known():
    p = PoolPlatform(answers=[(404, b""), (200, CUSTOMER)])
    m = SharedTimeline(p)
    assert boot(p, m).provisioned
    names = [e[0] if e[0] != "machine" else e[1] for e in p.events]
    assert names.index("pool-ready") < names.index("prepare_account") < \
        names.index("reprovisiondata") < names.index("create_user")
    assert names.count("prepare_account") == 1


def test_what_the_wait_wrote_is_synced_before_the_customer_is_known():
    # So that the sync before the customer's Ready has only the customer's account left.
    p = PoolPlatform(answers=[(404, b""), (200, CUSTOMER)])
    m = SharedTimeline(p)
    assert boot(p, m).provisioned
    names = [e[0] if e[0] != "machine" else e[1] for e in p.events]
    assert names.count("write_back") == 1
    assert names.index("prepare_account") < names.index("write_back")
    assert names.index("host_keys") < names.index("write_back") < names.index("reprovisiondata")


def test_a_failed_preparation_is_left_to_the_assignment_and_the_rest_still_prepared():
    p = PoolPlatform(answers=[(200, CUSTOMER)])
    m = SharedTimeline(p, fail_at="prepare_account")
    state = boot(p, m)
    assert state.provisioned and state.failure is None
    # The host keys were still made in the wait (as a new instance's), only checked after.
    assert [e for e in m.events if e[0] == "host_keys"] == [("host_keys", True),
                                                            ("host_keys", False)]


def test_an_ordinary_vm_prepares_nothing():
    m = FakeMachine()
    assert boot(FakePlatform(), m).provisioned
    assert ("prepare_account",) not in m.events
