"""The provisioning flow's ordering rules, with fake seams.

Which report is sent when, to which wireserver, what reaches KVP, what each
failing step leaves behind (nothing), and that an outcome goes out once.
"""

from __future__ import annotations

import base64
import json
from contextlib import contextmanager

import pytest

from cloudinit_azure import apply, deferred, flow
from cloudinit_azure.certificates import CertificateKeys
from cloudinit_azure.flowstate import FlowConfig, Link, Media
from cloudinit_azure.health import Outcome
from cloudinit_azure.imds import parse_instance_metadata
from cloudinit_azure.report import (
    DhcpError,
    ImdsError,
    MediaUnreadableError,
    WireserverError,
    decode_report,
)
from tests.fakes import openssl_runner

UUID = "6bd2a1c7-3f0e-4b8a-9c51-2d7e8f4a1b30"
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL8T2XkRHWuLWH8ZeEvdQNcpuUOskXzqOUzOPG02ufb0 "
       "azureuser@sim")
FP = "AB" * 20
WA = "http://schemas.microsoft.com/windowsazure"


def ovf_bytes(*, username="azureuser", password=None, key_pairs=(), custom=None) -> bytes:
    parts = ["<HostName>vm1</HostName>", f"<UserName>{username}</UserName>"]
    if password:
        parts.append(f"<UserPassword>{password}</UserPassword>")
    kps = "".join(f"<KeyPair><Fingerprint>{f}</Fingerprint><Path>{p}</Path></KeyPair>"
                  for f, p in key_pairs)
    parts.append("<SSH><PublicKeys><PublicKey><Fingerprint></Fingerprint><Path>/p</Path>"
                 f"<Value>{KEY}</Value></PublicKey></PublicKeys><KeyPairs>{kps}</KeyPairs>"
                 "</SSH>")
    if custom is not None:
        parts.append(f"<CustomData>{base64.b64encode(custom).decode()}</CustomData>")
    return (f'<Environment xmlns="http://schemas.dmtf.org/ovf/environment/1">'
            f'<ProvisioningSection xmlns="{WA}"><LinuxProvisioningConfigurationSet>'
            f'{"".join(parts)}</LinuxProvisioningConfigurationSet></ProvisioningSection>'
            "</Environment>").encode()


def imds(admin="azureuser", keys=(KEY,)):
    doc = {"compute": {"vmId": UUID, "osProfile": {"computerName": "vm1",
                                                   "adminUsername": admin,
                                                   "disablePasswordAuthentication": "true"},
                       "publicKeys": [{"keyData": k, "path": "/p"} for k in keys]},
           "network": {"interface": []}}
    return parse_instance_metadata(json.dumps(doc).encode())


class FakePlatform:
    def __init__(self, *, media=None, option_245="10.1.2.3", dhcp_error=None,
                 metadata=None, imds_error=None, health_failures=0, outbox=None,
                 attempted=False, certs=None):
        self.events: list[tuple] = []
        self.media = Media("device", "/dev/sr0", ovf_bytes()) if media is None else media
        self.option_245 = option_245
        self.dhcp_error = dhcp_error
        self.metadata = metadata if metadata is not None else imds()
        self.imds_error = imds_error
        self.health_failures = health_failures
        self.outbox = {} if outbox is None else outbox
        self.attempted = attempted
        self.certs = certs or CertificateKeys()
        self.handoffs: list = []

    def read_media(self):
        self.events.append(("media",))
        if isinstance(self.media, Exception):
            raise self.media
        return self.media or None

    def cache_ovf(self, redacted):
        self.events.append(("cache", b"REDACTED" in redacted or b"UserPassword" not in
                            redacted))

    def hand_off(self, handoff):
        self.handoffs.append(handoff)

    @contextmanager
    def network(self):
        if self.dhcp_error:
            raise self.dhcp_error
        self.events.append(("dhcp-up",))
        try:
            yield Link("00:0d:3a:00:00:01", "hv_netvsc", self.option_245)
        finally:
            self.events.append(("dhcp-down",))

    def instance_metadata(self):
        self.events.append(("imds",))
        if self.imds_error:
            raise self.imds_error
        return self.metadata

    def certificate_keys(self, wireserver, private):
        self.events.append(("certificates", wireserver, private))
        return self.certs

    def report_health(self, wireserver, description, budget_s):
        state = "Ready" if description is None else "ProvisioningFailed"
        if self.health_failures:
            self.health_failures -= 1
            self.events.append(("health-failed", wireserver, state))
            raise WireserverError(status=503)
        self.events.append(("health", wireserver, state, description))

    def kvp(self, key, value):
        self.events.append(("kvp", key, value))

    def outcome(self, iid):
        return self.outbox.get(iid)

    def remember(self, iid, outcome):
        self.attempted = True
        self.outbox[iid] = outcome

    def attempted_this_boot(self, iid):
        return self.attempted

    def eject(self, device):
        self.events.append(("eject", device))

    # views
    def health(self):
        return [e for e in self.events if e[0] == "health"]

    def reports(self):
        return [decode_report(e[2]) for e in self.events
                if e[0] == "kvp" and e[1] == "PROVISIONING_REPORT"]

    def phases(self):
        return [e[1] for e in self.events if e[0] == "kvp" and e[1] != "PROVISIONING_REPORT"]


