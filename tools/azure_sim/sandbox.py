"""The simulated VM: runs as PID 1 of fresh namespaces made by ``unshare``.

``python -m azure_sim.sandbox PLAN.json`` is started by the boot command as
``unshare --mount --uts --ipc --net --pid --fork --kill-child
--propagation private``. It builds an overlay root (the image layer and the
host root below, a tmpfs above), private /dev, /run, proc and a read-only
sysfs, starts the platform in a further network namespace joined to ours by
a veth pair, runs the four cloud-init stages chrooted into the overlay, and
writes what it observed to ``raw.json``. When this process exits the kernel
ends every process of the namespace and drops every mount: nothing made here
outlives the run. Loop devices are the boot command's to detach.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from azure_sim import guest, guestroot, power, powercut, pps, recovery, sandboxfs, sandboxnet
from azure_sim.sandboxfs import mount, sh

STAGES = [
    ("init-local", ["init", "--local"]),
    ("init", ["init"]),
    ("modules-config", ["modules", "--mode", "config"]),
    ("modules-final", ["modules", "--mode", "final"]),
]
VM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Sandbox:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.work = Path(plan["workdir"])
        self.root = self.work / "root"
        self.events: list[dict[str, Any]] = []
        self.t0: Optional[float] = None
        self.platform: Optional[subprocess.Popen] = None
        self.watch: dict[str, Optional[float]] = {"authorized_keys": None,
                                                  "host_keys": None, "password_auth": None}
        # (time, {host key file: fingerprint}) at every change of the host keys.
        self.host_key_history: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self.cutter = powercut.Cutter(self)  # the scenario's power cut, if any

    def event(self, what: str, **data: Any) -> None:
        self.events.append({"wall": time.time(), "what": what, **data})
        self.progress(what)

    def progress(self, what: str) -> None:
        (self.work / "progress").write_text(what)
        print(f"{time.time():.3f} {what}", file=sys.stderr, flush=True)

    # -- the machine and the platform (sandboxfs, sandboxnet) ---------------
    def build_root(self) -> None:
        self.progress("root")
        sandboxfs.build_root(self.plan, self.work, self.root)

    def start_platform(self) -> None:
        self.progress("platform")
        # Ours from the start: stop_platform() ends it if joining it fails.
        self.platform, self.platform_log = sandboxnet.spawn_platform(self.plan, self.work)
        sandboxnet.join_platform(self.plan, self.root, self.platform, self.platform_log)

    # -- the boot ---------------------------------------------------------
    def watcher(self) -> None:
        """Note when the user's key, password login and the SSH host keys first exist,
        and every change of the host keys (a client pins the first one it sees)."""
        user = self.plan.get("expect_user")
        keys = self.root / "home" / user / ".ssh/authorized_keys" if user else None
        password = bool(user and self.plan.get("password_file"))
        while not self._stop.is_set():
            now = time.time()
            if keys is not None and self.watch["authorized_keys"] is None:
                try:
                    if keys.stat().st_size > 0:
                        self.watch["authorized_keys"] = now
                except OSError:
                    pass
            if password and self.watch["password_auth"] is None and \
                    guest.password_login_allowed(user, self.root):
                self.watch["password_auth"] = now
            host_keys = guest.host_key_fingerprints(self.root)
            if not self.host_key_history or self.host_key_history[-1][1] != host_keys:
                self.host_key_history.append((now, host_keys))
            if host_keys and self.watch["host_keys"] is None:
                self.watch["host_keys"] = now
            time.sleep(0.002)

    def chroot_env(self) -> list[str]:
        return ["/usr/bin/env", "-i", f"PATH={VM_PATH}", "LANG=C.UTF-8", "HOME=/root",
                "TERM=dumb", f"CLOUD_INIT={self.plan['cloud_init_version']}",
                "PYTHONDONTWRITEBYTECODE=1"]

    def run_in_vm(self, argv: list[str], log_name: str,
                  timeout: Optional[float] = None) -> dict[str, Any]:
        """Run ``argv`` chrooted in the VM; return timing and rusage."""
        log = open(self.work / "logs" / f"{log_name}.log", "ab")
        start = time.time()
        proc = subprocess.Popen(["chroot", str(self.root), *self.chroot_env(), *argv],
                                stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd="/")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        end = time.time()
        log.close()
        return {"start": start, "end": end, "rc": proc.returncode,
                "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}

    def enter_stage(self, name: str) -> None:
        """Tell the service-manager stand-in which stage runs (sshd's state follows it)."""
        marker = self.root / "run/azure-sim/stage"
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(name)

    def kill_vm(self, spare: tuple[int, ...] = ()) -> None:
        """SIGKILL every VM process at once (all but us, the platform and the monitor)."""
        monitor = getattr(self, "monitor", None)
        keep = set(spare) | ({monitor.pid} if monitor else set())
        powercut.kill_all(self.root / "proc", self.platform.pid if self.platform else -1,
                          keep=keep)

    def reboot(self, boot: int) -> None:
        """Between boots: end the VM's processes, fresh /run, NICs down."""
        self.progress(f"reboot {boot}")
        self.kill_vm()
        if self.cutter.why:  # a power cut: nothing the VM mounted survives it
            for target in powercut.vm_mounts(self.root):
                sh("umount", "-l", target, check=False)
        sh("umount", "-l", str(self.root / "run"))
        mount("tmpfs", self.root / "run", "tmpfs", "mode=0755,size=256m")
        guestroot.install_run(self.plan, self.root)
        if self.cutter.why:  # systemd's local-fs at boot: mount what fstab says
            for target in powercut.fstab_mounts(self.root):
                self.run_in_vm(["mount", target], "fstab-mounts")
        for nic in self.plan["platform"]["nics"]:
            sh("ip", "addr", "flush", "dev", nic["name"], check=False)
            sh("ip", "link", "set", nic["name"], "down", check=False)
        for hook in self.plan.get("before_boot", {}).get(str(boot), []):
            guestroot.before_boot(hook, self.plan, self.root)

    def boot(self) -> dict[str, Any]:
        (self.work / "logs").mkdir(exist_ok=True)
        socket.sethostname("localhost")
        stages: list[dict[str, Any]] = []
        watcher = threading.Thread(target=self.watcher, daemon=True)
        # Every link state change of the VM's NICs, for "no link went down".
        self.monitor = subprocess.Popen(["ip", "-ts", "-o", "monitor", "link"],
                                        stdout=open(self.work / "logs" / "link-monitor.log",
                                                    "wb"),
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        # The platform may power a pool VM off, on, or restart it.
        watch = power.PowerWatch.for_plan(self.plan, self.root,
                                          lambda: self.kill_vm(spare=(self.monitor.pid,)))
        self.t0 = time.time()
        watcher.start()
        cut = self.plan.get("power_cut")
        boots, boot = self.plan["boots"], 0
        while boot < boots:
            boot += 1
            if boot > 1:
                self.reboot(boot)
            cutting = bool(cut) and cut["boot"] == boot
            if cutting:
                self.cutter.start()
            for name, args in STAGES:
                self.progress(f"boot {boot}: {name}")
                self.enter_stage(name)
                result = self.run_in_vm(
                    [self.plan["python"], "/usr/bin/cloud-init", *args], "cloud-init-stages")
                stages.append({"boot": boot, "stage": name, **result})
                if cutting and self.cutter.stage_ended(name):
                    break
                if watch and watch.stage_was_cut():
                    boots += 1
                    break
                if name == "init-local":
                    # The OS brings up its network between init-local and init
                    # (ifupdown/networkd). Emulate it with the image's DHCP client.
                    self.progress(f"boot {boot}: os-network")
                    self.enter_stage("os-network")
                    net = self.run_in_vm(guestroot.os_network_command(self.plan), "os-network")
                    for cmd in guestroot.networkd_routes(self.root):
                        sh(*cmd, check=False)
                    stages.append({"boot": boot, "stage": "os-network", **net})
                    if cutting and self.cutter.stage_ended("os-network"):
                        break
            if cutting:
                self.cutter.stop(boot)
        self._stop.set()
        self.monitor.terminate()
        self.monitor.wait()
        return {"stages": stages, **(watch.stop() if watch else {})}

    def collect(self) -> dict[str, Any]:
        self.progress("collect")
        status = self.run_in_vm(
            [self.plan["python"], "/usr/bin/cloud-init", "status", "--long",
             "--format", "json"], "status")
        status_text = (self.work / "logs" / "status.log").read_text(errors="replace")
        observed = guest.observe(self.plan, self.root)
        for name in ("cloud-init.log", "cloud-init-output.log"):
            src = self.root / "var/log" / name
            if src.exists():
                shutil.copy2(src, self.work / "logs" / name)
        observed["resource_disk_device"] = self.plan.get("resource_disk_device")
        observed.update(pps.observe(self.plan, self.root))
        observed["certificate_keys"] = self.plan.get("certificate_keys") or {}
        observed["routes"] = sh("ip", "-4", "route", "show", "table", "all",
                                capture_output=True, text=True, check=False).stdout.splitlines()
        observed["links"] = guest.links()
        monitor = self.work / "logs" / "link-monitor.log"
        observed["link_events"] = (monitor.read_text(errors="replace").splitlines()
                                   if monitor.exists() else [])
        if self.plan.get("power_cut"):
            observed["power_cut"] = {"at": self.plan["power_cut"]["at"],
                                     "why": self.cutter.why,
                                     **recovery.checks(self.plan, self.root, observed)}
        observed["status_rc"] = status["rc"]
        observed["status_raw"] = status_text
        return observed

    def keep(self) -> None:
        dest = self.plan.get("keep")
        if not dest:
            return
        upper = self.work / "t" / "upper"
        os.makedirs(dest, mode=0o700, exist_ok=True)
        os.chmod(dest, 0o700)
        sh("cp", "-a", f"{upper}/.", dest)

    def stop_platform(self) -> None:
        if self.platform and self.platform.poll() is None:
            self.platform.send_signal(signal.SIGTERM)
            try:
                self.platform.wait(5)
            except subprocess.TimeoutExpired:
                self.platform.kill()


def _swaps() -> set[str]:
    try:
        lines = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        return set()
    return {line.split()[0] for line in lines if line.strip()}


def undo_host_swap(before: set[str]) -> list[str]:
    """Safety net: swap is global; switch off any the VM switched on."""
    added = sorted(_swaps() - before)
    for path in added:
        subprocess.run(["swapoff", path.replace("\\040", " ")], check=False,
                       capture_output=True)
    return added


def main(argv: list[str]) -> int:
    plan = json.loads(Path(argv[0]).read_text())
    box = Sandbox(plan)
    raw: dict[str, Any] = {"error": None}
    swaps_before = _swaps()
    try:
        box.build_root()
        box.start_platform()
        raw.update(box.boot())
        raw.update(box.collect())
    except Exception as exc:  # reported to the boot command, which still cleans up
        import traceback

        raw["error"] = f"{box.work.joinpath('progress').read_text()}: {exc}"
        raw["traceback"] = traceback.format_exc()
    finally:
        leaked = undo_host_swap(swaps_before)
        if leaked:
            raw["error"] = (raw.get("error") or "") + (
                f" the VM enabled host swap {leaked}: switched off again")
        box.stop_platform()
        raw["t0"] = box.t0
        raw["events"] = box.events
        raw["watch"] = box.watch
        raw["host_key_history"] = box.host_key_history
        try:
            box.keep()
        except Exception as exc:
            raw["keep_error"] = str(exc)
        (box.work / "raw.json").write_text(json.dumps(raw, default=str))
    return 0 if raw["error"] is None else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
