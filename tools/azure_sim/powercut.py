"""Power cuts in the sandbox: where they land, and what the recovery boot must show.

A scenario's ``power_cut: {boot: N, at: POINT}`` kills every process of the
VM at once (SIGKILL, no clean shutdown) at POINT of boot N; boot N+1 runs on
the same root and resource disk (docs/reliability.md). Points:

- ``after:<stage>``: when that stage (or the OS network step) has ended;
- ``after:ready``: once the plug-in has recorded Ready as delivered;
- ``request:<endpoint>:<n>``: the n-th request to the endpoint in boot N; it
  never reaches the platform (journalled with status ``cut``);
- ``during:<step>``: in the middle of a step. ``format`` (mkfs.*), ``useradd``
  and ``ssh-keygen``: the real program runs to its end, then the cut lands
  before its caller learns the result; ``fstab`` and ``grub``: a Python hook
  cuts when the file is opened for writing in place (it is truncated), or
  just before it is renamed into place. A hook announces the cut with a line
  starting ``AZURE-SIM-POWER-CUT`` (the sandbox: a file in /run; the VM: the
  report serial port, vmpowercut.py) and waits to be killed.

Weaker than a real power cut: the page cache survives a process kill, so a
write that was never synced still reaches the disk. The VM tier's cut
(QEMU killed by pid) loses it.
"""

from __future__ import annotations

import json
import os
import signal
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any, Optional

ANNOUNCE = "run/azure-sim/power-cut"       # a guest hook says: cut now
ARMED = "run/azure-sim/power-cut.armed"    # hooks act only in the cut boot
WRAPPED = {"format": ("mkfs.ext4", "mkfs.xfs", "mkfs.btrfs"),
           "useradd": ("useradd",), "ssh-keygen": ("ssh-keygen",)}
FILES = {"fstab": ["/etc/fstab"],
         "grub": ["/etc/default/grub", "/etc/default/grub.d/50-cloudinit-azure.cfg"]}

MARK = "AZURE-SIM-POWER-CUT"               # what an announcement starts with

# The armed file: the step on its first line, then the files the Python hook
# watches. A wrapper acts only for its own step (the VM image has all of them).
WRAPPER = """#!/bin/sh
# azure-sim power-cut hook (test-only): in the armed boot, run the real
# program to its end, then announce the cut and wait for it.
step=
{{ read -r step < /{armed}; }} 2>/dev/null
if [ "$step" = "{step}" ]; then
  {real} "$@"
  rc=$?
  echo "{mark} {name} exited $rc" > {announce}
  sleep 600
  exit $rc
fi
exec {real} "$@"
"""

HOOK = '''"""azure-sim power-cut hook (test-only), loaded by a .pth in the armed boot."""
import builtins
import os
import time

_ARMED = "/{armed}"
_ANNOUNCE = "{announce}"


def _install():
    try:
        with open(_ARMED, encoding="utf-8") as fh:
            prefixes = [p for p in fh.read().split() if p.startswith("/")]
    except OSError:
        return
    if not prefixes:
        return
    real_open, real_os_open = builtins.open, os.open
    real_replace, real_rename = os.replace, os.rename

    def hit(path):
        try:
            path = os.path.abspath(os.fsdecode(path))
        except TypeError:
            return False
        return path in prefixes

    def cut(what):
        with real_open(_ANNOUNCE, "w", encoding="utf-8") as fh:
            fh.write("{mark} " + what + "\\n")
        time.sleep(600)

    def hooked_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, bytes, os.PathLike)) and "w" in mode and hit(file):
            cut(f"open({{file}}, {{mode}})")
        return fh

    def hooked_os_open(path, flags, *args, **kwargs):
        fd = real_os_open(path, flags, *args, **kwargs)
        if flags & os.O_TRUNC and hit(path):
            cut(f"os.open({{path}}, O_TRUNC)")
        return fd

    def hooked_replace(src, dst, *args, **kwargs):
        if hit(dst):
            cut(f"rename onto {{dst}}")
        return real_replace(src, dst, *args, **kwargs)

    def hooked_rename(src, dst, *args, **kwargs):
        if hit(dst):
            cut(f"rename onto {{dst}}")
        return real_rename(src, dst, *args, **kwargs)

    builtins.open, os.open = hooked_open, hooked_os_open
    os.replace, os.rename = hooked_replace, hooked_rename


_install()
'''


def point(spec: dict[str, Any]) -> dict[str, Any]:
    """The plan's view of a validated ``power_cut``: boot, at, kind, target."""
    kind, _, rest = spec["at"].partition(":")
    out = {"boot": spec["boot"], "at": spec["at"], "kind": kind, "target": rest}
    if kind == "request":
        endpoint, _, n = rest.partition(":")
        out.update(endpoint=endpoint, n=int(n))
    return out


def platform_trigger(cut: dict[str, Any], plat_dir: Path) -> dict[str, Any]:
    """The platform's side of a request point (fabric.py): the count starts when armed."""
    return {"endpoint": cut.get("endpoint", "none"), "n": cut.get("n", 0),
            "file": str(plat_dir / "power-cut"), "armed": str(plat_dir / "power-cut.armed")}


def wrapper(step: str, name: str, real: str, announce: str) -> str:
    """The shell wrapper of ``name`` for ``step``: announces on ``announce`` (a file
    the sandbox watches, the VM's report serial port)."""
    return WRAPPER.format(armed=ARMED, step=step, mark=MARK, announce=announce,
                          name=name, real=real)