class FakeMachine:
    def __init__(self, *, fail_at=None, blocker=None, users=None, drop_in=True):
        self.runner = openssl_runner()
        self.events: list[tuple] = []
        self.fail_at = fail_at
        self.blocker = blocker
        self.users = dict(users or {})
        self.drop_in = drop_in

    def _step(self, name, *args):
        self.events.append((name, *args))
        if self.fail_at == name:
            raise OSError(f"{name} broke")

    def existing_users(self):
        return dict(self.users)

    def home_dir(self, username):
        return f"/home/{username}"

    def account_blocker(self, home):
        return self.blocker

    def prepare_account(self):
        self._step("prepare_account")

    def create_user(self, plan):
        self.users[plan.username] = 1000
        self._step("create_user", plan.username)

    def remove_user(self, name):
        self.users.pop(name, None)
        self.events.append(("remove_user", name))

    def set_password_auth(self, allow):
        self._step("password_auth", allow)

    def password_auth_in_drop_in(self):
        return self.drop_in

    def install_key_pairs(self, username, files):
        self._step("key_pairs", tuple(f.path for f in files))

    def stage_key_pairs(self, files):
        self.events.append(("stage", tuple(f.path for f in files)))

    def generate_host_keys(self, new_instance):
        self._step("host_keys", new_instance)
        return ("/etc/ssh/ssh_host_ed25519_key",)

    def set_hostname(self, hostname):
        self._step("hostname", hostname)


def boot(platform, machine, config=FlowConfig(), **kw):
    """One flow run; a pool VM's side-by-side steps in turn (one order to assert;
    test_apply.py runs them in threads)."""
    kw.setdefault("system_uuid", UUID)
    kw.setdefault("together", apply.in_turn)
    return flow.run(platform, machine, config, **kw)


def test_ready_after_the_account_host_keys_and_host_name_then_clean_up():
    p, m = FakePlatform(), FakeMachine()
    state = boot(p, m)
    assert state.provisioned and state.failure is None
    assert state.ready_from == "init-local"
    # Not a pool VM: one step after the other, in the order they always had.
    assert [e[0] for e in m.events] == ["create_user", "password_auth", "key_pairs",
                                        "host_keys", "hostname"]
    assert ("password_auth", False) in m.events  # IMDS: disablePasswordAuthentication
    order = [e[0] for e in p.events if e[0] != "kvp"]
    assert order == ["media", "cache", "dhcp-up", "imds", "health", "eject", "dhcp-down"]
    assert p.health() == [("health", "10.1.2.3", "Ready", None)]  # option 245 used
    assert [r["result"] for r in p.reports()] == ["success"]
    assert p.outbox[UUID] == Outcome("ready", True)
    assert state.host_keys == ("/etc/ssh/ssh_host_ed25519_key",)
    assert state.link.mac == "00:0d:3a:00:00:01" and state.wireserver == "10.1.2.3"


def test_one_kvp_diagnostic_per_phase_with_outcome_and_duration():
    p = FakePlatform()
    state = boot(p, FakeMachine())
    assert p.phases() == ["media", "dhcp", "imds", "certificates", "plan", "account",
                          "host", "ready"]
    assert [ph.name for ph in state.phases] == p.phases()
    values = [e[2] for e in p.events if e[0] == "kvp" and e[1] == "imds"]
    assert values[0].startswith("imds: ok in ") and " s (vm " in values[0]
    assert all(len(e[2]) <= 300 for e in p.events if e[0] == "kvp" and e[1] != "report")


