"""The requirements Azure documents for Linux images, checked in a tree.

Azure's list (the Azure Linux VM Agent overview, "Requirements"): Python,
OpenSSL 1.0+, OpenSSH 5.3+, file system tools (sfdisk, fdisk, mkfs,
parted), password tools (chpasswd, sudo), text tools (sed, grep), network
tools (ip-route) and kernel support for mounting UDF. The plug-in needs
Python 3.9+ itself and reads the provisioning DVD without the UDF driver,
so that line is reported as not needed.
"""

from __future__ import annotations

from typing import Optional

from cloudinit_azure.doctor.facts import Facts, Version, show
from cloudinit_azure.doctor.model import Check, Subject, install

AREA = "azure"
MIN_PYTHON = (3, 9)
MIN_OPENSSL = (1, 0)
MIN_OPENSSH = (5, 3)

# tool -> (Debian package, used by the plug-in or cloud-init?, what for)
TOOLS = (
    ("sfdisk", "fdisk", True, "the resource disk module partitions the disk with it"),
    ("fdisk", "fdisk", False, "Azure lists it; the plug-in itself uses sfdisk"),
    ("mkfs.ext4", "e2fsprogs", True, "the resource disk module formats the disk with it"),
    ("parted", "parted", False, "Azure lists it; the plug-in itself uses sfdisk"),
    ("chpasswd", "passwd", True, "cloud-init sets the admin password with it"),
    ("sudo", "sudo", True, "the admin user gets root through sudo"),
    ("sed", "sed", False, "Azure lists it (the Azure Linux Agent calls it)"),
    ("grep", "grep", False, "Azure lists it (the Azure Linux Agent calls it)"),
    ("ip", "iproute2", True, "the datasource brings up the network and routes with it"),
)


def _at_least(c: Subject, name: str, exe: str, version: Optional[Version],
              minimum: Version, verify: str) -> Check:
    """The common end of a version check: unknown, too old, or fine."""
    if not version:
        return c.warning(f"{exe} found, its version is unknown", verify)
    if version < minimum:
        return c.error(f"{name} {show(version)} is older than {show(minimum)}",
                       f"install {name} {show(minimum)} or newer")
    return c.ok(f"{name} {show(version)} ({exe})")


def _python(facts: Facts) -> Check:
    c = Subject("python", AREA, "Python 3.9+")
    if facts.python is None:
        return c.error("no python3 on PATH: cloud-init cannot run", install("python3"))
    exe, version = facts.python
    return _at_least(c, "Python", exe, version, MIN_PYTHON,
                     "make python3 a link to python3.X, as Debian does")


def _program(facts: Facts, program: str, package: str,
             pattern: bytes) -> tuple[Optional[str], Optional[Version]]:
    """Where ``program`` is, and its version: dpkg's, else the one compiled into it."""
    exe = facts.tree.which(program)
    if exe is None:
        return None, None
    return exe, facts.package_version(package) or facts.binary_version(exe, pattern)


def _openssl(facts: Facts) -> Check:
    c = Subject("openssl", AREA, "OpenSSL 1.0+")
    exe, version = _program(facts, "openssl", "openssl", rb"OpenSSL (\d+\.\d+\.\d+)")
    if exe is None:
        return c.error("no openssl command: certificates (key fingerprints) cannot be "
                       "decrypted", install("openssl"))
    lib = None if version else facts.library(r"libssl\.so\.[0-9.]+")
    if lib:
        version = tuple(int(p) for p in lib.rsplit(".so.", 1)[1].split(".") if p.isdigit())
    return _at_least(c, "OpenSSL", exe, version, MIN_OPENSSL,
                     "check 'openssl version' in the image says 1.0 or newer")


def _openssh(facts: Facts) -> Check:
    c = Subject("openssh", AREA, "OpenSSH 5.3+")
    sshd, version = _program(facts, "sshd", "openssh-server", rb"OpenSSH_(\d+\.\d+)")
    if sshd is None:
        return c.error("no sshd: nobody can log in to the VM", install("openssh-server"))
    return _at_least(c, "OpenSSH", sshd, version, MIN_OPENSSH,
                     "check 'sshd -V' in the image says OpenSSH 5.3 or newer")


def tool(facts: Facts, area: str, name: str, package: str, needed: bool,
         what: str) -> Check:
    """Is ``name`` on the image's PATH? An error when ``needed``, else a warning."""
    c = Subject(f"tool.{name}", area, f"{name} ({package})")
    where = facts.tree.which(name)
    if where:
        return c.ok(f"{where}: {what}")
    return (c.error if needed else c.warning)(f"missing: {what}", install(package))


def _udf(facts: Facts) -> Check:
    """Azure asks for UDF support to mount the DVD; the plug-in reads it with pycdlib."""
    c = Subject("udf", AREA, "kernel UDF support")
    tree = facts.tree
    kernels = tree.listdir("lib/modules") or tree.listdir("usr/lib/modules")
    base = "lib/modules" if tree.listdir("lib/modules") else "usr/lib/modules"
    has_udf = any(tree.listdir(f"{base}/{k}/kernel/fs/udf") or "fs/udf/" in (
        tree.read_text(f"{base}/{k}/modules.builtin") or "") for k in kernels)
    pycdlib = facts.module_path("pycdlib")
    if pycdlib:
        driver = "present" if has_udf else "absent"
        return c.ok(f"not needed: the plug-in reads the DVD directly with pycdlib "
                  f"(udf driver {driver}; blacklisting it is fine)")
    if has_udf:
        return c.warning("udf driver present but pycdlib missing: the DVD is read only by "
                       "mounting it",
                       "install python3-pycdlib so a hardened kernel without udf works too")
    return c.error("neither the udf driver nor pycdlib: the provisioning DVD cannot be read",
                 install("python3-pycdlib"))


def checks(facts: Facts) -> list[Check]:
    out = [_python(facts), _openssl(facts), _openssh(facts)]
    out += [tool(facts, AREA, *spec) for spec in TOOLS]
    out.append(_udf(facts))
    return out