def hook(announce: str) -> str:
    """The Python hook (fstab, grub): loaded by a .pth, acts only when armed."""
    return HOOK.format(armed=ARMED, mark=MARK, announce=announce)


def armed_text(cut: dict[str, Any]) -> str:
    """What the armed file holds for the cut: its step, then the hook's files."""
    return "\n".join([cut["target"], *FILES.get(cut["target"], [])]) + "\n"


def announced(text: str) -> Optional[str]:
    """The first announcement in ``text`` (what a hook said, without the mark), or None."""
    for line in text.replace("\r", "").splitlines():
        if line.startswith(MARK):
            return line[len(MARK):].strip() or MARK
    return None


def install(plan: dict[str, Any], root: Path) -> None:
    """Put the (inert until armed) guest hooks for a ``during:`` point into the image."""
    cut = plan.get("power_cut")
    if not cut or cut["kind"] != "during":
        return
    step = cut["target"]
    for name in WRAPPED.get(step, ()):
        real = next((d for d in ("usr/sbin", "usr/bin", "sbin", "bin")
                     if (root / d / name).exists()), None)
        if real is None:
            continue
        path = root / "usr/local/sbin" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wrapper(step, name, f"/{real}/{name}", f"/{ANNOUNCE}"))
        os.chmod(path, 0o755)  # noqa: S103 - a program the VM runs
    if step in FILES:
        site = root / sysconfig.get_paths()["purelib"].lstrip("/")
        (site / "azure_sim_power_cut.py").write_text(hook(f"/{ANNOUNCE}"))
        (site / "azure_sim_power_cut.pth").write_text("import azure_sim_power_cut\n")


def arm(plan: dict[str, Any], root: Path) -> None:
    """Before the cut boot: hooks in the VM (and the platform's counter) go live."""
    cut = plan["power_cut"]
    armed = root / ARMED
    armed.parent.mkdir(parents=True, exist_ok=True)
    armed.write_text(armed_text(cut))
    if cut["kind"] == "request":
        Path(plan["platform"]["power_cut"]["armed"]).write_text("armed\n")


def disarm(plan: dict[str, Any]) -> None:
    if plan.get("power_cut", {}).get("kind") == "request":
        Path(plan["platform"]["power_cut"]["armed"]).unlink(missing_ok=True)


def fired(plan: dict[str, Any], root: Path) -> Optional[str]:
    """What announced the cut (a guest hook, the platform, Ready delivered), or None."""
    cut = plan["power_cut"]
    try:
        return announced((root / ANNOUNCE).read_text()) or ANNOUNCE
    except OSError:
        pass
    try:
        return Path(plan["platform"].get("power_cut", {}).get(
            "file", "/nonexistent")).read_text().strip() or "power-cut"
    except OSError:
        pass
    if cut["at"] == "after:ready":
        for marker in (root / "var/lib/cloudinit-azure").glob("health-*.json"):
            try:
                data = json.loads(marker.read_text())
            except (OSError, ValueError):
                continue
            if data.get("state") == "ready" and data.get("delivered"):
                return f"Ready delivered ({marker.name})"
    return None


class Cutter:
    """The sandbox's side of a power cut: arm, watch, cut, and say if it never came."""

    def __init__(self, box: Any) -> None:
        self.box = box
        self.why: Optional[str] = None  # what announced the cut, once it happened
        self._done = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        arm(self.box.plan, self.box.root)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set() and self.why is None:
            why = fired(self.box.plan, self.box.root)
            if why:
                self.cut(why)
                return
            time.sleep(0.001)

    def cut(self, why: str) -> None:
        self.why = why
        self.box.kill_vm()
        self.box.event("power cut", at=self.box.plan["power_cut"]["at"], why=why)

    def stage_ended(self, name: str) -> bool:
        """True when the boot ends here: a hook cut it, or the point is this stage's end."""
        if self.why is None and self.box.plan["power_cut"]["at"] == f"after:{name}":
            self.cut(f"{name} ended")
        return self.why is not None

    def stop(self, boot: int) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        disarm(self.box.plan)
        if self.why is None:
            raise RuntimeError(f"power cut {self.box.plan['power_cut']['at']} never "
                               f"happened in boot {boot}")


def kill_all(proc: Path, platform: int, keep: set[int]) -> None:
    """SIGKILL, at once, every process of the pid namespace whose ``proc`` this is,
    but ourselves, ``keep`` and the platform (``platform`` and its descendants)."""
    keep = keep | {os.getpid(), platform}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in keep or _descends(proc, pid, platform):
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _descends(proc: Path, pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == ancestor:
            return True
    return False


BASE_MOUNTS = ("", "/proc", "/proc/sys", "/proc/sys/net", "/sys", "/sys/firmware",
               "/run", "/dev", "/dev/pts", "/dev/shm")


def vm_mounts(root: Path) -> list[str]:
    """What the VM mounted (deepest first): a power cut leaves none of it mounted."""
    prefix = str(root)
    made = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if (target == prefix or target.startswith(prefix + "/")) and \
                target[len(prefix):] not in BASE_MOUNTS:
            made.append(target)
    return sorted(made, key=len, reverse=True)


def fstab_mounts(root: Path) -> list[str]:
    """Mount points systemd would mount at boot from the VM's fstab (not /, swap, noauto)."""
    try:
        lines = (root / "etc/fstab").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) >= 4 and words[2] not in ("swap", "none") and words[1] != "/" \
                and "noauto" not in words[3].split(","):
            out.append(words[1])
    return out
