"""Ephemeral DHCP: client choice, command lines, lease parsing, setup/teardown.

A fake runner answers like dhclient/udhcpc/dhcpcd would (writing the lease
file, pid file or running the generated udhcpc/dhcpcd script with a lease's
environment); nothing here touches the host network.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest

from cloudinit_azure import ephemeral as eph
from cloudinit_azure.report import DhcpError
from cloudinit_azure.runner import Result
from tests import fakes
from tests.fakes import Kills

NIC = "eth0"

# Captured from the real dhclient 4.4.3 with eph.dhclient_config() against dnsmasq.
DHCLIENT_LEASE = """\
lease {
  interface "eth0";
  fixed-address 10.0.0.4;
  option subnet-mask 255.255.255.0;
  option routers 10.0.0.1;
  option dhcp-lease-time 3600;
  option dhcp-message-type 5;
  option domain-name-servers 168.63.129.16;
  option dhcp-server-identifier 10.0.0.1;
  option rfc3442-classless-static-routes 32,168,63,129,16,10,0,0,1,32,169,254,169,254,10,0,0,1;
  option azure-wireserver 168.63.129.16;
  option broadcast-address 10.0.0.255;
  renew 3 2026/11/25 23:38:34;
}
"""

DHCLIENT_LEASE_NO_121 = """\
lease {
  interface "eth0";
  fixed-address 10.0.0.4;
  option subnet-mask 255.255.255.0;
  option routers 10.0.0.1;
  option unknown-245 a8:3f:81:10;
}
"""

# The environment busybox 1.35 udhcpc gave its script in the same setup.
UDHCPC_ENV = {
    "interface": "eth0", "ip": "10.0.0.4", "subnet": "255.255.255.0", "mask": "24",
    "broadcast": "10.0.0.255", "router": "10.0.0.1", "dns": "168.63.129.16",
    "staticroutes": "168.63.129.16/32 10.0.0.1 169.254.169.254/32 10.0.0.1",
    "opt245": "a83f8110", "lease": "3600", "serverid": "10.0.0.1",
}

# The BOUND environment dhcpcd 9.4.1 gave its -c script with eph.dhcpcd_config()
# and --noconfigure against dnsmasq (netns); dnsmasq ran without DNS, so
# new_domain_name_servers is added here.
DHCPCD_ENV = {
    "interface": "eth0", "reason": "BOUND", "protocol": "dhcp", "if_configured": "false",
    "if_up": "true", "if_down": "false", "ifcarrier": "up",
    "new_ip_address": "10.0.0.4", "new_subnet_cidr": "24", "new_subnet_mask": "255.255.255.0",
    "new_broadcast_address": "10.0.0.255", "new_network_number": "10.0.0.0",
    "new_routers": "10.0.0.1",
    "new_classless_static_routes": "168.63.129.16/32 10.0.0.1 169.254.169.254/32 10.0.0.1",
    "new_azure_wireserver": "168.63.129.16", "new_dhcp_lease_time": "3600",
    "new_dhcp_message_type": "5", "new_dhcp_renewal_time": "1800",
    "new_dhcp_rebinding_time": "3150", "new_dhcp_server_identifier": "10.0.0.1",
    "new_domain_name_servers": "168.63.129.16",
}
def _ack() -> bytes:
    """The DHCPACK behind DHCPCD_ENV, as dhcpcd stores it in /var/lib/dhcpcd/eth0.lease."""
    def opt(code: int, *octets: int) -> bytes:
        return bytes([code, len(octets), *octets])

    header = bytes([2, 1, 6, 0]) + bytes(12) + bytes([10, 0, 0, 4]) + bytes(216)
    return (header + b"\x63\x82\x53\x63" + opt(53, 5) + opt(1, 255, 255, 255, 0)
            + opt(3, 10, 0, 0, 1) + opt(6, 168, 63, 129, 16) + opt(28, 10, 0, 0, 255)
            + opt(121, 32, 168, 63, 129, 16, 10, 0, 0, 1, 32, 169, 254, 169, 254, 10, 0, 0, 1)
            + opt(245, 168, 63, 129, 16) + b"\xff")


DHCPCD_ACK = _ack()
DHCPCD_VERSION = "dhcpcd 9.4.1\nCopyright (c) 2006-2021 Roy Marples\n"


# ------------------------------------------------------------- fakes ----


def _exe(path: Path, content: bytes = b"#!/bin/sh\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    path.chmod(0o755)
    return path


def _nic(root: Path, name: str = NIC, *, up: bool = False) -> None:
    d = root / "sys/class/net" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "flags").write_text("0x1003\n" if up else "0x1002\n")


class FakeRunner(fakes.FakeRunner):
    """Plays dhclient, udhcpc and ip(8) (the shared fake records every command line).

    For udhcpc and dhcpcd it runs the hook script the plug-in wrote, as the
    client would; no system program runs.
    """

    def __init__(self, root: Path, *, lease: str = DHCLIENT_LEASE,
                 udhcpc_env: Optional[dict[str, str]] = None, pid: int = 4242,
                 write_pid: bool = True, client_rc: int = 0, client_stderr: str = "",
                 fail: Optional[dict[str, tuple[int, str]]] = None,
                 dhcpcd_env: Optional[dict[str, str]] = None,
                 dhcpcd_version: str = DHCPCD_VERSION,
                 dhcpcd_leaves: tuple[str, ...] = (),
                 dhcpcd_privsep: bool = False) -> None:
        super().__init__()
        self.root = root
        # dhcpcd 10.1 (Debian 13): takes the lease (writes its lease file)
        # but refuses to run our script.
        self.dhcpcd_privsep = dhcpcd_privsep
        self.lease = lease
        self.udhcpc_env = UDHCPC_ENV if udhcpc_env is None else udhcpc_env
        self.dhcpcd_env = DHCPCD_ENV if dhcpcd_env is None else dhcpcd_env
        self.dhcpcd_version = dhcpcd_version
        self.dhcpcd_leaves = dhcpcd_leaves  # /run/dhcpcd files it "forgets" to remove
        self.dhcpcd_saw: dict[str, Any] = {}
        self.pid = pid
        self.write_pid = write_pid
        self.client_rc = client_rc
        self.client_stderr = client_stderr
        self.fail = fail or {}

    @property
    def timeouts(self) -> list[Any]:
        return [kw.get("timeout") for kw in self.kwargs]

    def answer(self, cmd: list[str], kwargs: dict[str, Any]) -> Result:
        name = os.path.basename(cmd[0])
        if name == "busybox":
            name = cmd[1]
        if name == "dhclient":
            return self._dhclient(cmd)
        if name == "udhcpc":
            return self._udhcpc(cmd)
        if name == "dhcpcd" and cmd[1:] == ["--version"]:
            return Result(0, self.dhcpcd_version, "")
        if name == "timeout" and os.path.basename(cmd[4]) == "dhcpcd":
            return self._dhcpcd(cmd)
        for needle, (rc, err) in self.fail.items():
            if needle in " ".join(cmd):
                return Result(rc, "", err)
        return Result(0, "", "")

    def _dhclient(self, cmd: list[str]) -> Result:
        if self.client_rc:
            return Result(self.client_rc, "", self.client_stderr)
        lf, pf = cmd[cmd.index("-lf") + 1], cmd[cmd.index("-pf") + 1]
        Path(lf).write_text(self.lease)
        proc = self.root / "proc" / str(self.pid)
        proc.mkdir(parents=True, exist_ok=True)
        (proc / "cmdline").write_bytes(b"\0".join(a.encode() for a in cmd) + b"\0")
        if self.write_pid:
            Path(pf).write_text(f"{self.pid}\n")
        return Result(0, "", "bound to 10.0.0.4 -- renewal in 1567 seconds.\n")

    def _udhcpc(self, cmd: list[str]) -> Result:
        if self.client_rc:
            return Result(self.client_rc, "", self.client_stderr)
        script = cmd[cmd.index("-s") + 1]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        subprocess.run([script, "deconfig"], env={**env, "interface": NIC}, check=True)
        subprocess.run([script, "bound"], env={**env, **self.udhcpc_env}, check=True)
        return Result(0, "", "udhcpc: lease of 10.0.0.4 obtained\n")

    def _dhcpcd(self, cmd: list[str]) -> Result:
        """Like dhcpcd 9.4.1 -B -1 --noconfigure: script PREINIT, CARRIER, BOUND."""
        lease = self.root / "var/lib/dhcpcd/eth0.lease"
        run_dir = self.root / "run/dhcpcd"
        self.dhcpcd_saw["old_lease"] = lease.exists()
        self.dhcpcd_saw["config"] = Path(cmd[cmd.index("-f") + 1]).read_text()
        if self.client_rc:
            return Result(self.client_rc, "", self.client_stderr)
        for d in (lease.parent, run_dir):
            d.mkdir(parents=True, exist_ok=True)
        for name in ("eth0-4.pid", "eth0-4.sock", "eth0-4.unpriv.sock"):
            (run_dir / name).write_text("")
        script = cmd[cmd.index("-c") + 1]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # dhcpcd clears the rest
        for reason in ("PREINIT", "CARRIER"):
            subprocess.run([script], env={**env, "interface": NIC, "reason": reason}, check=True)
        if self.dhcpcd_env:
            lease.write_bytes(DHCPCD_ACK if self.dhcpcd_privsep else b"\x02\x01\x06 new lease")
            if not self.dhcpcd_privsep:
                subprocess.run([script], env={**env, **self.dhcpcd_env}, check=True)
        for name in ("eth0-4.pid", "eth0-4.sock", "eth0-4.unpriv.sock"):
            if name not in self.dhcpcd_leaves:
                (run_dir / name).unlink()
        return Result(0, "", "eth0: leased 10.0.0.4 for 3600 seconds\nexiting due to oneshot\n")

    def ip_calls(self) -> list[list[str]]:
        return [c for c in self.calls if c[0] == "ip"]


class FakeClock:
    def __init__(self, step: float = 0.25) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _dhcp(root: Path, runner: FakeRunner, **kw: Any) -> tuple[eph.EphemeralDhcp, Kills]:
    kills = Kills()
    kw.setdefault("clock", FakeClock())
    obj = eph.EphemeralDhcp(NIC, root=root, runner=runner, kill=kills,
                            sleep=lambda _s: None, **kw)
    return obj, kills


# --------------------------------------------------------- choose_client ----


def test_choose_client_prefers_dhclient(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhcpcd")
    _exe(tmp_path / "usr/sbin/udhcpc")
    _exe(tmp_path / "sbin/dhclient")
    assert eph.choose_client(tmp_path) == "dhclient"
    assert eph.find_client(tmp_path) == eph.ClientProgram(
        "dhclient", (str(tmp_path / "sbin/dhclient"),))


@pytest.mark.parametrize("rel", ["usr/sbin/udhcpc", "sbin/udhcpc", "usr/bin/udhcpc"])
def test_choose_client_udhcpc_standalone(tmp_path: Path, rel: str) -> None:
    _exe(tmp_path / "usr/sbin/dhcpcd")
    _exe(tmp_path / rel)
    assert eph.find_client(tmp_path) == eph.ClientProgram("udhcpc", (str(tmp_path / rel),))


@pytest.mark.parametrize("rel", ["usr/bin/busybox", "bin/busybox"])
def test_choose_client_busybox_applet(tmp_path: Path, rel: str) -> None:
    _exe(tmp_path / rel, b"\x7fELF...\0tftp\0udhcpc\0udhcpd\0umount\0")
    client = eph.find_client(tmp_path)
    assert client == eph.ClientProgram("udhcpc", (str(tmp_path / rel), "udhcpc"))
    assert client.fast


def test_busybox_without_udhcpc_falls_through_to_dhcpcd(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/bin/busybox", b"\x7fELF\0tftp\0udhcpd\0umount\0")
    _exe(tmp_path / "usr/sbin/dhcpcd")
    client = eph.find_client(tmp_path)
    assert client is not None and client.name == "dhcpcd" and not client.fast


def test_non_executable_dhclient_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/sbin/dhclient").write_text("not executable")
    assert eph.choose_client(tmp_path) is None


def test_no_client(tmp_path: Path) -> None:
    assert eph.choose_client(tmp_path) is None


# ------------------------------------------------------------ primary_nic ----


def _sys_nic(net: Path, name: str, mac: str, *, driver: Optional[str] = None,
             extra: Optional[dict[str, str]] = None, dirs: tuple[str, ...] = (),
             master: Optional[str] = None, ntype: str = "1") -> None:
    d = net / name
    d.mkdir(parents=True)
    (d / "address").write_text(mac + "\n")
    (d / "type").write_text(ntype + "\n")
    for key, val in (extra or {}).items():
        (d / key).write_text(val)
    for sub in dirs:
        (d / sub).mkdir()
    if driver:
        (d / "device").mkdir()
        os.symlink(f"../../../bus/drivers/{driver}", d / "device" / "driver")
    if master:
        os.symlink(f"../{master}", d / "master")


@pytest.fixture()
def sysnet(tmp_path: Path) -> Path:
    net = tmp_path / "sys/class/net"
    _sys_nic(net, "lo", "00:00:00:00:00:00", ntype="772")
    _sys_nic(net, "eth0", "00:0d:3a:11:22:33", driver="veth")  # the simulator's NIC
    _sys_nic(net, "veth0", "00:0d:3a:00:00:01")
    _sys_nic(net, "enP1s1", "00:0d:3a:11:22:33", driver="mlx5_core")  # its VF
    _sys_nic(net, "eth1", "00:0d:3a:44:55:66", driver="hv_netvsc")
    _sys_nic(net, "br0", "00:0d:3a:00:00:02", dirs=("bridge",))
    _sys_nic(net, "bond0", "00:0d:3a:00:00:03", dirs=("bonding",))
    _sys_nic(net, "eth1.10", "00:0d:3a:44:55:66", extra={"uevent": "DEVTYPE=vlan\n"})
    _sys_nic(net, "dummy", "00:0d:3a:00:00:04", master="bond0")
    return net


def test_primary_nic_first_eligible_by_name(sysnet: Path) -> None:
    # "bond0", "br0", "dummy", "enP1s1" sort before eth0 and are all skipped.
    assert eph.primary_nic(sysnet) == "eth0"


def test_primary_nic_preferred_mac_wins(sysnet: Path) -> None:
    assert eph.primary_nic(sysnet, "000D3A445566") == "eth1"
    assert eph.primary_nic(sysnet, "00:0D:3A:44:55:66") == "eth1"


def test_primary_nic_preferred_mac_never_picks_the_vf(sysnet: Path) -> None:
    # enP1s1 sorts first and shares eth0's MAC: the synthetic NIC must win.
    assert eph.primary_nic(sysnet, "000d3a112233") == "eth0"


def test_primary_nic_unknown_mac_falls_back_to_first(sysnet: Path) -> None:
    assert eph.primary_nic(sysnet, "000d3a999999") == "eth0"


@pytest.mark.parametrize("name,kw", [
    ("veth0", {}), ("enP1s1", {"driver": "mlx5_core"}), ("mlx4", {"driver": "mlx4_en"}),
    ("manavf", {"driver": "mana"}), ("br0", {"dirs": ("bridge",)}),
])
def test_primary_nic_skips(tmp_path: Path, name: str, kw: dict[str, Any]) -> None:
    net = tmp_path / "net"
    _sys_nic(net, name, "00:0d:3a:00:00:09", **kw)
    assert eph.primary_nic(net) is None


def test_primary_nic_no_sysfs(tmp_path: Path) -> None:
    assert eph.primary_nic(tmp_path / "missing") is None


def test_link_is_up(tmp_path: Path) -> None:
    _nic(tmp_path, "a", up=True)
    _nic(tmp_path, "b", up=False)
    net = tmp_path / "sys/class/net"
    assert eph.link_is_up(net, "a") is True
    assert eph.link_is_up(net, "b") is False
    assert eph.link_is_up(net, "c") is None


# --------------------------------------------------------- command lines ----


def test_dhclient_command() -> None:
    assert eph.dhclient_command("eth0", "/t/l", "/t/p", "/t/c", ("/usr/sbin/dhclient",)) == [
        "/usr/sbin/dhclient", "-1", "-v", "-cf", "/t/c", "-lf", "/t/l", "-pf", "/t/p",
        "-sf", "/bin/true", "eth0"]


def test_dhclient_config_requests_121_and_245() -> None:
    conf = eph.dhclient_config(7)
    assert ("option rfc3442-classless-static-routes code 121 = "
            "array of unsigned integer 8;") in conf
    assert "option azure-wireserver code 245 = ip-address;" in conf
    assert "timeout 7;" in conf
    request = conf[conf.index("\nrequest "):]
    for name in ("subnet-mask", "broadcast-address", "time-offset", "routers",
                 "domain-name", "domain-name-servers", "host-name", "interface-mtu",
                 "rfc3442-classless-static-routes", "azure-wireserver"):
        assert name in request


def test_udhcpc_command() -> None:
    assert eph.udhcpc_command("eth0", "/t/s", ("/bin/busybox", "udhcpc")) == [
        "/bin/busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1",
        "-O", "121", "-O", "245", "-s", "/t/s"]
    assert "-R" not in eph.udhcpc_command("eth0", "/s")  # never release on exit


def test_udhcpc_script_records_only_on_bound_and_renew(tmp_path: Path) -> None:
    out = tmp_path / "it's here" / "lease"  # quoting survives odd paths
    out.parent.mkdir()
    script = _exe(tmp_path / "s", eph.udhcpc_script(str(out)).encode())
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for event in ("deconfig", "leasefail", "nak"):
        subprocess.run([str(script), event], env={**env, **UDHCPC_ENV}, check=True)
        assert not out.exists()
    for event in ("bound", "renew"):
        subprocess.run([str(script), event], env={**env, **UDHCPC_ENV}, check=True)
        text = out.read_text()
        assert "ip=10.0.0.4\n" in text and "opt245=a83f8110\n" in text
        assert "serverid" not in text
        out.unlink()
    # It never configures anything itself.
    assert not re.search(r"^\s*(ip|ifconfig|route)\s", eph.udhcpc_script("/x"), re.M)


# ----------------------------------------------------------- lease parse ----


def test_parse_dhclient_lease() -> None:
    lease = eph.parse_dhclient_lease(DHCLIENT_LEASE, NIC)
    assert lease == eph.Lease(
        "eth0", "10.0.0.4", 24, "10.0.0.1", "10.0.0.255",
        (("168.63.129.16/32", "10.0.0.1"), ("169.254.169.254/32", "10.0.0.1")),
        "168.63.129.16", ("168.63.129.16",), DHCLIENT_LEASE, "dhclient")


def test_parse_dhclient_lease_takes_newest_block() -> None:
    text = DHCLIENT_LEASE.replace("10.0.0.4", "10.0.0.9") + DHCLIENT_LEASE
    assert eph.parse_dhclient_lease(text, NIC).address == "10.0.0.4"


def test_parse_dhclient_lease_empty_is_error() -> None:
    with pytest.raises(DhcpError) as err:
        eph.parse_dhclient_lease("", NIC)
    assert err.value.supporting_data["client"] == "dhclient"


def test_parse_udhcpc_dump() -> None:
    text = "".join(f"{k}={v}\n" for k, v in UDHCPC_ENV.items())
    lease = eph.parse_udhcpc_dump(text, NIC)
    assert (lease.address, lease.prefix, lease.router, lease.broadcast) == (
        "10.0.0.4", 24, "10.0.0.1", "10.0.0.255")
    assert lease.routes == (("168.63.129.16/32", "10.0.0.1"),
                            ("169.254.169.254/32", "10.0.0.1"))
    assert lease.wireserver == "168.63.129.16" and lease.client == "udhcpc"


def test_parse_udhcpc_dump_mask_from_subnet_and_computed_broadcast() -> None:
    lease = eph.parse_udhcpc_dump("ip=10.1.2.3\nsubnet=255.255.240.0\nrouter=10.1.0.1\n", NIC)
    assert (lease.prefix, lease.broadcast, lease.routes, lease.wireserver) == (
        20, "10.1.15.255", (), None)


def test_missing_mask_means_host_prefix() -> None:
    lease = eph.make_lease("eth0", "10.0.0.4", None, router="10.0.0.1")
    assert (lease.prefix, lease.broadcast) == (32, None)


def test_bad_address_is_error() -> None:
    with pytest.raises(DhcpError):
        eph.make_lease("eth0", "not-an-ip", "24")


@pytest.mark.parametrize("text", [
    "option azure-wireserver 168.63.129.16;",
    "option unknown-245 a8:3f:81:10;",
    'option unknown-245 "\\250?\\201\\020";',
])
def test_option_245_dhclient_forms(text: str) -> None:
    lease = DHCLIENT_LEASE_NO_121.replace("option unknown-245 a8:3f:81:10;", text)
    assert eph.parse_dhclient_lease(lease, NIC).wireserver == "168.63.129.16"


def test_option_245_one_digit_hex_parts() -> None:
    lease = DHCLIENT_LEASE_NO_121.replace("a8:3f:81:10", "a:0:0:5")
    assert eph.parse_dhclient_lease(lease, NIC).wireserver == "10.0.0.5"


@pytest.mark.parametrize("value,want", [("a83f8110", "168.63.129.16"), ("0a000005", "10.0.0.5"),
                                        ("", None)])
def test_option_245_udhcpc(value: str, want: Optional[str]) -> None:
    lease = eph.parse_udhcpc_dump(f"ip=10.0.0.4\nmask=24\nopt245={value}\n", NIC)
    assert lease.wireserver == want


@pytest.mark.parametrize("value", ["168.63.129.16", "a8:3f:81:10", "A83F8110"])
def test_option_245_fallback_dict(value: str) -> None:
    lease = eph.lease_from_dict({"fixed-address": "10.0.0.4", "subnet-mask": "255.255.255.0",
                                 "unknown-245": value}, NIC)
    assert lease.wireserver == "168.63.129.16"


def test_option_245_absent() -> None:
    lease = DHCLIENT_LEASE_NO_121.replace("  option unknown-245 a8:3f:81:10;\n", "")
    assert eph.parse_dhclient_lease(lease, NIC).wireserver is None


@pytest.mark.parametrize("key,value", [
    ("rfc3442-classless-static-routes", "32,168,63,129,16,10,0,0,1"),
    ("static_routes", "168.63.129.16/32 10.0.0.1"),  # cloud-init's udhcpc/dhcpcd dicts
    ("unknown-121", "20:a8:3f:81:10:a:0:0:1"),
])
def test_fallback_dict_routes(key: str, value: str) -> None:
    lease = eph.lease_from_dict({"interface": "eth0", "fixed-address": "10.0.0.4",
                                 "subnet-mask": "255.255.255.0", "routers": "10.0.0.1",
                                 key: value}, NIC)
    assert lease.routes == (("168.63.129.16/32", "10.0.0.1"),)
    assert lease.client == "fallback" and '"fixed-address": "10.0.0.4"' in lease.raw


# ------------------------------------------------------- lease -> ip(8) ----


def _lease(**kw: Any) -> eph.Lease:
    base: dict[str, Any] = dict(interface="eth0", address="10.0.0.4", prefix=24,
                                router="10.0.0.1", broadcast="10.0.0.255")
    base.update(kw)
    return eph.Lease(**base)


def test_commands_with_option_121_add_exactly_its_routes() -> None:
    lease = _lease(routes=(("168.63.129.16/32", "10.0.0.1"), ("169.254.169.254/32", "10.0.0.1"),
                           ("10.0.0.1/32", "0.0.0.0")))
    up, down = eph.lease_to_commands(lease, "eth0", was_up=False)
    assert up == [
        ["ip", "link", "set", "dev", "eth0", "up"],
        ["ip", "-4", "addr", "add", "10.0.0.4/24", "broadcast", "10.0.0.255", "dev", "eth0"],
        ["ip", "-4", "route", "add", "10.0.0.1/32", "dev", "eth0"],  # on-link first
        ["ip", "-4", "route", "add", "168.63.129.16/32", "via", "10.0.0.1", "dev", "eth0"],
        ["ip", "-4", "route", "add", "169.254.169.254/32", "via", "10.0.0.1", "dev", "eth0"],
    ]
    assert not any("default" in c or "0.0.0.0/0" in c for c in up)  # RFC 3442
    assert down == [
        ["ip", "-4", "route", "del", "169.254.169.254/32", "via", "10.0.0.1", "dev", "eth0"],
        ["ip", "-4", "route", "del", "168.63.129.16/32", "via", "10.0.0.1", "dev", "eth0"],
        ["ip", "-4", "route", "del", "10.0.0.1/32", "dev", "eth0"],
        ["ip", "-4", "addr", "del", "10.0.0.4/24", "dev", "eth0"],
        ["ip", "link", "set", "dev", "eth0", "down"],
    ]


def test_commands_option_121_default_route_only_when_listed() -> None:
    lease = _lease(routes=(("0.0.0.0/0", "10.0.0.1"),))
    up, _ = eph.lease_to_commands(lease, "eth0")
    assert up[-1] == ["ip", "-4", "route", "add", "0.0.0.0/0", "via", "10.0.0.1", "dev", "eth0"]


def test_commands_without_121_use_router_as_default() -> None:
    up, down = eph.lease_to_commands(_lease(), "eth0", was_up=True)
    assert up == [
        ["ip", "-4", "addr", "add", "10.0.0.4/24", "broadcast", "10.0.0.255", "dev", "eth0"],
        ["ip", "-4", "route", "add", "default", "via", "10.0.0.1", "dev", "eth0"],
    ]
    assert down == [
        ["ip", "-4", "route", "del", "default", "via", "10.0.0.1", "dev", "eth0"],
        ["ip", "-4", "addr", "del", "10.0.0.4/24", "dev", "eth0"],
    ]  # the link was up: left up


def test_commands_router_outside_subnet_gets_host_route() -> None:
    up, down = eph.lease_to_commands(_lease(prefix=32, broadcast=None), "eth0")
    assert up == [
        ["ip", "-4", "addr", "add", "10.0.0.4/32", "dev", "eth0"],
        ["ip", "-4", "route", "add", "10.0.0.1/32", "dev", "eth0"],
        ["ip", "-4", "route", "add", "default", "via", "10.0.0.1", "dev", "eth0"],
    ]
    assert down[1] == ["ip", "-4", "route", "del", "10.0.0.1/32", "dev", "eth0"]


def test_commands_no_router_no_routes() -> None:
    up, down = eph.lease_to_commands(_lease(router=None), "eth0")
    assert len(up) == 1 and len(down) == 1


def test_unknown_link_state_brought_up_never_down() -> None:
    up, down = eph.lease_to_commands(_lease(), "eth0", was_up=None)
    assert up[0] == ["ip", "link", "set", "dev", "eth0", "up"]
    assert all(c[:2] != ["ip", "link"] for c in down)


# -------------------------------------------------------- EphemeralDhcp ----


def _mirror_check(runner: FakeRunner, n_up: int) -> None:
    """The last calls undo the ip(8) changes in exact reverse order."""
    ips = runner.ip_calls()
    up, down = ips[:n_up], ips[n_up:]
    flip = {"add": "del", "up": "down"}
    undone = []
    for cmd in reversed(up):
        c = [flip.get(x, x) for x in cmd]
        if "broadcast" in c:
            i = c.index("broadcast")
            del c[i:i + 2]
        undone.append(c)
    assert down == undone


def test_dhclient_end_to_end(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=False)
    runner = FakeRunner(tmp_path)
    dhcp, kills = _dhcp(tmp_path, runner, clock=FakeClock(0.25))
    with dhcp as lease:
        work = next((tmp_path / "run/cloudinit-azure").iterdir())
        assert oct(work.stat().st_mode & 0o777) == "0o700"
        assert lease.wireserver == "168.63.129.16" and lease.client == "dhclient"
        assert lease.seconds is not None and lease.seconds > 0
        assert kills.calls == [(4242, signal.SIGTERM)]  # daemon stopped, lease kept
        calls_inside = list(runner.calls)
    assert calls_inside[0] == ["ip", "link", "set", "dev", "eth0", "up"]
    client = calls_inside[1]
    assert client[0] == str(tmp_path / "usr/sbin/dhclient")
    assert client[1:3] == ["-1", "-v"] and client[-3:] == ["-sf", "/bin/true", "eth0"]
    assert "-r" not in client and "-x" not in client
    assert calls_inside[2:] == [
        ["ip", "-4", "addr", "add", "10.0.0.4/24", "broadcast", "10.0.0.255", "dev", "eth0"],
        ["ip", "-4", "route", "add", "168.63.129.16/32", "via", "10.0.0.1", "dev", "eth0"],
        ["ip", "-4", "route", "add", "169.254.169.254/32", "via", "10.0.0.1", "dev", "eth0"],
    ]
    _mirror_check(runner, n_up=4)
    assert not work.exists()
    assert kills.calls == [(4242, signal.SIGTERM)]  # not killed twice


def test_dhclient_config_file_is_passed(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=True)
    seen: dict[str, str] = {}
    runner = FakeRunner(tmp_path)
    orig = runner._dhclient

    def spy(cmd: list[str]) -> Result:
        seen["conf"] = Path(cmd[cmd.index("-cf") + 1]).read_text()
        return orig(cmd)

    runner._dhclient = spy  # type: ignore[method-assign]
    dhcp, _ = _dhcp(tmp_path, runner, timeout=6)
    with dhcp:
        pass
    assert seen["conf"] == eph.dhclient_config(6)
    assert runner.timeouts[0] == 11  # the client's own timeout plus a margin


def test_link_already_up_is_left_up(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=True)
    runner = FakeRunner(tmp_path, lease=DHCLIENT_LEASE_NO_121)
    dhcp, _ = _dhcp(tmp_path, runner)
    with dhcp:
        pass
    assert not any(c[:2] == ["ip", "link"] for c in runner.calls)
    default = ["ip", "-4", "route", "add", "default", "via", "10.0.0.1", "dev", "eth0"]
    assert default in runner.calls
    _mirror_check(runner, n_up=2)


def test_route_failure_midway_undoes_partial_setup(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=False)
    bad = (2, "Error: Nexthop has invalid gateway.")
    runner = FakeRunner(tmp_path, fail={"169.254.169.254/32 via": bad})
    dhcp, kills = _dhcp(tmp_path, runner)
    with pytest.raises(DhcpError) as err:
        dhcp.__enter__()
    data = err.value.supporting_data
    assert data["client"] == "dhclient" and data["nic"] == "eth0" and data["exit_code"] == 2
    assert "Nexthop" in data["stderr"]
    ips = runner.ip_calls()
    assert ips[-3:] == [
        ["ip", "-4", "route", "del", "168.63.129.16/32", "via", "10.0.0.1", "dev", "eth0"],
        ["ip", "-4", "addr", "del", "10.0.0.4/24", "dev", "eth0"],
        ["ip", "link", "set", "dev", "eth0", "down"],
    ]
    assert not any("del" in c and "169.254.169.254/32" in c for c in ips)  # never added
    assert kills.calls == [(4242, signal.SIGTERM)]
    assert list((tmp_path / "run/cloudinit-azure").iterdir()) == []


def test_existing_route_is_not_removed(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=True)
    exists = (2, "RTNETLINK answers: File exists")
    runner = FakeRunner(tmp_path, fail={"168.63.129.16/32 via": exists})
    dhcp, _ = _dhcp(tmp_path, runner)
    with dhcp:
        pass
    assert not any("del" in c and "168.63.129.16/32" in c for c in runner.calls)
    assert ["ip", "-4", "route", "del", "169.254.169.254/32", "via", "10.0.0.1", "dev",
            "eth0"] in runner.calls


def test_teardown_is_best_effort(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=False)
    runner = FakeRunner(tmp_path, fail={"route del 168.63": (2, "No such process")})
    dhcp, _ = _dhcp(tmp_path, runner)
    with dhcp:
        pass
    assert runner.calls[-1] == ["ip", "link", "set", "dev", "eth0", "down"]


def test_teardown_runs_when_body_raises(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=True)
    runner = FakeRunner(tmp_path)
    dhcp, _ = _dhcp(tmp_path, runner)
    with pytest.raises(RuntimeError), dhcp:
        raise RuntimeError("IMDS said no")
    _mirror_check(runner, n_up=3)


def test_dhclient_failure_is_dhcp_error(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=False)
    stderr = "x" * 1000 + "No DHCPOFFERS received.\n"
    runner = FakeRunner(tmp_path, client_rc=2, client_stderr=stderr)
    dhcp, kills = _dhcp(tmp_path, runner)
    with pytest.raises(DhcpError) as err:
        dhcp.__enter__()
    data = err.value.supporting_data
    assert (data["client"], data["nic"], data["exit_code"]) == ("dhclient", "eth0", 2)
    assert data["stderr"].endswith("No DHCPOFFERS received.") and len(data["stderr"]) <= 400
    assert runner.calls[-1] == ["ip", "link", "set", "dev", "eth0", "down"]
    assert kills.calls == []


def test_client_timeout_is_dhcp_error(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=True)

    def runner(cmd: list[str], **kw: Any) -> Result:
        if cmd[0].endswith("dhclient"):
            raise subprocess.TimeoutExpired(cmd, kw.get("timeout"))
        return Result(0, "", "")

    with pytest.raises(DhcpError) as err:
        eph.EphemeralDhcp(NIC, root=tmp_path, runner=runner, kill=Kills()).__enter__()
    assert "timed out" in err.value.supporting_data["detail"]


def test_pid_found_by_cmdline_when_pid_file_missing(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=True)
    runner = FakeRunner(tmp_path, write_pid=False, pid=777)
    other = tmp_path / "proc/55"
    other.mkdir(parents=True)
    (other / "cmdline").write_bytes(b"dhclient\0-pf\0/run/dhclient.pid\0eth0\0")
    dhcp, kills = _dhcp(tmp_path, runner)
    with dhcp:
        pass
    assert kills.calls == [(777, signal.SIGTERM)]


def test_foreign_pid_is_not_killed(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhclient")
    _nic(tmp_path, up=True)
    runner = FakeRunner(tmp_path, pid=31337)
    orig = runner._dhclient

    def reused(cmd: list[str]) -> Result:
        result = orig(cmd)
        (tmp_path / "proc/31337/cmdline").write_bytes(b"sshd\0")  # pid reused
        return result

    runner._dhclient = reused  # type: ignore[method-assign]
    dhcp, kills = _dhcp(tmp_path, runner)
    with dhcp:
        pass
    assert kills.calls == []


def test_udhcpc_end_to_end(tmp_path: Path) -> None:
    _exe(tmp_path / "bin/busybox", b"\x7fELF\0udhcpc\0")
    _nic(tmp_path, up=False)
    runner = FakeRunner(tmp_path)
    dhcp, kills = _dhcp(tmp_path, runner, tmp_dir=tmp_path / "private")
    with dhcp as lease:
        script = Path(runner.calls[1][-1])
        assert script.parent.parent == tmp_path / "private"
        assert oct(script.stat().st_mode & 0o777) == "0o700"
    assert runner.calls[1][:2] == [str(tmp_path / "bin/busybox"), "udhcpc"]
    assert (lease.address, lease.prefix, lease.wireserver, lease.client) == (
        "10.0.0.4", 24, "168.63.129.16", "udhcpc")
    assert lease.dns == ("168.63.129.16",)
    assert not any("default" in c for c in runner.calls)  # 121 present
    _mirror_check(runner, n_up=4)
    assert kills.calls == []
    assert list((tmp_path / "private").iterdir()) == []


def test_udhcpc_without_lease_is_error(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/udhcpc")
    _nic(tmp_path, up=True)
    runner = FakeRunner(tmp_path, udhcpc_env={"interface": NIC})
    dhcp, _ = _dhcp(tmp_path, runner)
    with pytest.raises(DhcpError) as err:
        dhcp.__enter__()
    assert err.value.supporting_data["client"] == "udhcpc"


# -------------------------------------------------------------- fallback ----


class FakeFallback:
    def __init__(self, lease: Any = None, error: Optional[Exception] = None) -> None:
        self.lease = {"interface": "eth0", "fixed-address": "10.0.0.4",
                      "subnet-mask": "255.255.255.0", "routers": "10.0.0.1",
                      "unknown-245": "168.63.129.16"} if lease is None else lease
        self.error = error
        self.nics: list[str] = []
        self.exits: list[Any] = []

    def __call__(self, nic: str) -> Any:
        self.nics.append(nic)
        fb = self

        @contextlib.contextmanager
        def cm() -> Any:
            if fb.error:
                raise fb.error
            try:
                yield fb.lease
            finally:
                fb.exits.append(nic)

        return cm()


def test_no_client_uses_fallback(tmp_path: Path) -> None:
    fallback = FakeFallback()
    runner = FakeRunner(tmp_path)
    dhcp, _ = _dhcp(tmp_path, runner, fallback=fallback)
    with dhcp as lease:
        assert isinstance(lease, eph.Lease)
        assert (lease.address, lease.wireserver, lease.client) == (
            "10.0.0.4", "168.63.129.16", "fallback")
        assert lease.seconds is not None
        assert fallback.exits == []
    assert fallback.nics == ["eth0"] and fallback.exits == ["eth0"]
    assert runner.calls == []  # cloud-init's helper did all the work


def test_dhcpcd_without_timeout_uses_fallback(tmp_path: Path) -> None:
    _exe(tmp_path / "usr/sbin/dhcpcd")  # no timeout(1) to bound it
    fallback = FakeFallback()
    runner = FakeRunner(tmp_path)
    dhcp, _ = _dhcp(tmp_path, runner, fallback=fallback)
    with dhcp:
        pass
    assert fallback.nics == ["eth0"] and runner.calls == []


def test_no_client_and_no_fallback_is_error(tmp_path: Path) -> None:
    with pytest.raises(DhcpError) as err:
        eph.EphemeralDhcp(NIC, root=tmp_path, runner=FakeRunner(tmp_path),
                          kill=Kills()).__enter__()
    assert err.value.supporting_data == {
        "detail": "no usable DHCP client and no fallback", "client": "none", "nic": "eth0"}


def test_fallback_error_is_dhcp_error(tmp_path: Path) -> None:
    fallback = FakeFallback(error=RuntimeError("NoDHCPLeaseError"))
    dhcp, _ = _dhcp(tmp_path, FakeRunner(tmp_path), fallback=fallback)
    with pytest.raises(DhcpError) as err:
        dhcp.__enter__()
    assert "NoDHCPLeaseError" in err.value.supporting_data["error"]


def test_fallback_without_lease_is_error_and_torn_down(tmp_path: Path) -> None:
    fallback = FakeFallback(lease={})
    dhcp, _ = _dhcp(tmp_path, FakeRunner(tmp_path), fallback=fallback)
    with pytest.raises(DhcpError):
        dhcp.__enter__()
    assert fallback.exits == ["eth0"]


# ---------------------------------------------------------------- dhcpcd ----


def _dhcpcd_root(root: Path, *, up: bool = False) -> tuple[Path, Path]:
    prog = _exe(root / "usr/sbin/dhcpcd")
    timeout = _exe(root / "usr/bin/timeout")
    _nic(root, up=up)
    return prog, timeout


def test_choose_client_dhcpcd_with_timeout_is_fast(tmp_path: Path) -> None:
    prog, timeout = _dhcpcd_root(tmp_path)
    client = eph.find_client(tmp_path)
    assert client == eph.ClientProgram("dhcpcd", (str(prog),), str(timeout))
    assert client.fast and eph.choose_client(tmp_path) == "dhcpcd"


def test_choose_client_order_dhclient_udhcpc_dhcpcd(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path)
    _exe(tmp_path / "bin/busybox", b"\x7fELF\0udhcpc\0")
    assert eph.choose_client(tmp_path) == "udhcpc"
    _exe(tmp_path / "usr/sbin/dhclient")
    assert eph.choose_client(tmp_path) == "dhclient"


def test_dhcpcd_command() -> None:
    assert eph.dhcpcd_command("eth0", "/t/c", "/t/s", ("/usr/sbin/dhcpcd",),
                              "/usr/bin/timeout", 7.9) == [
        "/usr/bin/timeout", "-k", "2", "7", "/usr/sbin/dhcpcd", "-f", "/t/c", "-c", "/t/s",
        "-B", "-1", "-4", "--noconfigure", "eth0"]
    cmd = eph.dhcpcd_command("eth0", "/c", "/s", timeout=0.2)
    assert cmd[3] == "1"
    # -T stops at the OFFER (no lease); -k/-x/release would touch the server or a daemon.
    assert not {"-T", "--test", "-k", "--release", "-x", "--exit"} & set(cmd[5:])


def test_dhcpcd_config_text() -> None:
    conf = eph.dhcpcd_config()
    lines = [ln for ln in conf.splitlines() if ln and not ln.startswith("#")]
    assert lines == [
        "ipv4only", "nodelay", "noarp", "noipv4ll", "nodev", "nolink", "persistent", "clientid",
        "define 245 ipaddress azure_wireserver",
        "option subnet_mask, broadcast_address, routers, domain_name_servers",
        "option classless_static_routes, azure_wireserver",
    ]
    # No script/hooks, no DUID file, never a RELEASE on exit.
    assert not re.search(r"^(script|duid|release|hostname)\b", conf, re.M)


def _run_script(script: Path, env: dict[str, str]) -> None:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    subprocess.run([str(script)], env={**base, **env}, check=True)


def test_dhcpcd_script_records_only_a_lease(tmp_path: Path) -> None:
    out = tmp_path / "it's here" / "lease"
    out.parent.mkdir()
    script = _exe(tmp_path / "s", eph.dhcpcd_script(str(out)).encode())
    for reason in ("PREINIT", "CARRIER", "NOCARRIER", "TEST", "EXPIRE", "NAK", "STOP",
                   "STOPPED"):
        _run_script(script, {**DHCPCD_ENV, "reason": reason})
        assert not out.exists()
    for reason in ("BOUND", "REBOOT", "RENEW", "REBIND"):
        _run_script(script, {**DHCPCD_ENV, "reason": reason})
        text = out.read_text()
        assert "new_ip_address=10.0.0.4\n" in text and f"reason={reason}\n" in text
        assert "new_azure_wireserver=168.63.129.16\n" in text
        assert "if_configured" not in text
        out.unlink()
    assert not re.search(r"^\s*(ip|ifconfig|route)\s", eph.dhcpcd_script("/x"), re.M)


def test_parse_dhcpcd_dump() -> None:
    text = "".join(f"{k}={v}\n" for k, v in DHCPCD_ENV.items())
    lease = eph.parse_dhcpcd_dump(text, NIC)
    assert lease == eph.Lease(
        "eth0", "10.0.0.4", 24, "10.0.0.1", "10.0.0.255",
        (("168.63.129.16/32", "10.0.0.1"), ("169.254.169.254/32", "10.0.0.1")),
        "168.63.129.16", ("168.63.129.16",), text, "dhcpcd")


def test_parse_dhcpcd_dump_minimal() -> None:
    lease = eph.parse_dhcpcd_dump(
        "interface=\nnew_ip_address=10.1.2.3\nnew_subnet_cidr=\n"
        "new_subnet_mask=255.255.240.0\nnew_routers=10.1.0.1 10.1.0.2\n"
        "new_classless_static_routes=\nnew_azure_wireserver=\n", NIC)
    assert (lease.interface, lease.prefix, lease.broadcast, lease.router, lease.routes,
            lease.wireserver) == ("eth0", 20, "10.1.15.255", "10.1.0.1", (), None)


def test_parse_dhcpcd_dump_without_address_is_error() -> None:
    with pytest.raises(DhcpError) as err:
        eph.parse_dhcpcd_dump("interface=eth0\nnew_ip_address=\n", NIC)
    assert err.value.supporting_data["client"] == "dhcpcd"


@pytest.mark.parametrize("text,want", [
    (DHCPCD_VERSION, (9, 4)), ("dhcpcd 10.0.6\n", (10, 0)), ("dhcpcd-8.1.2", (8, 1)),
    ("", None), ("dhclient 4.4.3", None),
])
def test_dhcpcd_version(text: str, want: Optional[tuple[int, int]]) -> None:
    assert eph.dhcpcd_version(text) == want


def test_dhcpcd_end_to_end(tmp_path: Path) -> None:
    prog, timeout = _dhcpcd_root(tmp_path, up=False)
    runner = FakeRunner(tmp_path)
    dhcp, kills = _dhcp(tmp_path, runner, timeout=6)
    with dhcp as lease:
        assert (lease.address, lease.prefix, lease.wireserver, lease.client) == (
            "10.0.0.4", 24, "168.63.129.16", "dhcpcd")
        assert lease.dns == ("168.63.129.16",) and "new_ip_address=10.0.0.4" in lease.raw
        # dhcpcd's lease database and run dir are gone again before the body runs.
        assert not (tmp_path / "var/lib/dhcpcd").exists()
        assert not (tmp_path / "run/dhcpcd").exists()
        calls_inside = list(runner.calls)
    assert calls_inside[0] == [str(prog), "--version"]
    assert calls_inside[1] == ["ip", "link", "set", "dev", "eth0", "up"]
    client = calls_inside[2]
    assert client[:5] == [str(timeout), "-k", "2", "6", str(prog)]
    assert client[-5:] == ["-B", "-1", "-4", "--noconfigure", "eth0"]
    assert runner.timeouts[2] == 6 + 2 + 5  # timeout(1), its -k, a margin
    assert runner.dhcpcd_saw["config"] == eph.dhcpcd_config()
    assert calls_inside[3:] == [
        ["ip", "-4", "addr", "add", "10.0.0.4/24", "broadcast", "10.0.0.255", "dev", "eth0"],
        ["ip", "-4", "route", "add", "168.63.129.16/32", "via", "10.0.0.1", "dev", "eth0"],
        ["ip", "-4", "route", "add", "169.254.169.254/32", "via", "10.0.0.1", "dev", "eth0"],
    ]
    _mirror_check(runner, n_up=4)
    assert kills.calls == []  # dhcpcd exited by itself (-1, -B)
    assert list((tmp_path / "run/cloudinit-azure").iterdir()) == []


def test_dhcpcd_10_privsep_lease_read_from_its_lease_file(tmp_path: Path) -> None:
    # Debian 13's dhcpcd 10.1 leases but runs no script of ours ("script_runreason:
    # Permission denied"): the same lease comes from the file dhcpcd wrote,
    # read before its old lease file is put back as it was.
    _dhcpcd_root(tmp_path, up=False)
    old = tmp_path / "var/lib/dhcpcd/eth0.lease"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"\x02old lease")
    runner = FakeRunner(tmp_path, dhcpcd_privsep=True, dhcpcd_version="dhcpcd 10.1.0\n")
    dhcp, _ = _dhcp(tmp_path, runner, timeout=6)
    with dhcp as lease:
        assert (lease.address, lease.prefix, lease.router, lease.wireserver, lease.dns) == (
            "10.0.0.4", 24, "10.0.0.1", "168.63.129.16", ("168.63.129.16",))
        assert old.read_bytes() == b"\x02old lease"
    routes = [c[4] for c in runner.ip_calls() if c[:3] == ["ip", "-4", "route"]]
    assert routes[:2] == ["168.63.129.16/32", "169.254.169.254/32"]


def test_parse_dhcpcd_lease_file_matches_the_script_dump() -> None:
    from cloudinit_azure.network.dhcpcd import parse_dhcpcd_lease_file

    from_file = parse_dhcpcd_lease_file(DHCPCD_ACK, NIC)
    from_script = eph.parse_dhcpcd_dump(
        "".join(f"{k}={v}\n" for k, v in DHCPCD_ENV.items()), NIC)
    for field in ("address", "prefix", "router", "wireserver", "dns", "routes"):
        assert getattr(from_file, field) == getattr(from_script, field), field


def test_parse_dhcpcd_lease_file_without_an_address_is_error() -> None:
    from cloudinit_azure.network.dhcpcd import parse_dhcpcd_lease_file

    with pytest.raises(DhcpError):
        parse_dhcpcd_lease_file(b"\x02\x01\x06 not a lease", NIC)


def test_dhcpcd_script_and_config_are_private(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=True)
    runner = FakeRunner(tmp_path)
    dhcp, _ = _dhcp(tmp_path, runner, tmp_dir=tmp_path / "private")
    with dhcp:
        cmd = runner.calls[1]
        script = Path(cmd[cmd.index("-c") + 1])
        assert script.parent.parent == tmp_path / "private"
        assert oct(script.stat().st_mode & 0o777) == "0o700"
        assert Path(cmd[cmd.index("-f") + 1]).parent == script.parent
    assert list((tmp_path / "private").iterdir()) == []


def test_dhcpcd_old_lease_set_aside_and_restored(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=True)
    db = tmp_path / "var/lib/dhcpcd"
    db.mkdir(parents=True)
    old = db / "eth0.lease"
    old.write_bytes(b"\x02old lease from the image")
    old.chmod(0o640)
    other = db / "eth1.lease"
    other.write_bytes(b"not ours")
    runner = FakeRunner(tmp_path)
    dhcp, _ = _dhcp(tmp_path, runner)
    with dhcp:
        # dhcpcd saw no old lease (else: REBOOT first, 5 s if the server ignores it)
        assert runner.dhcpcd_saw["old_lease"] is False
        assert old.read_bytes() == b"\x02old lease from the image"  # already back
    assert old.read_bytes() == b"\x02old lease from the image"
    assert oct(old.stat().st_mode & 0o777) == "0o640"
    assert other.read_bytes() == b"not ours"
    assert sorted(p.name for p in db.iterdir()) == ["eth0.lease", "eth1.lease"]


def test_dhcpcd_lease_that_cannot_be_set_aside_is_left_alone(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=True)
    odd = tmp_path / "var/lib/dhcpcd/eth0.lease"
    odd.mkdir(parents=True)  # unreadable as a file: cannot be copied, so not touched
    runner = FakeRunner(tmp_path, dhcpcd_env={})  # and dhcpcd writes nothing
    dhcp, _ = _dhcp(tmp_path, runner)
    with pytest.raises(DhcpError):
        dhcp.__enter__()
    assert odd.is_dir()


def test_dhcpcd_existing_dirs_are_kept(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=True)
    (tmp_path / "var/lib/dhcpcd").mkdir(parents=True)
    (tmp_path / "run/dhcpcd").mkdir(parents=True)
    dhcp, _ = _dhcp(tmp_path, FakeRunner(tmp_path))
    with dhcp:
        pass
    assert list((tmp_path / "var/lib/dhcpcd").iterdir()) == []  # its new lease removed
    assert list((tmp_path / "run/dhcpcd").iterdir()) == []


def test_dhcpcd_leftover_run_files_removed(tmp_path: Path, caplog: Any) -> None:
    _dhcpcd_root(tmp_path, up=True)
    runner = FakeRunner(tmp_path, dhcpcd_leaves=("eth0-4.pid", "eth0-4.sock"))
    dhcp, _ = _dhcp(tmp_path, runner)
    with dhcp:
        assert not (tmp_path / "run/dhcpcd").exists()
    assert "dhcpcd left" in caplog.text


def test_dhcpcd_timeout_is_dhcp_error_and_restores(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=False)
    old = tmp_path / "var/lib/dhcpcd/eth0.lease"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"old")
    stderr = "eth0: soliciting a DHCP lease\nreceived SIGTERM, stopping\n"
    runner = FakeRunner(tmp_path, client_rc=124, client_stderr=stderr)
    dhcp, _ = _dhcp(tmp_path, runner, timeout=3)
    with pytest.raises(DhcpError) as err:
        dhcp.__enter__()
    data = err.value.supporting_data
    assert (data["detail"], data["client"], data["exit_code"], data["timeout"]) == (
        "DHCP client timed out", "dhcpcd", 124, 3)
    assert "SIGTERM" in data["stderr"]
    assert runner.calls[-1] == ["ip", "link", "set", "dev", "eth0", "down"]
    assert old.read_bytes() == b"old"
    assert list((tmp_path / "run/cloudinit-azure").iterdir()) == []


def test_dhcpcd_failure_is_dhcp_error(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=True)
    runner = FakeRunner(tmp_path, client_rc=1, client_stderr="dhcpcd: unknown option\n")
    dhcp, _ = _dhcp(tmp_path, runner)
    with pytest.raises(DhcpError) as err:
        dhcp.__enter__()
    assert (err.value.supporting_data["exit_code"], err.value.supporting_data["client"]) == (
        1, "dhcpcd")
    assert runner.ip_calls() == []


def test_dhcpcd_without_lease_is_error(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=False)
    runner = FakeRunner(tmp_path, dhcpcd_env={})
    dhcp, _ = _dhcp(tmp_path, runner)
    with pytest.raises(DhcpError) as err:
        dhcp.__enter__()
    assert err.value.supporting_data["detail"] == "dhcpcd wrote no lease"
    assert runner.ip_calls() == [["ip", "link", "set", "dev", "eth0", "up"],
                                 ["ip", "link", "set", "dev", "eth0", "down"]]
    assert not (tmp_path / "var/lib/dhcpcd").exists()


def test_dhcpcd_route_failure_undoes_everything(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=False)
    bad = (2, "Error: Nexthop has invalid gateway.")
    runner = FakeRunner(tmp_path, fail={"169.254.169.254/32 via": bad})
    dhcp, _ = _dhcp(tmp_path, runner)
    with pytest.raises(DhcpError):
        dhcp.__enter__()
    assert runner.ip_calls()[-3:] == [
        ["ip", "-4", "route", "del", "168.63.129.16/32", "via", "10.0.0.1", "dev", "eth0"],
        ["ip", "-4", "addr", "del", "10.0.0.4/24", "dev", "eth0"],
        ["ip", "link", "set", "dev", "eth0", "down"],
    ]
    assert not (tmp_path / "var/lib/dhcpcd").exists()


@pytest.mark.parametrize("sock", ["run/dhcpcd/eth0-4.sock", "run/dhcpcd/sock",
                                  "run/dhcpcd/eth0.sock", "run/dhcpcd-eth0.sock",
                                  "run/dhcpcd.sock"])
def test_running_dhcpcd_daemon_uses_fallback(tmp_path: Path, sock: str) -> None:
    # Ours would only hand its arguments to that daemon (verified on 9.4.1).
    _dhcpcd_root(tmp_path, up=True)
    (tmp_path / sock).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / sock).write_text("")
    fallback = FakeFallback()
    runner = FakeRunner(tmp_path)
    dhcp, _ = _dhcp(tmp_path, runner, fallback=fallback)
    with dhcp as lease:
        assert lease.client == "fallback"
    assert runner.calls == [] and fallback.exits == ["eth0"]


def test_running_dhcpcd_daemon_without_fallback_says_why(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=True)
    (tmp_path / "run/dhcpcd").mkdir(parents=True)
    (tmp_path / "run/dhcpcd/eth0-4.sock").write_text("")
    with pytest.raises(DhcpError) as err:
        eph.EphemeralDhcp(NIC, root=tmp_path, runner=FakeRunner(tmp_path),
                          kill=Kills()).__enter__()
    data = err.value.supporting_data
    assert data["client"] == "dhcpcd" and "already running" in data["why"]


@pytest.mark.parametrize("version", ["dhcpcd 8.1.2\n", "dhcpcd 9.3.4\n", "garbage"])
def test_old_dhcpcd_uses_fallback(tmp_path: Path, version: str) -> None:
    prog, _ = _dhcpcd_root(tmp_path, up=True)
    fallback = FakeFallback()
    runner = FakeRunner(tmp_path, dhcpcd_version=version)
    dhcp, _ = _dhcp(tmp_path, runner, fallback=fallback)
    with dhcp:
        pass
    assert runner.calls == [[str(prog), "--version"]] and fallback.nics == ["eth0"]


def test_dhcpcd_version_check_that_cannot_run_uses_fallback(tmp_path: Path) -> None:
    _dhcpcd_root(tmp_path, up=True)

    runner = fakes.FakeRunner(default=PermissionError(13, "Permission denied"))
    fallback = FakeFallback()
    dhcp = eph.EphemeralDhcp(NIC, root=tmp_path, runner=runner, kill=Kills(),
                             fallback=fallback)
    with dhcp as lease:
        assert lease.client == "fallback"


def test_carrier_is_polled_before_the_client_runs(tmp_path) -> None:
    carrier = tmp_path / "sys/class/net/eth0/carrier"
    carrier.parent.mkdir(parents=True)
    carrier.write_text("0\n")
    clock = [0.0]
    reads = []
    flip = [True]

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        reads.append(clock[0])
        if len(reads) == 3 and flip[0]:
            flip[0] = False
            carrier.write_text("1\n")

    dhcp = eph.EphemeralDhcp("eth0", root=tmp_path, runner=fakes.FakeRunner(), kill=Kills(),
                             clock=lambda: clock[0], sleep=sleep)
    dhcp._wait_for_carrier()
    assert len(reads) == 3  # stopped as soon as the carrier came up
    carrier.write_text("0\n")
    reads.clear()
    dhcp._wait_for_carrier(limit=0.01)
    assert 9 <= len(reads) <= 11  # gave up at the limit, no exception


# --- hostile leases (issue 13, item 11) ----------------------------------------

@pytest.mark.parametrize("mask", ["²", "①", "1" * 5000, "33", "-1", "255.255.255.0x"])
def test_a_mask_of_unicode_digits_or_many_digits_is_refused_cleanly(mask: str) -> None:
    lease = eph.make_lease("eth0", "10.0.0.4", mask, router="10.0.0.1")
    assert lease.prefix == 32  # no usable mask: a host route, as for a missing mask


@pytest.mark.parametrize("value", ["0.0.0.0", "0:0:0:0", "00000000"])
def test_option_245_zero_means_the_default_wireserver(value: str) -> None:
    lease = DHCLIENT_LEASE_NO_121.replace("a8:3f:81:10", value)
    assert eph.parse_dhclient_lease(lease, NIC).wireserver is None
    assert eph.parse_udhcpc_dump(f"ip=10.0.0.4\nmask=24\nopt245={value}\n", NIC).wireserver \
        is None
    assert eph.lease_from_dict({"fixed-address": "10.0.0.4", "unknown-245": value},
                               NIC).wireserver is None


def test_option_245_with_an_unterminated_quote_is_no_address() -> None:
    # The quote used to open the value and its first bytes became an address.
    assert eph.parse_option_245('option unknown-245 "abc;') is None
    assert eph.parse_udhcpc_dump('ip=10.0.0.4\nmask=24\nopt245="abc\n', NIC).wireserver \
        is None
    # In a dhclient lease file it leaves the block unterminated: no lease, a typed error.
    lease = DHCLIENT_LEASE_NO_121.replace("option unknown-245 a8:3f:81:10;",
                                          'option unknown-245 "abc;')
    with pytest.raises(DhcpError):
        eph.parse_dhclient_lease(lease, NIC)


def test_hostile_lease_files_parse_in_one_pass() -> None:
    # Each of these made the old non-greedy block regex rescan the rest of
    # the file from every "lease {" (quadratic); now they end the scan.
    for text in ("lease {" * 20000, 'lease { option x "' + "a;" * 20000,
                 "lease { interface " + "x " * 20000):
        with pytest.raises(DhcpError):
            eph.parse_dhclient_lease(text, NIC)
    quoted = 'lease {\n interface "eth0";\n fixed-address 10.0.0.4;\n' \
             ' option domain-name "a;b}c";\n option subnet-mask 255.255.255.0;\n}\n'
    assert eph.parse_dhclient_lease(quoted, NIC).prefix == 24
