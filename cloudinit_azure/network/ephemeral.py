"""Ephemeral DHCP on the primary NIC for cloud-init's init-local stage.

Before the OS network exists the datasource must reach IMDS and the
wireserver, so it brings the NIC up for a moment: one DHCP exchange, the
lease applied with ``ip``, and everything undone afterwards.

Why not cloud-init's own helper: with a DHCP server that answers at once,
dhclient binds in ~0.02 s and busybox udhcpc in ~0.09 s, but cloud-init runs
dhcpcd with its random 0.7-1.5 s RFC 2131 start delay. So this module runs
the image's client itself, preferring dhclient, then udhcpc, then dhcpcd
(with ``nodelay`` and ``noarp``: ~0.03 s); cloud-init's helper is only the
fallback (the datasource adapter passes it in) when none of them can be used.

The client never configures anything (dhclient ``-sf /bin/true``, a udhcpc
script that only records the lease, dhcpcd ``--noconfigure`` with a script
that only records it): this module adds the address and routes itself and
remembers each command that succeeded, so teardown removes exactly what was
added, also after a partial setup. The lease is never released (no
``dhclient -r``, no ``udhcpc -R``, no dhcpcd ``release``): the OS network
will want it. dhcpcd's own lease database is put back as it was.

Choosing the client and its command line (``.clients``, ``.dhcpcd``), parsing
the lease (``.leases``) and turning it into ``ip`` commands (``.routes``) are
pure; :class:`EphemeralDhcp` runs them with the runner, root, clock and kill
function its caller passes (no default to the real machine).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import AbstractContextManager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from cloudinit_azure.host import RUN_DIR
from cloudinit_azure.network.clients import (
    DEFAULT_TIMEOUT,
    ClientProgram,
    dhclient_command,
    dhclient_config,
    find_client,
    runs_with_pid_file,
    udhcpc_command,
    udhcpc_script,
)
from cloudinit_azure.network.dhcpcd import (
    DHCPCD_KILL_AFTER,
    _DhcpcdFiles,
    dhcpcd_command,
    dhcpcd_config,
    dhcpcd_refusal,
    dhcpcd_script,
    read_dhcpcd_lease,
)
from cloudinit_azure.network.leases import (
    Lease,
    lease_from_dict,
    parse_dhclient_lease,
    parse_udhcpc_dump,
)
from cloudinit_azure.network.nics import (
    _read,
    link_is_up,
)
from cloudinit_azure.network.routes import (
    Command,
    Step,
    lease_steps,
    link_steps,
)
from cloudinit_azure.report import DhcpError
from cloudinit_azure.runner import Runner

LOG = logging.getLogger(__name__)




PID_WAIT = 1.0  # dhclient writes its pid file just after it daemonizes


STDERR_TAIL = 400


def _tail(text: Optional[str], size: int = STDERR_TAIL) -> str:
    text = (text or "").strip()
    return text[-size:]


Fallback = Callable[[str], "AbstractContextManager[Any]"]


class EphemeralDhcp:
    """``with EphemeralDhcp("eth0") as lease:`` the NIC has the lease; afterwards it is gone.

    ``fallback(nic)`` returns a context manager yielding cloud-init's lease
    dict; it is used when the image has no client this module can run
    (none, dhcpcd without timeout(1) or older than 9.4, or a dhcpcd
    daemon already running for the NIC).
    ``root`` locates the client binaries, ``proc``/``sys`` and the default
    private directory (``<root>/run/cloudinit-azure``).
    """

    def __init__(self, nic: str, *, root: Path, runner: Runner,
                 kill: Callable[[int, int], None],
                 tmp_dir: Optional[Path] = None, fallback: Optional[Fallback] = None,
                 clock: Callable[[], float] = time.monotonic,
                 log: Optional[logging.Logger] = None,
                 timeout: float = DEFAULT_TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.nic = nic
        self.root = Path(root)
        self.runner = runner
        self.tmp_parent = Path(tmp_dir) if tmp_dir else self.root / RUN_DIR.lstrip("/")
        self.fallback = fallback
        self.clock = clock
        self.log = log or LOG
        self.timeout = timeout
        self.sleep = sleep
        self.kill = kill
        self.lease: Optional[Lease] = None
        self._undo: list[Command] = []
        self._work: Optional[Path] = None
        self._pid_file: Optional[Path] = None
        self._fallback_cm: Optional[AbstractContextManager[Any]] = None
        self._dhcpcd_files: Optional[_DhcpcdFiles] = None

    # -- context manager --------------------------------------------------

    def __enter__(self) -> Lease:
        start = self.clock()
        client = find_client(self.root)
        why = self._unusable(client)
        if why is not None:
            lease = self._enter_fallback(client, why)
        else:
            assert client is not None
            try:
                lease = self._enter_client(client)
            except BaseException:
                self._cleanup()
                raise
        self.lease = replace(lease, seconds=self.clock() - start)
        self.log.info("ephemeral DHCP on %s: %s/%s via %s in %.3f s (wireserver %s)",
                      self.nic, lease.address, lease.prefix, lease.client,
                      self.lease.seconds, lease.wireserver or "not in lease")
        return self.lease

    def __exit__(self, *exc_info: Any) -> None:
        if self._fallback_cm is not None:
            cm, self._fallback_cm = self._fallback_cm, None
            try:
                cm.__exit__(*exc_info)
            except Exception as err:  # teardown must not hide the real outcome
                self.log.warning("fallback DHCP teardown failed: %s", err)
        self._cleanup()

    # -- fast clients -----------------------------------------------------

    def _unusable(self, client: Optional[ClientProgram]) -> Optional[str]:
        """Why this module cannot run ``client`` itself, or None."""
        if client is None:
            return "no DHCP client found"
        if not client.fast:
            return f"{client.name} found but no timeout(1) to bound it"
        if client.name != "dhcpcd":
            return None
        return dhcpcd_refusal(self.root, self.nic, client.argv, self.runner)

    def _enter_client(self, client: ClientProgram) -> Lease:
        self.tmp_parent.mkdir(parents=True, exist_ok=True)
        self._work = Path(tempfile.mkdtemp(prefix=f"dhcp-{self.nic}.", dir=self.tmp_parent))
        for step in link_steps(self.nic, link_is_up(self.root / "sys/class/net", self.nic)):
            self._apply(step, client.name)
        self._wait_for_carrier()
        lease = self._obtain(client)
        for step in lease_steps(lease, self.nic):
            self._apply(step, client.name)
        return lease

    def _obtain(self, client: ClientProgram) -> Lease:
        """One run of the client: the lease, nothing applied (preprovisioning renews with it)."""
        if client.name == "dhclient":
            return self._run_dhclient(client)
        if client.name == "dhcpcd":
            return self._run_dhcpcd(client)
        return self._run_udhcpc(client)

    def _wait_for_carrier(self, limit: float = 5.0) -> None:
        """Poll the NIC's carrier (1 ms steps) so the client can skip its own wait.

        dhcpcd waits for a carrier netlink event with a coarse timer (~0.5 s
        measured); we wait here and run it with ``nolink``. No carrier after
        ``limit`` seconds: go on, the client retries as usual.
        """
        carrier = self.root / "sys/class/net" / self.nic / "carrier"
        deadline = self.clock() + limit
        while self.clock() < deadline:
            try:
                if carrier.read_text().strip() == "1":
                    return
            except OSError:
                return  # no carrier file (not a real NIC in a test): nothing to wait for
            self.sleep(0.001)
        self.log.info("no carrier on %s after %.0f s; asking for a lease anyway",
                      self.nic, limit)

    def _run_client(self, cmd: list[str], client: str, margin: float = 5,
                    timed_out: tuple[int, ...] = ()) -> None:
        """Run the client; ``timed_out``: exit codes that mean timeout(1) stopped it."""
        self.log.debug("running %s", " ".join(cmd))
        try:
            result = self.runner(cmd, check=False, timeout=self.timeout + margin)
        except subprocess.TimeoutExpired:
            raise DhcpError(detail="DHCP client timed out", client=client, nic=self.nic,
                            timeout=self.timeout + margin) from None
        except OSError as err:
            raise DhcpError(detail="cannot run DHCP client", client=client, nic=self.nic,
                            error=str(err)) from None
        if result.returncode in timed_out:
            raise DhcpError(detail="DHCP client timed out", client=client, nic=self.nic,
                            timeout=self.timeout, exit_code=result.returncode,
                            stderr=_tail(result.stderr))
        if result.returncode != 0:
            raise DhcpError(client=client, nic=self.nic, exit_code=result.returncode,
                            stderr=_tail(result.stderr))
        if result.stderr.strip():
            self.log.debug("%s said: %s", client, _tail(result.stderr))

    def _run_dhclient(self, client: ClientProgram) -> Lease:
        assert self._work is not None
        conf, lease_file = self._work / "dhclient.conf", self._work / "dhclient.leases"
        self._pid_file = self._work / "dhclient.pid"
        conf.write_text(dhclient_config(self.timeout), encoding="utf-8")
        lease_file.write_text("", encoding="utf-8")
        self._run_client(dhclient_command(self.nic, str(lease_file), str(self._pid_file),
                                          str(conf), client.argv), "dhclient")
        # dhclient forks into the background once bound; stop it now, before
        # anything else can fail, without releasing the lease (SIGTERM = -x).
        self._stop_dhclient(wait=True)
        return parse_dhclient_lease(lease_file.read_text(encoding="utf-8"), self.nic)

    def _run_udhcpc(self, client: ClientProgram) -> Lease:
        assert self._work is not None
        script, dump = self._work / "udhcpc.script", self._work / "udhcpc.lease"
        script.write_text(udhcpc_script(str(dump)), encoding="utf-8")
        os.chmod(script, 0o700)
        self._run_client(udhcpc_command(self.nic, str(script), client.argv), "udhcpc")
        try:
            text = dump.read_text(encoding="utf-8")
        except OSError:
            raise DhcpError(detail="udhcpc wrote no lease", client="udhcpc",
                            nic=self.nic) from None
        return parse_udhcpc_dump(text, self.nic)

    def _run_dhcpcd(self, client: ClientProgram) -> Lease:
        assert self._work is not None and client.timeout is not None
        conf, script = self._work / "dhcpcd.conf", self._work / "dhcpcd.script"
        dump = self._work / "dhcpcd.lease"
        conf.write_text(dhcpcd_config(), encoding="utf-8")
        script.write_text(dhcpcd_script(str(dump)), encoding="utf-8")
        os.chmod(script, 0o700)
        cmd = dhcpcd_command(self.nic, str(conf), str(script), client.argv, client.timeout,
                             self.timeout)
        self._dhcpcd_files = _DhcpcdFiles.hide(self.root, self.nic, self.log)
        try:
            # timeout(1) exits 124 after its SIGTERM, 137 after its SIGKILL.
            self._run_client(cmd, "dhcpcd", margin=DHCPCD_KILL_AFTER + 5,
                             timed_out=(124, 137))
            # before the restore: dhcpcd 10 leaves the lease only in its own file
            return read_dhcpcd_lease(dump, self.root, self.nic)
        finally:
            self._await_dhcpcd_exit()
            self._restore_dhcpcd_files()

    def _await_dhcpcd_exit(self) -> None:
        if self._dhcpcd_files is not None:
            self._dhcpcd_files.await_exit(self.clock, self.sleep, self.log)

    def _restore_dhcpcd_files(self) -> None:
        files, self._dhcpcd_files = self._dhcpcd_files, None
        if files is not None:
            files.restore(self.log)

    def _dhclient_pid(self, wait: bool) -> Optional[int]:
        assert self._pid_file is not None
        deadline = self.clock() + (PID_WAIT if wait else 0.0)
        while True:
            text = _read(self._pid_file)
            if text and text.isdigit():
                return int(text)
            if self.clock() >= deadline:
                break
            self.sleep(0.01)
        # No pid file: look for our dhclient by its private pid file path.
        for cmdline in (self.root / "proc").glob("[0-9]*/cmdline"):
            pid = int(cmdline.parent.name)
            if runs_with_pid_file(self.root, pid, self._pid_file):
                return pid
        return None

    def _stop_dhclient(self, wait: bool = False) -> None:
        if self._pid_file is None:
            return
        pid = self._dhclient_pid(wait)
        if pid is None:
            self.log.debug("no dhclient process left to stop")
            self._pid_file = None
            return
        if not runs_with_pid_file(self.root, pid, self._pid_file):
            self.log.warning("pid %s is not our dhclient: not killed", pid)
            self._pid_file = None
            return
        try:
            self.kill(pid, signal.SIGTERM)
            self.log.debug("stopped dhclient pid %s (lease kept)", pid)
        except ProcessLookupError:
            pass
        except OSError as err:
            self.log.warning("cannot stop dhclient pid %s: %s", pid, err)
        self._pid_file = None

    # -- ip(8) ------------------------------------------------------------

    def _apply(self, step: Step, client: str) -> None:
        """Run one change; remember its undo. 'File exists' = not ours: no undo."""
        try:
            result = self.runner(list(step.up), check=False, timeout=self.timeout)
        except (OSError, subprocess.SubprocessError) as err:
            raise DhcpError(detail=f"{' '.join(step.up)} failed", client=client,
                            nic=self.nic, error=str(err)) from None
        if result.returncode == 0:
            if step.down is not None:
                self._undo.append(step.down)
            return
        if "File exists" in (result.stderr or ""):
            self.log.info("%s: already present, left in place", " ".join(step.up))
            return
        raise DhcpError(detail=f"{' '.join(step.up)} failed", client=client, nic=self.nic,
                        exit_code=result.returncode, stderr=_tail(result.stderr))

    def _cleanup(self) -> None:
        """Undo in reverse, stop the daemon, remove the private dir; never raises."""
        self._undo_all()
        try:
            self._stop_dhclient()
        except Exception as err:
            self.log.warning("stopping dhclient failed: %s", err)
        self._restore_dhcpcd_files()
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def _undo_all(self) -> None:
        """Every change applied so far, undone in reverse; never raises."""
        while self._undo:
            cmd = self._undo.pop()
            try:
                result = self.runner(list(cmd), check=False, timeout=self.timeout)
                if result.returncode != 0:
                    self.log.warning("%s exited %s: %s", " ".join(cmd), result.returncode,
                                     _tail(result.stderr))
            except Exception as err:
                self.log.warning("%s failed: %s", " ".join(cmd), err)

    # -- fallback ---------------------------------------------------------

    def _enter_fallback(self, client: Optional[ClientProgram], why: str) -> Lease:
        found = client.name if client else "none"
        if self.fallback is None:
            data = {"why": why} if client else {}
            raise DhcpError(detail="no usable DHCP client and no fallback",
                            client=found, nic=self.nic, **data)
        self.log.info("ephemeral DHCP on %s: %s, using the fallback", self.nic, why)
        cm = self.fallback(self.nic)
        try:
            value = cm.__enter__()
        except DhcpError:
            raise
        except Exception as err:
            raise DhcpError(detail="fallback DHCP failed", client=found, nic=self.nic,
                            error=f"{type(err).__name__}: {err}") from None
        self._fallback_cm = cm
        try:
            if not value:
                raise DhcpError(detail="fallback DHCP returned no lease", client=found,
                                nic=self.nic)
            return lease_from_dict(value, self.nic)
        except BaseException:
            self._fallback_cm = None
            cm.__exit__(None, None, None)
            raise