@pytest.mark.parametrize("configured, option, expected", [
    ("10.9.9.9", "10.1.2.3", "10.9.9.9"),  # configuration wins
    (None, "10.1.2.3", "10.1.2.3"),  # then DHCP option 245
    (None, None, "168.63.129.16"),  # then the well-known address
    (None, "0.0.0.0", "168.63.129.16"),  # an unusable option is no option
])
def test_the_wireserver_address(configured, option, expected):
    p = FakePlatform(option_245=option)
    boot(p, FakeMachine(), FlowConfig(wireserver=configured))
    assert p.health()[0][1] == expected


@pytest.mark.parametrize("fail_at, step", [
    ("create_user", "user"),
    ("password_auth", "password authentication"),
    ("key_pairs", "key pairs"),
])
def test_a_failed_account_step_removes_the_user_and_names_the_step(fail_at, step):
    p = FakePlatform(media=Media("seed", "/s", ovf_bytes(password="Secret-1x")))
    m = FakeMachine(fail_at=fail_at)
    state = boot(p, m)
    assert not state.provisioned
    assert state.failure == "error applying provisioning"
    assert m.events[-1] == ("remove_user", "azureuser")
    assert "azureuser" not in m.users
    [health] = p.health()
    assert health[2] == "ProvisioningFailed"
    assert decode_report(health[3])["step"] == step
    assert [r["result"] for r in p.reports()] == ["error"]
    assert not any(e[0] == "health" and e[2] == "Ready" for e in p.events)
    assert not any(e[0] == "host_keys" for e in m.events)  # nothing after a failure


def test_an_existing_user_is_not_removed_when_its_update_fails():
    m = FakeMachine(fail_at="create_user", users={"azureuser": 1000})
    boot(FakePlatform(), m)
    assert ("remove_user", "azureuser") not in m.events


@pytest.mark.parametrize("fail_at", ["host_keys", "hostname"])
def test_host_steps_failing_end_in_one_failure_and_no_ready(fail_at):
    p = FakePlatform()
    state = boot(p, FakeMachine(fail_at=fail_at))
    [health] = p.health()
    assert health[2] == "ProvisioningFailed"
    assert state.failure == "error applying provisioning"
    assert decode_report(health[3])["step"].startswith("host ")


def test_a_media_error_is_reported_once_the_network_is_up():
    p = FakePlatform(media=MediaUnreadableError(device="/dev/sr0"))
    m = FakeMachine()
    state = boot(p, m)
    assert state.failure == "unreadable media" and m.events == []
    assert [e[0] for e in p.events if e[0] != "kvp"] == ["media", "dhcp-up", "health",
                                                          "dhcp-down"]


def test_a_broken_ovf_is_a_failure_and_nothing_is_applied():
    p = FakePlatform(media=Media("device", "/dev/sr0", b"<Environment><bad"))
    m = FakeMachine()
    state = boot(p, m)
    assert "not well-formed" in str(p.reports()[0]) and m.events == []
    assert not any(e[0] == "imds" for e in p.events)
    assert not state.provisioned


def test_a_settings_error_is_reported_to_the_default_wireserver_and_kvp():
    from cloudinit_azure.report import ConfigError

    p = FakePlatform(option_245=None)
    m = FakeMachine()
    state = boot(p, m, settings_error=ConfigError(
        key="datasource.Azure.imds_deadline_s", problem="'soon' is not of type 'number'"))
    [health] = p.health()
    assert health[1] == "168.63.129.16"
    assert decode_report(health[3])["key"] == "datasource.Azure.imds_deadline_s"
    assert p.reports()[0]["result"] == "error"
    assert state.failure and m.events == [] and ("media",) not in p.events


def test_no_network_writes_kvp_and_leaves_the_failure_pending():
    p = FakePlatform(dhcp_error=DhcpError(detail="no DHCP lease"))
    state = boot(p, FakeMachine())
    assert state.failure == "error obtaining DHCP lease" or "DHCP" in state.failure
    assert p.health() == [] and p.reports()[0]["result"] == "error"
    assert p.outbox[UUID].state == "failed" and not p.outbox[UUID].delivered


