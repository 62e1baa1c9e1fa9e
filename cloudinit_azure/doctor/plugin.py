"""What the plug-in itself needs in an image: cloud-init, its modules, its tools."""

from __future__ import annotations

import re
from typing import Optional

from cloudinit_azure.doctor.facts import Facts, parse_version
from cloudinit_azure.doctor.model import Check, Subject, install
from cloudinit_azure.doctor.system import tool
from cloudinit_azure.ephemeral import (
    BUSYBOX_PATHS,
    DHCLIENT_PATHS,
    DHCPCD_PATHS,
    TIMEOUT_PATHS,
    UDHCPC_PATHS,
)

AREA = "plugin"
SUPPORTED = ((22, 4), (25, 1))  # cloud-init releases the plug-in is tested with
# The top-level shims cloud-init finds as config modules (setup.cfg py_modules).
SHIMS = ("cc_azure_kernel", "cc_azure_network", "cc_azure_ready", "cc_azure_resource_disk")
# Python module -> Debian package the plug-in imports it from.
PY_DEPS = (("requests", "python3-requests"), ("yaml", "python3-yaml"),
           ("jsonschema", "python3-jsonschema"), ("defusedxml", "python3-defusedxml"),
           ("cryptography", "python3-cryptography"))
# Tools the plug-in runs beyond Azure's list (system.TOOLS), and what breaks without.
TOOLS = (
    ("blkid", "util-linux", "the resource disk and the DVD are identified with it"),
    ("lsblk", "util-linux", "the resource disk's partitions are found with it"),
    ("mount", "mount", "the DVD and the resource disk are mounted with it"),
    ("umount", "mount", "the DVD is unmounted with it"),
    ("partx", "util-linux", "a new partition table is re-read with it"),
    ("udevadm", "udev", "the resource disk's new partition is awaited with it"),
    ("mkswap", "util-linux", "a swap file on the resource disk is made with it"),
    ("fallocate", "util-linux", "a swap file on the resource disk is allocated with it"),
    ("eject", "eject", "the provisioning DVD is ejected after Ready with it"),
)
DROPIN = re.compile(r"^\s*Include\s+(\S*sshd_config\.d/\S*)", re.I | re.M)
PASSWORD_AUTH = re.compile(r"^\s*PasswordAuthentication\s+\S+", re.I | re.M)


def _cloud_init(facts: Facts) -> Check:
    c = Subject("cloud-init", AREA, "cloud-init 22.4 .. 25.1")
    text = facts.cloud_init_version
    if text is None:
        return c.error("cloud-init is not installed",
                     install("cloud-init"))
    version = parse_version(text) or ()
    low, high = SUPPORTED
    if version[:2] < low:
        return c.error(f"cloud-init {text} is older than 22.4: its plug-in interface differs",
                     "install cloud-init 22.4 or newer (Debian 12 ships 22.4.2)")
    if version[:2] > high:
        return c.warning(f"cloud-init {text} is newer than 25.1, which is not tested yet",
                       "test the image with azure-sim before use, or use cloud-init 25.1")
    return c.ok(f"cloud-init {text}")


def _installed(facts: Facts) -> Check:
    c = Subject("plugin", AREA, "plug-in installed")
    pkg = facts.module_path("cloudinit_azure")
    if pkg is None:
        return c.error("the cloudinit_azure package is not on the image's Python path",
                     "install python3-cloudinit-azure (make deb) into the image")
    missing = [s for s in SHIMS if facts.module_path(s) is None]
    if missing:
        return c.error(f"shim modules missing: {', '.join(missing)}: cloud-init aborts the "
                     "stage that lists them",
                     "reinstall python3-cloudinit-azure (the shims are top-level modules)")
    return c.ok(f"{pkg.rsplit('/', 1)[0]} and the {len(SHIMS)} shims")


def _py_dep(facts: Facts, module: str, package: str) -> Check:
    c = Subject(f"python.{module}", AREA, f"Python module {module}")
    where = facts.module_path(module)
    if where:
        return c.ok(where)
    return c.error(f"{module} is missing: the plug-in cannot import it",
                 f"install {package} (Debian: apt-get install {package})")


def _first(facts: Facts, paths: tuple[str, ...]) -> Optional[str]:
    return next(("/" + p for p in paths if facts.tree.is_executable(p)), None)


def _dhcp(facts: Facts) -> Check:
    c = Subject("dhcp", AREA, "DHCP client (dhclient, dhcpcd, udhcpc)")
    found = _first(facts, DHCLIENT_PATHS) or _first(facts, UDHCPC_PATHS)
    if found is None:
        busybox = _first(facts, BUSYBOX_PATHS)
        if busybox and facts.tree.contains(busybox, rb"\0udhcpc\0"):
            found = f"{busybox} udhcpc"
    if found:
        return c.ok(f"{found}: the datasource's ephemeral DHCP uses it")
    dhcpcd = _first(facts, DHCPCD_PATHS)
    if dhcpcd and _first(facts, TIMEOUT_PATHS):
        return c.ok(f"{dhcpcd}: the datasource's ephemeral DHCP uses it")
    if dhcpcd:
        return c.warning(f"{dhcpcd} found but no timeout(1): cloud-init's slower helper is used",
                       "install coreutils (timeout) or isc-dhcp-client")
    return c.error("no supported DHCP client: init-local cannot reach IMDS or the wireserver",
                 "install isc-dhcp-client (or dhcpcd-base, or busybox's udhcpc)")


def _ntfs(facts: Facts) -> Check:
    c = Subject("ntfs-3g", AREA, "ntfs-3g (safe resource disk reformat)")
    missing = [t for t in ("ntfs-3g", "ntfsls") if facts.tree.which(t) is None]
    if not missing:
        return c.ok("the resource disk can be proven empty before it is reformatted")
    return c.warning(f"{' and '.join(missing)} missing: an NTFS resource disk can never be "
                   "proven empty, so it stays NTFS and is not mounted",
                   install("ntfs-3g"))


def _sshd_dropin(facts: Facts) -> Check:
    c = Subject("sshd-dropin", AREA, "sshd_config takes a drop-in")
    text = facts.tree.read_text("etc/ssh/sshd_config")
    if text is None:
        return c.error("no /etc/ssh/sshd_config: the password setting has nowhere to go",
                     "install openssh-server, which ships /etc/ssh/sshd_config")
    m = DROPIN.search(text)
    if m is None:
        return c.warning("no 'Include /etc/ssh/sshd_config.d/*.conf': the password setting "
                       "is written into sshd_config itself",
                       "add 'Include /etc/ssh/sshd_config.d/*.conf' as the first line of "
                       "/etc/ssh/sshd_config")
    early = PASSWORD_AUTH.search(text[:m.start()])
    if early:
        return c.warning(f"'{early.group(0).strip()}' comes before the Include: sshd keeps "
                       "the first value, so the drop-in's setting is ignored",
                       "move that line below the Include (or delete it)")
    if not facts.tree.is_dir("etc/ssh/sshd_config.d"):
        return c.warning("sshd_config includes sshd_config.d, but the directory is missing",
                       "mkdir -m 0755 /etc/ssh/sshd_config.d in the image")
    return c.ok(f"Include {m.group(1)}")


def checks(facts: Facts) -> list[Check]:
    out = [_cloud_init(facts), _installed(facts)]
    out += [_py_dep(facts, *spec) for spec in PY_DEPS]
    out += [tool(facts, AREA, name, package, False, what) for name, package, what in TOOLS]
    out += [_dhcp(facts), _ntfs(facts), _sshd_dropin(facts)]
    return out
