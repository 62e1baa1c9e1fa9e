"""A pool VM's customer: the account's and the host's steps side by side, in real
threads, the flow's rules kept; any other first boot: one step after the other.

Each test that claims concurrency proves it (a step waits for a step of the
other branch, which can only happen if both run at once); none measures time.
"""

from __future__ import annotations

import logging
import threading

import pytest

from cloudinit_azure import apply, flow
from cloudinit_azure.flowstate import FlowConfig
from cloudinit_azure.report import decode_report
from tests.unit.test_flow import UUID, FakeMachine, FakePlatform
from tests.unit.test_pps_flow import CUSTOMER, PoolPlatform

WAIT = 10.0  # seconds: only reached when the steps do not run side by side


def threaded_boot(platform, machine):
    return flow.run(platform, machine, FlowConfig(), system_uuid=UUID,
                    together=apply.in_threads)


def pool() -> PoolPlatform:
    """A Running pool VM whose customer (alice) is assigned at the first poll."""
    return PoolPlatform(answers=[(200, CUSTOMER)])


def after_assignment(platform) -> list[str]:
    """The machine's steps and the platform's events from the customer's document on."""
    names = [e[1] if e[0] == "machine" else e[0] for e in platform.events]
    return names[names.index("reprovisiondata"):]


class Overlapping(FakeMachine):
    """``create_user`` finishes only once the host name is set: proof of overlap."""

    def __init__(self, platform, **kw):
        super().__init__(**kw)
        self.platform = platform
        self.hostname_set = threading.Event()
        self.threads: dict[str, str] = {}

    def _step(self, name, *args):
        # The thread's name (unique per run; an ident is reused once a thread ended).
        self.threads[name] = threading.current_thread().name  # the last run of a step
        self.platform.events.append(("machine", name))
        super()._step(name, *args)

    def create_user(self, plan):
        assert self.hostname_set.wait(WAIT), "the host's steps did not run beside useradd"
        super().create_user(plan)

    def set_hostname(self, hostname):
        try:
            super().set_hostname(hostname)
        finally:
            self.hostname_set.set()


def test_in_threads_runs_every_job_at_once_and_returns_after_all():
    barrier = threading.Barrier(3, timeout=WAIT)
    done = []

    def job(i):
        def run():
            barrier.wait()  # broken (BrokenBarrierError) unless all three run at once
            done.append(i)
        return run

    apply.in_threads([job(0), job(1), job(2)])
    assert sorted(done) == [0, 1, 2]


def test_the_first_failure_in_step_order_wins_and_each_branch_stops_at_its_own():
    later_started = threading.Event()
    ran = []

    def host_keys():
        ran.append("host keys")
        later_started.set()
        raise OSError("keygen broke")  # fails first in time ...

    def user():
        assert later_started.wait(WAIT)
        ran.append("user")
        raise OSError("useradd broke")  # ... but "user" comes first in the order

    account = apply.Branch("account", [("user", user), ("key pairs", lambda: ran.append("kp"))])
    host = apply.Branch("host", [("host keys", host_keys),
                                 ("host name", lambda: ran.append("hn"))])
    step, exc = apply.run_branches([account, host], apply.in_threads, clock=lambda: 0.0)
    assert (step, str(exc)) == ("user", "useradd broke")
    assert sorted(ran) == ["host keys", "user"]  # neither branch went past its failure
    assert account.failed[0] == "user" and host.failed[0] == "host keys"


def test_a_second_failure_is_logged_not_reported(caplog):
    def boom():
        raise OSError("x")

    branches = [apply.Branch("account", [("key pairs", boom)]),
                apply.Branch("host", [("host name", boom)])]
    with caplog.at_level(logging.ERROR):
        assert apply.run_branches(branches, apply.in_turn, lambda: 0.0)[0] == "key pairs"
    assert any("host name also failed" in r.getMessage() for r in caplog.records)


def test_an_interrupt_in_a_branch_is_raised_after_the_join_not_reported():
    finished = []

    def interrupted():
        raise KeyboardInterrupt

    branches = [apply.Branch("account", [("user", interrupted)]),
                apply.Branch("host", [("host name", lambda: finished.append(1))])]
    with pytest.raises(KeyboardInterrupt):
        apply.run_branches(branches, apply.in_threads, lambda: 0.0)
    assert finished == [1]


def test_a_pool_customer_gets_the_host_beside_the_account_and_ready_after_both():
    p = pool()
    m = Overlapping(p)
    state = threaded_boot(p, m)
    assert state.provisioned
    assert m.threads["create_user"] != m.threads["hostname"]
    assert m.threads["create_user"] == m.threads["key_pairs"]  # keys after their user
    # The keys made while waiting are only checked, beside the account, after sshd's
    # setting; the host name in a thread of its own.
    assert m.threads["password_auth"] == m.threads["host_keys"]
    assert len({m.threads[s] for s in ("create_user", "password_auth", "hostname")}) == 3
    assert m.events.count(("host_keys", False)) == 1
    names = after_assignment(p)
    ready = names.index("health")
    assert all(names.index(step) < ready for step in
               ("create_user", "key_pairs", "password_auth", "host_keys", "hostname"))
    assert names.index("password_auth") < names.index("host_keys")  # sshd first
    phases = {ph.name: ph for ph in state.phases}
    assert phases["account"].outcome == phases["host"].outcome == "ok"