def test_an_undelivered_failure_is_delivered_on_the_next_boot_exactly_once():
    outbox = {}
    first = FakePlatform(media=Media("seed", "/s", b"<bad"), health_failures=99,
                         outbox=outbox)
    boot(first, FakeMachine())
    assert first.health() == [] and outbox[UUID].delivered is False
    second = FakePlatform(outbox=outbox)
    m = FakeMachine()
    state = boot(second, m)
    assert [h[2] for h in second.health()] == ["ProvisioningFailed"]
    assert second.health()[0][3] == outbox[UUID].description
    assert outbox[UUID].delivered and m.events == [] and not state.provisioned
    assert second.reports() == []  # the KVP report was written when it was decided
    third = FakePlatform(outbox=outbox)
    boot(third, FakeMachine())
    assert third.health() == [] and ("dhcp-up",) not in third.events


def test_an_undelivered_ready_is_delivered_by_azure_ready_on_the_next_boot_only():
    outbox = {}
    first = FakePlatform(health_failures=99, outbox=outbox)
    state = boot(first, FakeMachine())
    assert state.provisioned and outbox[UUID] == Outcome("ready", False)
    # Later in the same boot: init-local already tried; azure_ready does not retry.
    assert deferred.after_init_local(state, first, FakeMachine(), FlowConfig()) is None
    second = FakePlatform(outbox=outbox)  # next boot: fresh /run
    assert deferred.after_init_local(state, second, FakeMachine(), FlowConfig()) == \
        "delivered"
    assert [h[2] for h in second.health()] == ["Ready"] and outbox[UUID].delivered
    third = FakePlatform(outbox=outbox)
    assert deferred.after_init_local(state, third, FakeMachine(), FlowConfig()) is None
    assert third.health() == []


def test_never_ready_after_a_failure_and_never_twice():
    outbox = {UUID: Outcome("ready", True)}
    p = FakePlatform(outbox=outbox)
    state = boot(p, FakeMachine(), previous_instance_id=UUID)
    assert state.provisioned and p.health() == []  # re-run of a reported instance
    p = FakePlatform(outbox=outbox, imds_error=ImdsError(status=403), media=False)
    boot(p, FakeMachine(), previous_instance_id=UUID)
    assert p.health() == [] and p.reports() == []  # no second outcome


def test_a_lost_instance_id_file_does_not_make_a_reported_instance_new():
    # A power cut after Ready lost cloud-init's unsynced instance-id file: the
    # outbox still knows the instance, so its host keys must not be replaced.
    m = FakeMachine()
    boot(FakePlatform(outbox={UUID: Outcome("ready", True)}), m, previous_instance_id=None)
    assert ("host_keys", False) in m.events
    m = FakeMachine()
    boot(FakePlatform(), m, previous_instance_id=None)
    assert ("host_keys", True) in m.events


def test_imds_hard_failure_with_a_complete_ovf_provisions_from_the_ovf():
    p = FakePlatform(imds_error=ImdsError(status=403))
    state = boot(p, FakeMachine())
    assert state.provisioned and state.imds_network is None
    assert "403" in state.imds_problem
    assert [h[2] for h in p.health()] == ["Ready"]
    imds_kvp = [e[2] for e in p.events if e[0] == "kvp" and e[1] == "imds"]
    assert imds_kvp[0].startswith("imds: fallback") and "403" in imds_kvp[0]


def test_imds_failure_without_media_fails_with_the_imds_reason():
    p = FakePlatform(media=False, imds_error=ImdsError(status=403))
    state = boot(p, FakeMachine())
    assert state.failure == "error communicating with IMDS"
    decoded = decode_report(p.health()[0][3])
    assert (decoded["reason"], decoded["status"]) == ("error communicating with IMDS", "403")


def test_imds_only_boot_logs_no_warning(caplog):
    p = FakePlatform(media=False)
    with caplog.at_level("INFO"):
        state = boot(p, FakeMachine())
    assert state.provisioned and state.media_kind is None
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("IMDS only" in r.getMessage() for r in caplog.records)


