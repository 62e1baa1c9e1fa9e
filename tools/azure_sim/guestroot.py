"""The simulated VM's image before it boots: the cloud-init under test, its
configuration and our stand-ins (DMI, service manager, optional mount shim)
in the overlay's upper layer; the platform's changes between two boots; the
image's own network stack's commands. Runs on the host (the sandbox and the
VM image builder); what runs inside the VM is :mod:`azure_sim.guest`.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
from pathlib import Path
from typing import Any, Optional

import yaml

from azure_sim.guest import KVP_POOL

AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_text(text)
    os.chmod(path, mode)


def dmidecode_script(answers: dict[str, str]) -> str:
    cases = "\n".join(f'  {key}) echo "{value}" ;;' for key, value in answers.items())
    return f"""#!/bin/sh
# azure-sim stand-in: this machine has no DMI tables.
key=""
while [ $# -gt 0 ]; do
  case "$1" in
    -s|--string) key="$2"; shift 2 ;;
    --string=*) key="${{1#--string=}}"; shift ;;
    *) shift ;;
  esac
done
case "$key" in
{cases}
  *) echo "" ;;
esac
"""


SERVICE_STANDIN = """#!/bin/sh
# azure-sim stand-in for the service manager: the sandbox runs no init system
# (cloud images run systemd; /run/systemd/system says so to cloud-init).
# Every call is logged so a test can see what the VM asked for. sshd is
# inactive until cloud-init's network stage has ended (Debian's ssh.service
# starts after cloud-init.service); any other unit is active.
mkdir -p /run/azure-sim
echo "$(basename "$0") $*" >> /run/azure-sim/services.log
state=active
for arg in "$@"; do
  case "$arg" in
    ssh|sshd|ssh.service|sshd.service)
      case "$(cat /run/azure-sim/stage 2>/dev/null)" in
        init-local|os-network|init) state=inactive ;;
      esac ;;
  esac
done
if [ "$1" = show ]; then
  # systemctl show -p NAME [--value] [unit]: NAME=<monotonic usec> for timestamps.
  value=
  while [ $# -gt 0 ]; do
    case "$1" in
      -p|--property) shift; prop="$1" ;;
      --property=*) prop="${1#--property=}" ;;
      --value) value=1 ;;
    esac
    shift
  done
  case "$prop" in
    *Monotonic) answer="$(awk '{printf "%d", $1 * 1000000}' /proc/uptime)" ;;
    ActiveState) answer="$state" ;;
    *) answer= ;;
  esac
  if [ -n "$value" ]; then echo "$answer"; else echo "$prop=$answer"; fi
  exit 0
fi
case "$*" in
  *is-active*|*status*)
    echo "$state"
    [ "$state" = active ] || exit 3 ;;
esac
exit 0
"""


# Swap, kernel modules and the clock are not namespaced: a VM in the sandbox
# must never reach the host's. These stand-ins record what was asked.
HOST_GLOBAL_STANDIN = """#!/bin/sh
# azure-sim stand-in: this would change the host kernel, which the sandbox
# shares. The call is recorded; swapon's view of active swap is kept here.
mkdir -p /run/azure-sim
prog=$(basename "$0")
echo "$prog $*" >> /run/azure-sim/host-global.log
if [ "$prog" = swapon ]; then
  case "$*" in
    ""|-s|--summary|--show*|*--show*)
      [ -f /run/azure-sim/swaps ] && cat /run/azure-sim/swaps
      exit 0 ;;
  esac
  for arg in "$@"; do
    case "$arg" in -*) ;; *) echo "$arg" >> /run/azure-sim/swaps ;; esac
  done
