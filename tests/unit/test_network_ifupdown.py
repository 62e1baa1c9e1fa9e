"""network.ifupdown: Debian 12's platform routes survive a reboot without net-tools."""

import logging
import os
import stat
import subprocess

import pytest

from cloudinit_azure.network import ifupdown
from cloudinit_azure.network.configure import configure
from cloudinit_azure.network.routes import Route
from tests.fakes import FakeRunner, Kills

ROUTES = [Route("168.63.129.16/32", "10.0.0.1", "eth0"),
          Route("169.254.169.254/32", "10.0.0.1", "eth0")]
LOG = logging.getLogger("test")


def _debian12(root):
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text("source /etc/network/interfaces.d/*\n")
    (root / "sbin").mkdir()
    (root / "sbin/ifup").write_text("")
    return root


def test_the_hook_replaces_each_route_on_its_nic_only(tmp_path):
    """Run for real with a fake ``ip`` on PATH: what ifup would do at boot."""
    root = _debian12(tmp_path / "root")
    path = ifupdown.persist_routes(root, "eth0", ROUTES, LOG)
    assert path == root / ifupdown.IFUP_HOOK
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls"
    (bindir / "ip").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bindir / "ip").chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    for iface in ("lo", "eth1", "--all"):
        assert subprocess.run([str(path)], env={**env, "IFACE": iface}).returncode == 0
    assert not calls.exists()
    assert subprocess.run([str(path)], env={**env, "IFACE": "eth0"}).returncode == 0
    assert calls.read_text().splitlines() == [
        "route replace 168.63.129.16/32 via 10.0.0.1 dev eth0",
        "route replace 169.254.169.254/32 via 10.0.0.1 dev eth0"]


def test_written_once_and_only_where_ifupdown_runs(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    root = _debian12(tmp_path / "root")
    ifupdown.persist_routes(root, "eth0", ROUTES, LOG)
    ifupdown.persist_routes(root, "eth0", ROUTES, LOG)
    assert "(written)" in caplog.text and "(unchanged)" in caplog.text
    assert ifupdown.persist_routes(root, "eth0", [], LOG) is None
    bare = tmp_path / "networkd"
    bare.mkdir()
    assert ifupdown.persist_routes(bare, "eth0", ROUTES, LOG) is None
    assert not (bare / "etc").exists()


def test_nothing_a_shell_would_read_reaches_the_hook():
    with pytest.raises(ValueError):
        ifupdown.hook_text("eth0;reboot", ROUTES)
    with pytest.raises(ValueError):
        ifupdown.hook_text("eth0", [Route("1.2.3.4/32", "$(id)", "eth0")])


def test_configure_writes_the_hook_with_ifupdown_and_dhclient(tmp_path):
    root = _debian12(tmp_path)
    net = root / "sys/class/net/eth0"
    net.mkdir(parents=True)
    (net / "address").write_text("00:0d:3a:00:00:01\n")
    (net / "ifindex").write_text("2\n")
    (net / "type").write_text("1\n")
    (root / "var/lib/dhcp").mkdir(parents=True)
    (root / "var/lib/dhcp/dhclient.eth0.leases").write_text(
        "lease {\n  interface \"eth0\";\n  fixed-address 10.0.0.4;\n"
        "  option routers 10.0.0.1;\n  option unknown-245 a8:3f:81:10;\n}\n")
    (root / "sbin/dhclient").write_text("")
    settings = {"publish_hostname": {"enabled": False}, "mask_persistent_net_rules": False}
    configure(settings, root=root, runner=FakeRunner(), hostname=None, log=LOG,
              kill=Kills())
    hook = (root / ifupdown.IFUP_HOOK).read_text()
    assert "ip route replace 168.63.129.16/32 via 10.0.0.1 dev eth0" in hook
    assert os.access(root / ifupdown.IFUP_HOOK, os.X_OK)