def test_deferred_account_stages_key_pairs_and_azure_ready_sends_ready():
    certs = CertificateKeys({FP: "ssh-rsa AAAA x"}, {FP: b"PRIVATE"})
    media = Media("device", "/dev/sr0",
                  ovf_bytes(key_pairs=[(FP, "$HOME/azureuser/.ssh/id_rsa")]))
    p = FakePlatform(media=media, certs=certs)
    m = FakeMachine(blocker="/home (in fstab) is not mounted yet")
    state = boot(p, m)
    assert state.provisioned and state.ready_from == "azure_ready"
    assert m.events == [("stage", ("/home/azureuser/.ssh/id_rsa",))]
    assert p.health() == [] and ("eject", "/dev/sr0") not in p.events
    later = FakePlatform(outbox=p.outbox, attempted=True)  # same boot, init stage
    m2 = FakeMachine()
    assert deferred.after_init_local(state, later, m2, FlowConfig()) == "delivered"
    assert m2.events == [("password_auth", False),
                         ("key_pairs", ("/home/azureuser/.ssh/id_rsa",))]
    assert [h[2] for h in later.health()] == ["Ready"] and ("eject", "/dev/sr0") in \
        later.events
    assert later.phases() == ["ready"]  # its own KVP diagnostic


def test_deferred_password_vm_allows_passwords_before_ready():
    p = FakePlatform(media=Media("seed", "/s", ovf_bytes(password="Secret-1x")),
                     metadata=imds(keys=()))
    state = boot(p, FakeMachine(blocker="x"))
    later = FakePlatform(outbox=p.outbox, attempted=True)
    m = FakeMachine()
    deferred.after_init_local(state, later, m, FlowConfig())
    assert m.events[0] == ("password_auth", False)  # IMDS says disabled: explicit flag


def test_password_vm_sets_sshd_before_ready():
    imds_doc = imds(keys=())
    p = FakePlatform(media=Media("seed", "/s", ovf_bytes(password="Secret-1x")),
                     metadata=imds_doc)
    m = FakeMachine()
    boot(p, m)
    assert [e[0] for e in m.events] == ["create_user", "password_auth", "key_pairs",
                                        "host_keys", "hostname"]


def test_key_pair_outside_the_home_fails_before_anything_is_applied():
    certs = CertificateKeys({FP: "ssh-rsa AAAA x"}, {FP: b"PRIVATE"})
    p = FakePlatform(media=Media("seed", "/s", ovf_bytes(key_pairs=[(FP, "/etc/x")])),
                     certs=certs)
    m = FakeMachine()
    state = boot(p, m)
    assert state.failure == "key pair path outside the user's home" and m.events == []
    assert ("certificates", "10.1.2.3", True) in p.events


def test_a_bug_in_a_step_still_ends_in_a_failure_report():
    class Broken(FakePlatform):
        def instance_metadata(self):
            raise KeyError("oops")

    p = Broken()
    state = boot(p, FakeMachine())
    assert state.failure == "unexpected error"
    [health] = p.health()
    assert health[2] == "ProvisioningFailed"
    decoded = decode_report(health[3])
    assert (decoded["where"], decoded["exception"]) == ("provisioning", "KeyError")


def test_a_report_that_cannot_even_be_rendered_stays_pending_instead_of_escaping():
    class Unrenderable(FakePlatform):
        def report_health(self, wireserver, description, budget_s):
            raise ValueError("cannot encode")

    p = Unrenderable()
    state = boot(p, FakeMachine())
    assert state.provisioned and p.outbox[UUID] == Outcome("ready", False)
    assert [e[2] for e in p.events if e[0] == "kvp" and e[1] == "ready"][0].startswith(
        "ready: failed")


@pytest.mark.parametrize("policy, password, rule", [
    ("auto", None, "ALL=(ALL) NOPASSWD:ALL"),  # key-only: no password to type
    ("auto", "Secret-1x", "ALL=(ALL) ALL"),  # sudo asks for the given password
    ("nopasswd", "Secret-1x", "ALL=(ALL) NOPASSWD:ALL"),
])
def test_the_sudo_setting_reaches_the_account(policy, password, rule):
    p = FakePlatform(media=Media("seed", "/s", ovf_bytes(password=password)))
    state = boot(p, FakeMachine(), FlowConfig(sudo=policy))
    assert state.provisioning.config["system_info"]["default_user"]["sudo"] == [rule]
