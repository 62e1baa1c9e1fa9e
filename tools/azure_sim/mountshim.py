"""Stand-in ``mount``/``umount`` for a kernel without iso9660/udf drivers.

This machine's kernel cannot mount the provisioning DVD. To show cloud-init's
built-in datasource at its best, a read-only mount of an ISO/UDF device is
served by extracting the image into the target directory; ``umount`` of such
a directory removes the copy. Everything else goes to the real program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

STATE = Path("/run/azure-sim/shim-mounts.json")
REAL = {"mount": "/usr/bin/mount", "umount": "/usr/bin/umount",
        "lsblk": "/usr/lib/azure-sim/lsblk.real"}
MEDIA_TYPES = {"udf", "iso9660", "auto"}


def _load() -> dict[str, str]:
    try:
        return json.loads(STATE.read_text())
    except (OSError, ValueError):
        return {}


def _save(state: dict[str, str]) -> None:
    STATE.parent.mkdir(parents=True, exist_ok=True)
    STATE.write_text(json.dumps(state))


def _is_media(device: str) -> bool:
    try:
        out = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", device],
                             capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return False
    return out in ("udf", "iso9660")


def _extract(device: str, target: str) -> None:
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(device)
    try:
        facade = iso.get_udf_facade() if iso.has_udf() else iso.get_joliet_facade()
        for child in facade.list_children("/"):
            if child is None:  # the UDF parent entry
                continue
            name = child.file_identifier().decode("utf-8", "replace")
            if name in (".", "..", "") or child.is_dir():
                continue
            with open(os.path.join(target, name), "wb") as fh:
                facade.get_file_from_iso_fp(fh, "/" + name)
    finally:
        iso.close()


def do_mount(args: list[str]) -> int:
    fstype, opts, positional = None, "", []
    i = 0
    while i < len(args):
        if args[i] == "-t":
            fstype, i = args[i + 1], i + 2
        elif args[i] == "-o":
            opts, i = args[i + 1], i + 2
        elif args[i].startswith("-"):
            i += 1
        else:
            positional.append(args[i])
            i += 1
    if (len(positional) == 2 and (fstype or "auto") in MEDIA_TYPES
            and "ro" in opts.split(",") and _is_media(positional[0])):
        _extract(positional[0], positional[1])
        state = _load()
        state[os.path.realpath(positional[1])] = positional[0]
        _save(state)
        return 0
    os.execv(REAL["mount"], ["mount", *args])  # noqa: S606 - the real program
    return 1


def do_umount(args: list[str]) -> int:
    targets = [a for a in args if not a.startswith("-")]
    state = _load()
    if len(targets) == 1 and os.path.realpath(targets[0]) in state:
        target = os.path.realpath(targets[0])
        for entry in os.listdir(target):
            path = os.path.join(target, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
        del state[target]
        _save(state)
        return 0
    os.execv(REAL["umount"], ["umount", *args])  # noqa: S606 - the real program
    return 1


def do_lsblk(args: list[str]) -> int:
    """Show loop devices as the disks and partitions they stand in for.

    cloud-init's disk_setup refuses a device whose lsblk TYPE is not "disk";
    in the sandbox the resource disk is a loop device.
    """
    import re

    proc = subprocess.run([REAL["lsblk"], *args], capture_output=True, text=True,
                          check=False)
    out = re.sub(r'NAME="(loop\d+)"(.*?)TYPE="loop"', r'NAME="\1"\2TYPE="disk"',
                 proc.stdout)
    out = re.sub(r'NAME="(loop\d+p\d+)"(.*?)TYPE="loop"', r'NAME="\1"\2TYPE="part"', out)
    sys.stdout.write(out)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def main(argv: list[str]) -> int:
    prog, args = argv[0], argv[1:]
    if prog == "lsblk":
        return do_lsblk(args)
    return do_umount(args) if prog == "umount" else do_mount(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
