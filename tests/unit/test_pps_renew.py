"""The preprovisioning wait's lease renewal after a vnet switch (reuse.renew_in_place).

The old lease stays applied while the client runs; the same lease keeps its
configuration (no ``ip`` run at all), another replaces it. The fake runner of
test_ephemeral plays dhclient and ip(8); nothing touches the host network.
"""

from __future__ import annotations

import signal
from pathlib import Path

from cloudinit_azure.reuse import forget_unplugged, renew_in_place
from tests.unit.test_ephemeral import (
    DHCLIENT_LEASE,
    FakeClock,
    FakeRunner,
    _dhcp,
    _exe,
    _nic,
)

ADDR = ["ip", "-4", "addr", "add", "10.0.0.4/24", "broadcast", "10.0.0.255", "dev", "eth0"]


def _leased(tmp_path: Path):
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=False)
    runner = FakeRunner(tmp_path)
    dhcp, kills = _dhcp(tmp_path, runner, clock=FakeClock(0.25))
    dhcp.__enter__()
    runner.calls.clear()
    runner.pid = 4343  # the renewal's dhclient
    return dhcp, runner, kills


def test_the_same_lease_keeps_the_configuration(tmp_path: Path) -> None:
    dhcp, runner, kills = _leased(tmp_path)
    old = dhcp.lease
    lease = renew_in_place(dhcp)
    # One client run, not a single ip(8) command: nothing removed, nothing added.
    assert [c[0] for c in runner.calls] == [str(tmp_path / "usr/sbin/dhclient")]
    # The new dhclient is the one stopped, not the first run's (its pid file is gone).
    assert kills.calls == [(4242, signal.SIGTERM), (4343, signal.SIGTERM)]
    assert len(list((tmp_path / "run/cloudinit-azure").iterdir())) == 1
    assert lease.address == old.address and dhcp.lease is lease
    # The teardown still undoes exactly what the first set-up added.
    runner.calls.clear()
    dhcp.__exit__(None, None, None)
    assert runner.ip_calls()[-1] == ["ip", "link", "set", "dev", "eth0", "down"]
    assert ["ip", "-4", "addr", "del", "10.0.0.4/24", "dev", "eth0"] in runner.ip_calls()


def test_a_new_address_replaces_the_old_configuration(tmp_path: Path) -> None:
    dhcp, runner, _kills = _leased(tmp_path)
    runner.lease = DHCLIENT_LEASE.replace("10.0.0.4", "10.1.0.9").replace(
        "10.0.0.1", "10.1.0.1")
    lease = renew_in_place(dhcp)
    assert lease.address == "10.1.0.9"
    ip = runner.ip_calls()
    # The old one undone in reverse (the link last), then the link and the new lease.
    assert ["ip", "-4", "addr", "del", "10.0.0.4/24", "dev", "eth0"] in ip
    first_new = ip.index(["ip", "link", "set", "dev", "eth0", "up"])
    assert ip[first_new - 1] == ["ip", "link", "set", "dev", "eth0", "down"]
    assert ip[first_new + 1][:5] == ["ip", "-4", "addr", "add", "10.1.0.9/24"]
    assert not any("10.1.0" in " ".join(c) for c in ip[:first_new])
    runner.calls.clear()
    dhcp.__exit__(None, None, None)
    assert ["ip", "-4", "addr", "del", "10.1.0.9/24", "dev", "eth0"] in runner.ip_calls()
    assert not any("10.0.0.4" in " ".join(c) for c in runner.ip_calls())


def test_no_lease_yet_is_a_fresh_lease(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=True)
    runner = FakeRunner(tmp_path)
    dhcp, _ = _dhcp(tmp_path, runner)
    lease = renew_in_place(dhcp)
    assert lease.address == "10.0.0.4"
    assert ADDR in runner.ip_calls()
    dhcp.__exit__(None, None, None)


def test_a_failed_client_run_cleans_up(tmp_path: Path) -> None:
    dhcp, runner, _kills = _leased(tmp_path)
    runner.client_rc = 2
    try:
        renew_in_place(dhcp)
    except Exception as exc:
        assert type(exc).__name__ == "DhcpError"
    else:
        raise AssertionError("a failed renewal must raise")
    # Everything the first lease added is undone; no private directory left.
    assert ["ip", "-4", "addr", "del", "10.0.0.4/24", "dev", "eth0"] in runner.ip_calls()
    assert not list((tmp_path / "run/cloudinit-azure").iterdir())


def test_an_unplugged_nics_lease_is_dropped_without_ip_runs(tmp_path: Path) -> None:
    dhcp, runner, kills = _leased(tmp_path)
    forget_unplugged(dhcp)
    dhcp.__exit__(None, None, None)
    # Its address, routes and link state went with the NIC: no ip(8) run at all,
    # and the private directory is still removed.
    assert runner.ip_calls() == []
    assert not list((tmp_path / "run/cloudinit-azure").iterdir())
