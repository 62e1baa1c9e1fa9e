"""The requirements Azure documents for Linux images, checked in a tree.

Azure's list (the Azure Linux VM Agent overview, "Requirements"): Python,
OpenSSL 1.0+, OpenSSH 5.3+, file system tools (sfdisk, fdisk, mkfs,
parted), password tools (chpasswd, sudo), text tools (sed, grep), network
tools (ip-route) and kernel support for mounting UDF. The plug-in needs
Python 3.9+ itself and reads the provisioning DVD without the UDF driver,
so that line is reported as not needed.
"""

from __future__ import annotations

from cloudinit_azure.doctor.facts import Facts, show
from cloudinit_azure.doctor.model import Check, error, ok, warning

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


def _python(facts: Facts) -> Check:
    title = "Python 3.9+"
    found = facts.python
    if found is None:
        return error("python", AREA, title, "no python3 on PATH: cloud-init cannot run",
                     "install python3 (Debian: apt-get install python3)")
    exe, version = found
    if not version:
        return warning("python", AREA, title, f"{exe} found, but its version is unknown",
                       "make python3 a link to python3.X, as Debian does")
    if version < MIN_PYTHON:
        return error("python", AREA, title,
                     f"Python {show(version)} is older than the plug-in's 3.9",
                     "build the image from a release with Python 3.9 or newer")
    return ok("python", AREA, title, f"Python {show(version)} ({exe})")


def _openssl(facts: Facts) -> Check:
    title = "OpenSSL 1.0+"
    exe = facts.tree.which("openssl")
    if exe is None:
        return error("openssl", AREA, title,
                     "no openssl command: certificates (key fingerprints) cannot be decrypted",
                     "install openssl (Debian: apt-get install openssl)")
    version = facts.package_version("openssl") or facts.binary_version(
        exe, rb"OpenSSL (\d+\.\d+\.\d+)")
    if version is None:
        lib = facts.library(r"libssl\.so\.[0-9.]+")
        if lib:
            soname = lib.rsplit(".so.", 1)[1]
            version = tuple(int(p) for p in soname.split(".") if p.isdigit())
    if not version:
        return warning("openssl", AREA, title, f"{exe} found, its version is unknown",
                       "check 'openssl version' in the image says 1.0 or newer")
    if version < MIN_OPENSSL:
        return error("openssl", AREA, title, f"OpenSSL {show(version)} is older than 1.0",
                     "install OpenSSL 1.0 or newer")
    return ok("openssl", AREA, title, f"OpenSSL {show(version)} ({exe})")


def _openssh(facts: Facts) -> Check:
    title = "OpenSSH 5.3+"
    sshd = facts.tree.which("sshd")
    if sshd is None:
        return error("openssh", AREA, title, "no sshd: nobody can log in to the VM",
                     "install openssh-server (Debian: apt-get install openssh-server)")
    version = facts.package_version("openssh-server") or facts.binary_version(
        sshd, rb"OpenSSH_(\d+\.\d+)")
    if version is None:
        return warning("openssh", AREA, title, f"{sshd} found, its version is unknown",
                       "check 'sshd -V' in the image says OpenSSH 5.3 or newer")
    if version < MIN_OPENSSH:
        return error("openssh", AREA, title, f"OpenSSH {show(version)} is older than 5.3",
                     "install OpenSSH 5.3 or newer")
    return ok("openssh", AREA, title, f"OpenSSH {show(version)} ({sshd})")


def _tool(facts: Facts, name: str, package: str, needed: bool, what: str) -> Check:
    title = f"{name} ({package})"
    where = facts.tree.which(name)
    if where:
        return ok(f"tool.{name}", AREA, title, f"{where}: {what}")
    fix = f"install {package} (Debian: apt-get install {package})"
    if needed:
        return error(f"tool.{name}", AREA, title, f"missing: {what}", fix)
    return warning(f"tool.{name}", AREA, title, f"missing: {what}", fix)


def _udf(facts: Facts) -> Check:
    """Azure asks for UDF support to mount the DVD; the plug-in reads it with pycdlib."""
    title = "kernel UDF support"
    tree = facts.tree
    kernels = tree.listdir("lib/modules") or tree.listdir("usr/lib/modules")
    base = "lib/modules" if tree.listdir("lib/modules") else "usr/lib/modules"
    has_udf = any(tree.listdir(f"{base}/{k}/kernel/fs/udf") or "fs/udf/" in (
        tree.read_text(f"{base}/{k}/modules.builtin") or "") for k in kernels)
    pycdlib = facts.module_path("pycdlib")
    if pycdlib:
        driver = "present" if has_udf else "absent"
        return ok("udf", AREA, title,
                  f"not needed: the plug-in reads the DVD directly with pycdlib "
                  f"(udf driver {driver}; blacklisting it is fine)")
    if has_udf:
        return warning("udf", AREA, title,
                       "udf driver present but pycdlib missing: the DVD is read only by "
                       "mounting it",
                       "install python3-pycdlib so a hardened kernel without udf works too")
    return error("udf", AREA, title,
                 "neither the udf driver nor pycdlib: the provisioning DVD cannot be read",
                 "install python3-pycdlib (Debian: apt-get install python3-pycdlib)")


def checks(facts: Facts) -> list[Check]:
    out = [_python(facts), _openssl(facts), _openssh(facts)]
    out += [_tool(facts, *spec) for spec in TOOLS]
    out.append(_udf(facts))
    return out
