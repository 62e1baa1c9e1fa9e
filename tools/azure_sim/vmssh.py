"""A real SSH login into the VM, as the scenario's user, from the platform's side.

The host makes one key pair per boot (``ssh-keygen``, in the run's 0700 work
directory); its public key joins the scenario's keys in the OVF and IMDS. In
the run's network namespace, next to the platform, a prober runs
``ssh USER@VM true`` every 0.5 s (after the previous attempt ends) until one
succeeds, then, for a scenario with a password, logs in once more with the
password (through an askpass helper that reads it from a 0600 file: it is
never on a command line). Each attempt gets a fresh known-hosts file, so the
host key the VM presented at every contact is recorded; the first one is
compared with the keys the guest has at the end of the boot.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Optional

RETRY_S = 0.5
ATTEMPT_TIMEOUT_S = 30


def make_key_pair(work: Path) -> tuple[Path, str]:
    """A fresh ed25519 key pair in ``work``: (private key path, public key line)."""
    key = work / "ssh-login-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "azure-sim-login",
                    "-f", str(key)], check=True, capture_output=True)
    return key, (work / "ssh-login-key.pub").read_text().strip()


def write_askpass(work: Path, password: str) -> Path:
    """A 0600 password file and a 0700 askpass helper that prints it."""
    secret = work / "ssh-password"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password)
    helper = work / "ssh-askpass"
    fd = os.open(helper, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"#!/bin/sh\nexec cat '{secret}'\n")
    return helper


def ssh_command(login: dict[str, Any], known_hosts: Path, *, password: bool) -> list[str]:
    """The client command for one attempt (pure)."""
    cmd = ["ssh", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
           "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
           "-o", "HashKnownHosts=no", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
           "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"]
    if password:
        cmd += ["-o", "PreferredAuthentications=password,keyboard-interactive",
                "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"]
    else:
        cmd += ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "PreferredAuthentications=publickey", "-i", login["key"]]
    return cmd + [f"{login['user']}@{login['ip']}", "true"]


def host_key(known_hosts: Path) -> Optional[str]:
    """'type base64' of the key the server presented, from a one-attempt known-hosts file."""
    try:
        for line in known_hosts.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and not line.startswith("#"):
                return f"{parts[1]} {parts[2]}"
    except OSError:
        pass
    return None


def key_changed(first: Optional[str], final_keys: Optional[list[str]]) -> Optional[bool]:
    """Was the host key seen at first contact gone at the end of the boot? None: unknown."""
    if first is None or final_keys is None:
        return None
    blobs = {" ".join(k.split()[:2]) for k in final_keys}
    return first not in blobs


class Prober(threading.Thread):
    """Logs in every RETRY_S until it works (key, then password), or until stopped."""

    def __init__(self, login: dict[str, Any], work: Path) -> None:
        super().__init__(daemon=True)
        self.login = login
        self.work = work
        self.stop = threading.Event()
        self.result: dict[str, Any] = {"attempts": 0, "t_first_contact": None,
                                       "first_host_key": None, "host_keys_seen": [],
                                       "t_login": None, "t_password_login": None,
                                       "last_error": None}

    def _attempt(self, password: bool) -> bool:
        n = self.result["attempts"] = self.result["attempts"] + 1
        known = self.work / f"ssh-known-{n}"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.work)}
        if password:
            env.update({"SSH_ASKPASS": self.login["askpass"], "SSH_ASKPASS_REQUIRE": "force",
                        "DISPLAY": ":0"})
        started = time.time()
        try:
            proc = subprocess.run(ssh_command(self.login, known, password=password),
                                  capture_output=True, text=True, env=env,
                                  stdin=subprocess.DEVNULL, timeout=ATTEMPT_TIMEOUT_S)
            ok, err = proc.returncode == 0, proc.stderr.strip()[-300:]
        except subprocess.TimeoutExpired:
            ok, err = False, f"timed out after {ATTEMPT_TIMEOUT_S} s"
        key = host_key(known)
        known.unlink(missing_ok=True)
        if key is not None:
            if self.result["first_host_key"] is None:
                self.result["first_host_key"] = key
                self.result["t_first_contact"] = started
            if key not in self.result["host_keys_seen"]:
                self.result["host_keys_seen"].append(key)
        if not ok:
            self.result["last_error"] = err
        return ok

    def _until_ok(self, password: bool) -> Optional[float]:
        while not self.stop.is_set():
            if self._attempt(password):
                return time.time()
            self.stop.wait(RETRY_S)
        return None

    def run(self) -> None:
        if self.login.get("key"):
            self.result["t_login"] = self._until_ok(password=False)
        if self.login.get("askpass") and not self.stop.is_set():
            self.result["t_password_login"] = self._until_ok(password=True)
            if not self.login.get("key"):
                self.result["t_login"] = self.result["t_password_login"]