def test_a_pool_customers_new_host_keys_come_once_the_account_is_whole():
    class KeysFailWhileWaiting(Overlapping):
        def generate_host_keys(self, new_instance):
            if not any(e[0] == "host_keys" for e in self.events):
                self.events.append(("host_keys", new_instance))
                raise OSError("no entropy yet")
            return super().generate_host_keys(new_instance)

    p = pool()
    m = KeysFailWhileWaiting(p)
    assert threaded_boot(p, m).provisioned
    names = after_assignment(p)
    # Made after the assignment, as a new instance's: after the user, its keys and the
    # host name (a power cut in ssh-keygen never lands inside useradd), before Ready.
    assert [e for e in m.events if e[0] == "host_keys"] == [("host_keys", True)] * 2
    assert names.index("key_pairs") < names.index("host_keys") < names.index("health")
    assert names.index("hostname") < names.index("host_keys")


def test_the_host_name_waits_for_no_other_step():
    class SshdAfterName(Overlapping):
        def set_password_auth(self, allow):
            assert self.hostname_set.wait(WAIT), "the host name waited for sshd's setting"
            super().set_password_auth(allow)

    p = pool()
    m = SshdAfterName(p)
    assert threaded_boot(p, m).provisioned  # useradd and sshd both wait for the name


def test_sshd_setting_into_sshd_config_itself_stays_in_the_account_branch():
    p = pool()
    m = Overlapping(p, drop_in=False)
    assert threaded_boot(p, m).provisioned
    assert m.threads["password_auth"] == m.threads["create_user"] == m.threads["key_pairs"]
    order = after_assignment(p)
    assert order.index("create_user") < order.index("password_auth") < \
        order.index("key_pairs")


def test_a_host_failure_waits_for_the_account_and_gives_one_failure_report():
    p = pool()
    m = Overlapping(p, fail_at="hostname")
    state = threaded_boot(p, m)
    assert state.failure == "error applying provisioning"
    [health] = [h for h in p.health() if h[2] != "Ready" or h[3]]
    assert health[2] == "ProvisioningFailed"
    assert decode_report(health[3])["step"] == "host name"
    # The report went out only after the account's branch ended (create_user waited).
    names = after_assignment(p)
    assert names.index("key_pairs") < names.index("health")
    assert ("remove_user", "alice") not in m.events  # the account itself is whole
    phases = {ph.name: (ph.outcome, ph.detail) for ph in state.phases}
    assert phases["account"] == ("ok", "alice")
    assert phases["host"] == ("failed", "host name")


def test_sshd_failing_beside_useradd_removes_the_user_once_it_exists():
    p = pool()
    m = Overlapping(p, fail_at="password_auth")
    state = threaded_boot(p, m)
    assert state.failure == "error applying provisioning"
    assert decode_report(p.health()[-1][3])["step"] == "password authentication"
    # Removed after both branches stopped, i.e. after the user and its keys were made.
    assert m.events[-1] == ("remove_user", "alice") and "alice" not in m.users
    assert ("key_pairs", ()) in m.events
    assert "Ready" not in [e[2] for e in p.events[p.events.index(("reprovisiondata", 200)):]
                           if e[0] == "health"]


class Recording(FakeMachine):
    """Which thread ran each step, in the order they ran."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.threads: list[tuple[str, int]] = []

    def _step(self, name, *args):
        self.threads.append((name, threading.get_ident()))
        super()._step(name, *args)


def test_an_ordinary_first_boot_runs_every_step_in_turn_in_the_flows_thread():
    # Side by side only for a pool VM's customer: any other VM keeps the one order,
    # even with threads at hand.
    m = Recording()
    assert threaded_boot(FakePlatform(), m).provisioned
    assert [name for name, _ in m.threads] == ["create_user", "password_auth", "key_pairs",
                                               "host_keys", "hostname"]
    assert {ident for _, ident in m.threads} == {threading.get_ident()}


def test_an_ordinary_first_boots_failed_account_stops_before_the_host():
    m = Recording(fail_at="key_pairs")
    state = threaded_boot(FakePlatform(), m)
    assert state.failure == "error applying provisioning"
    assert [name for name, _ in m.threads] == ["create_user", "password_auth", "key_pairs"]
    assert m.events[-1] == ("remove_user", "azureuser")
    assert [ph.name for ph in state.phases if ph.name in ("account", "host")] == ["account"]