fi
exit 0
"""

EJECT_STANDIN = """#!/bin/sh
# azure-sim stand-in: the DVD is a read-only loop device the platform owns;
# ejecting it is recorded for the report.
mkdir -p /run/azure-sim
echo "$*" >> /run/azure-sim/eject.log
exit 0
"""


def install(plan: dict[str, Any], root: Path) -> None:
    """Prepare the VM image in the overlay's upper layer (before first boot)."""
    tree = Path(plan["cloud_init_tree"])
    shutil.copytree(tree / "etc/cloud", root / "etc/cloud", dirs_exist_ok=True)
    shutil.copytree(tree / "usr/lib/cloud-init", root / "usr/lib/cloud-init",
                    dirs_exist_ok=True)
    shutil.copy2(tree / "usr/bin/cloud-init", root / "usr/bin/cloud-init")
    cfgd = root / "etc/cloud/cloud.cfg.d"
    _write(cfgd / "90_dpkg.cfg", "# as an Azure image ships it\n"
           "datasource_list: [ Azure, None ]\n")
    for src in plan.get("plugin_cfg_files", []):
        shutil.copy2(src, cfgd / Path(src).name)
    sim_cfg: dict[str, Any] = {
        # The sandbox's root file system is an overlay on the host's: never grow it.
        "resize_rootfs": False,
        "growpart": {"mode": "off"},
        "locale": "C.UTF-8",
        "ssh_genkeytypes": ["ed25519"],
    }
    sim_cfg.update(plan.get("cloud_config") or {})
    _write(cfgd / "99_azure_sim.cfg", "# azure-sim sandbox settings\n"
           + yaml.safe_dump(sim_cfg, sort_keys=True))
    answers = {
        "system-uuid": plan["dmi_uuid"],
        "chassis-asset-tag": AZURE_ASSET_TAG if plan.get("on_azure", True) else "",
        "system-product-name": "Virtual Machine",
        "system-manufacturer": "Microsoft Corporation",
        "chassis-manufacturer": "Microsoft Corporation",
        "system-serial-number": "0000-0000-0000-0000-0000-0000-00",
        "baseboard-asset-tag": "None",
    }
    _write(root / "usr/sbin/dmidecode", dmidecode_script(answers), 0o755)
    for name in ("usr/bin/systemctl", "usr/sbin/service", "usr/sbin/invoke-rc.d"):
        _write(root / name, SERVICE_STANDIN, 0o755)
    _write(root / "usr/bin/eject", EJECT_STANDIN, 0o755)
    for name in ("usr/sbin/swapon", "usr/sbin/swapoff", "usr/sbin/modprobe",
                 "usr/sbin/rmmod", "usr/sbin/insmod", "usr/sbin/hwclock"):
        _write(root / name, HOST_GLOBAL_STANDIN, 0o755)
    if plan.get("mount_shim"):
        shim = (f"#!/bin/sh\nPYTHONPATH={plan['tools_dir']} exec {plan['python']} "
                "-m azure_sim.mountshim \"$(basename \"$0\")\" \"$@\"\n")
        _write(root / "usr/local/sbin/mount", shim, 0o755)
        _write(root / "usr/local/sbin/umount", shim, 0o755)
        real = root / "usr/lib/azure-sim/lsblk.real"
        real.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / "usr/bin/lsblk", real)
        _write(root / "usr/bin/lsblk", shim.replace('"$(basename \\"$0\\")"', "lsblk"),
               0o755)
    if plan.get("seed_ovf"):
        seed = root / "var/lib/cloud/seed/azure"
        seed.mkdir(parents=True, exist_ok=True)
        shutil.copy2(plan["seed_ovf"], seed / "ovf-env.xml")
        os.chmod(seed / "ovf-env.xml", 0o600)
    _system_users(root, plan.get("dhcp_client"))
    for rel, spec in (plan.get("image_files") or {}).items():
        # Files the image carries before first boot (e.g. /etc/default/grub,
        # a fake sysfs tree for a module's configurable sysfs root).
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        if spec is None:
            continue  # a file this image lacks (e.g. a tool not installed)
        if isinstance(spec, dict):
            os.symlink(spec["symlink"], path)
        else:
            path.write_text(spec)
            if spec.startswith("#!"):
                os.chmod(path, 0o755)  # noqa: S103 - a script the image ships
    kvp = root / KVP_POOL
    kvp.parent.mkdir(parents=True, exist_ok=True)
    kvp.write_bytes(b"")
    for client in plan.get("remove_clients", []):
        for path in glob.glob(str(root / client.lstrip("/"))):
            os.unlink(path)
    fake_sys = plan.get("fake_sys")
    if fake_sys:
        shutil.copytree(fake_sys, root / "run/azure-sim-fake-sys", symlinks=True)
    install_run(plan, root)


def _system_users(root: Path, client: Optional[str]) -> None:
    """Accounts the image's packages' maintainer scripts would have created."""
    wanted = {"dhcpcd": ("dhcpcd", "/usr/lib/dhcpcd"), "sshd": ("sshd", "/run/sshd")}
    passwd = (root / "etc/passwd").read_text()
    group = (root / "etc/group").read_text()
    uids = {int(line.split(":")[2]) for line in passwd.splitlines() if line.count(":") >= 6}
    for name, home in wanted.values():
        if f"\n{name}:" in "\n" + passwd:
            continue
        uid = next(u for u in range(100, 1000) if u not in uids)
        uids.add(uid)
        passwd += f"{name}:x:{uid}:65534::{home}:/usr/sbin/nologin\n"
        if f"\n{name}:" not in "\n" + group:
            group += f"{name}:x:{uid}:\n"
    _write(root / "etc/passwd", passwd)
    _write(root / "etc/group", group)
    shadow = root / "etc/shadow"
    text = shadow.read_text()
    for name, _ in wanted.values():
        if f"\n{name}:" not in "\n" + text:
            text += f"{name}:!:19000::::::\n"
    _write(shadow, text, 0o640)


def install_run(plan: dict[str, Any], root: Path) -> None:
    """What a boot finds in /run (re-made at every simulated reboot)."""
    (root / "run/azure-sim").mkdir(parents=True, exist_ok=True)
    (root / "run/systemd/system").mkdir(parents=True, exist_ok=True)
    (root / "run/sshd").mkdir(mode=0o755, exist_ok=True)
    (root / "run/lock").mkdir(exist_ok=True)


RAW_USER_DATA = b"azure-sim: data a user wrote to the raw resource disk\n" * 64


def before_boot(hook: dict[str, Any], plan: dict[str, Any], root: Path) -> None:
    """Platform-side changes between two boots (e.g. a redeploy's fresh disk)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4]
        if mnt.startswith(str(root / "mnt")):
            os.system(f"umount -l {mnt}")  # noqa: S605 - path we built
    if hook["kind"] == "raw_use_disk":
        import subprocess

        device = hook["device"]
        sys_dir = Path("/sys/block") / Path(device).name
        for part in sorted(p for p in sys_dir.iterdir() if (p / "partition").exists()):
            subprocess.run(["wipefs", "-a", f"/dev/{part.name}"], check=True,
                           capture_output=True)
        subprocess.run(["wipefs", "-a", device], check=True, capture_output=True)
        with open(device, "r+b") as dev:
            dev.seek(4 << 20)
            dev.write(RAW_USER_DATA)
            dev.flush()
            os.fsync(dev.fileno())
        _rescan_partitions(device, root)
    elif hook["kind"] == "redeploy_disk":
        from azure_sim import images

        images.refresh_resource_disk(hook["spec"], hook["device"], Path(hook["cache"]),
                                     plan["tool_env"], Path(hook["scratch"]))
        _rescan_partitions(hook["device"], root)


def _rescan_partitions(device: str, root: Path) -> None:
    """What a booting kernel does with a replaced disk: read its partitions anew.

    This kernel parses no partition table, so ``partx`` does; the VM's
    /dev/sdbN nodes are remade with the new numbers.
    """
    import subprocess

    subprocess.run(["partx", "-d", device], check=False, capture_output=True)
    subprocess.run(["partx", "-a", device], check=False, capture_output=True)
    dev = root / "dev"
    for old in dev.glob("sdb[0-9]*"):
        old.unlink()
    sys_dir = Path("/sys/block") / Path(device).name
    for part in sorted(p for p in sys_dir.iterdir() if (p / "partition").exists()):
        n = (part / "partition").read_text().strip()
        major, minor = (int(x) for x in (part / "dev").read_text().split(":"))
        node = dev / f"sdb{n}"
        os.mknod(node, 0o660 | stat.S_IFBLK, os.makedev(major, minor))
        link = dev / "disk/cloud" / f"azure_resource-part{n}"
        if link.is_symlink():
            link.unlink()
        os.symlink(f"../../sdb{n}", link)


def networkd_routes(root: Path) -> list[list[str]]:
    """``ip route replace`` commands for the [Route] sections cloud-init rendered.

    The OS network (systemd-networkd in a cloud image) applies them at every
    boot; the simulator's stand-in for it does the same after DHCP.
    """
    cmds = []
    for path in sorted((root / "etc/systemd/network").glob("*.network")):
        name, section, routes = None, None, []
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line.strip("[]")
                if section == "Route":
                    routes.append({})
                continue
            key, _, value = line.partition("=")
            if section == "Match" and key.strip() == "Name":
                name = value.strip()
            elif section == "Route" and routes:
                routes[-1][key.strip()] = value.strip()
        for route in routes:
            if "Destination" in route and "Gateway" in route:
                cmd = ["ip", "route", "replace", route["Destination"], "via",
                       route["Gateway"]]
                if name and "*" not in name:
                    cmd += ["dev", name]
                cmds.append(cmd)
    return cmds


def os_network_command(plan: dict[str, Any]) -> list[str]:
    """How the image's own network stack brings up eth0 after init-local."""
    client = plan.get("dhcp_client", "dhclient")
    if client == "dhcpcd":
        return ["dhcpcd", "-4", "-w", "-t", "30", "eth0"]
    if client == "udhcpc":
        return ["udhcpc", "-i", "eth0", "-n", "-q", "-t", "10", "-T", "1",
                "-s", "/etc/udhcpc/default.script"]
    return ["dhclient", "-4", "-v", "-1", "-pf", "/run/dhclient.eth0.pid",
            "-lf", "/var/lib/dhcp/dhclient.eth0.leases", "eth0"]
