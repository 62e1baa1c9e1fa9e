"""azure-sim end to end: cloud-init's built-in Azure datasource against the simulator.

Each boot takes a few seconds. Reports shared by several tests are booted
once per module (``_report``). The ``no_leftovers`` fixture (conftest) checks
after every test that nothing was left on the host.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from azure_sim.scenario import DEFAULT_KEY, DEFAULT_MAC, DEFAULT_VM_ID
from tests.integration.conftest import REPO, WORKDIR_RE, processes_naming

pytestmark = pytest.mark.integration

MALFORMED_OVF = """\
ovf_xml: "<Environment><bad"
expect: failure
"""

NO_PROVISIONING_SECTION = """\
expect: failure
ovf_xml: |
  <?xml version="1.0" encoding="utf-8"?>
  <Environment xmlns="http://schemas.dmtf.org/ovf/environment/1"
               xmlns:wa="http://schemas.microsoft.com/windowsazure">
    <wa:PlatformSettingsSection>
      <wa:Version>1.0</wa:Version>
      <wa:PlatformSettings>
        <wa:KmsServerHostname>kms.core.windows.net</wa:KmsServerHostname>
        <wa:PreprovisionedVm>false</wa:PreprovisionedVm>
      </wa:PlatformSettings>
    </wa:PlatformSettingsSection>
  </Environment>
"""

IMDS_FAULTS = """\
faults: [{endpoint: imds, status: 500, count: 3}]
"""

_REPORTS: dict[tuple[str, str], dict] = {}


def _report(run_boot, name: str, text, cloud_init: str) -> dict:
    key = (name, cloud_init)
    if key not in _REPORTS:
        _REPORTS[key] = run_boot(text, cloud_init=cloud_init, datasource="builtin")
    return _REPORTS[key]


# --- 1. fidelity -----------------------------------------------------------------


def test_builtin_default_scenario_provisions(run_boot, cloud_init):
    r = _report(run_boot, "default", None, cloud_init)
    assert r["sim_error"] is None, r.get("traceback")
    assert r["cloud_init_version"] == cloud_init
    assert r["ready"] is True
    assert r["ready_count"] == 1
    assert r["failure"] is None
    assert r["user"]["name"] == "azureuser"
    assert r["user"]["exists"] is True
    assert DEFAULT_KEY in r["user"]["authorized_keys"]
    assert r["user"]["password_login_allowed"] is False
    assert r["hostname"] == "sim-vm-01"
    assert r["custom_data_applied"] is True
    assert r["cloud_init_status"] == "done"
    assert r["cloud_init_errors"] == []
    assert r["instance_id"] == DEFAULT_VM_ID
    calls = [(q["endpoint"], q["method"]) for q in r["requests"]]
    assert ("imds", "GET") in calls
    assert ("goalstate", "GET") in calls
    assert ("health", "POST") in calls
    assert [h["state"] for h in r["health_reports"]] == ["Ready"]
    assert DEFAULT_MAC in [lease["mac"] for lease in r["dhcp_leases"]]
    assert [s["rc"] for s in r["stages"]] == [0] * len(r["stages"])
    assert [s["stage"] for s in r["stages"]] == [
        "init-local", "os-network", "init", "modules-config", "modules-final"]
    assert r["verdict"] == {"expected": "ready", "ok": True, "problems": []}
    print(f"{cloud_init}: ready {r['time_to_ready_s']} s, login {r['time_to_login_s']} s, "
          f"wall {r['wall_s']} s")


# --- 2. broken ovf-env.xml -----------------------------------------------------------


def _assert_provisioning_failed(r: dict) -> None:
    assert r["ready"] is False
    assert r["ready_count"] == 0
    failure = r["failure"]
    assert failure is not None
    assert failure["state"] == "NotReady"
    assert failure["substatus"] == "ProvisioningFailed"
    assert [h["state"] for h in r["health_reports"]] == ["NotReady"]
    assert r["verdict"] == {"expected": "failure", "ok": True, "problems": []}


def test_builtin_malformed_ovf_reports_failure(run_boot, cloud_init):
    r = _report(run_boot, "malformed", MALFORMED_OVF, cloud_init)
    assert r["sim_error"] is None, r.get("traceback")
    _assert_provisioning_failed(r)
    if cloud_init == "22.4.2":
        # 22.4.2 sends a fixed text, not an encoded report.
        assert "aka.ms/linuxprovisioningerror" in r["failure"]["description"]
        assert r["failure"]["decoded"] is None
    else:
        decoded = r["failure"]["decoded"]
        assert decoded["result"] == "error"
        assert decoded["reason"].startswith("error parsing ovf-env.xml")
        assert decoded["agent"] == f"Cloud-Init/{cloud_init}"


def test_builtin_25_failure_report_names_the_vm_id(run_boot):
    r = _report(run_boot, "malformed", MALFORMED_OVF, "25.1.4")
    assert r["failure"]["decoded"]["vm_id"] == DEFAULT_VM_ID


def test_builtin_ovf_without_provisioning_section(run_boot, cloud_init):
    r = _report(run_boot, "no-provisioning-section", NO_PROVISIONING_SECTION, cloud_init)
    assert r["sim_error"] is None, r.get("traceback")
    if cloud_init == "22.4.2":
        _assert_provisioning_failed(r)
        assert "aka.ms/linuxprovisioningerror" in r["failure"]["description"]
    else:
        # cloud-init 25.1 takes a document without ProvisioningSection for "no
        # provisioning media", falls back to IMDS and reports Ready: the boot
        # does not match the scenario's expectation of a failure.
        assert r["ready"] is True
        assert r["ready_count"] == 1
        assert r["failure"] is None
        assert r["hostname"] == "sim-vm-01"  # from IMDS
        assert r["verdict"]["ok"] is False
        assert r["verdict"]["problems"] == ["no failure was reported", "Ready was reported"]
        assert any("falling back to IMDS" in w for w in r["warnings"])


# --- 3. IMDS faults ------------------------------------------------------------------


def test_builtin_retries_imds_500s(run_boot):
    r = run_boot(IMDS_FAULTS, cloud_init="22.4.2")
    assert r["sim_error"] is None, r.get("traceback")
    assert r["ready"] is True
    assert r["ready_count"] == 1
    assert r["failure"] is None
    imds = [q["status"] for q in r["requests"] if q["endpoint"] == "imds"]
    assert imds == [500, 500, 500, 200]
    order = [(q["endpoint"], q["status"]) for q in r["requests"]]
    assert order.index(("imds", 200)) < order.index(("health", 200))
    assert r["verdict"]["ok"] is True


# --- example scenarios (docs/simulator.md) ---------------------------------------------


@pytest.mark.parametrize("name", ["password-login", "no-resource-disk", "broken-ovf"])
def test_example_scenarios_end_as_expected(run_boot, name):
    text = (REPO / "scenarios" / f"{name}.yaml").read_text()
    r = run_boot(text, cloud_init="22.4.2")
    assert r["scenario"] == name
    assert r["verdict"]["ok"] is True, r["verdict"]
    if name == "password-login":
        assert r["user"]["exists"] is True
        assert r["user"]["authorized_keys"] == []
        assert r["user"]["password_set"] is True
        assert r["user"]["password_verifies"] is True
        assert r["user"]["password_login_allowed"] is True
        assert r["hostname"] == "sim-pw-01"
    elif name == "no-resource-disk":
        assert r["ready_count"] == 1
        assert r["resource_disk"] == {"fstype": None, "mountpoint": None}
    else:
        assert r["failure"]["substatus"] == "ProvisioningFailed"


# --- 4. scenario refusal through the CLI ---------------------------------------------


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/azure-sim", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_refuses_unknown_key(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("ovf:\n  hostnme: typo\n")
    proc = _cli("boot", str(scenario), "--datasource", "builtin",
                "--report", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    assert "unknown key 'ovf.hostnme'" in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "r.json").exists()
    # no_leftovers: no work directory, loop device or mount was made.


def test_cli_refuses_missing_scenario_file(tmp_path):
    proc = _cli("boot", str(tmp_path / "nope.yaml"), "--datasource", "builtin")
    assert proc.returncode == 2
    assert "nope.yaml" in proc.stderr


# --- 6. Ctrl-C ---------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out += kids
        todo += kids
    return out


def _workdir_of(pid: int) -> str | None:
    for child in _children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode("utf-8", "replace")
        except OSError:
            continue
        found = WORKDIR_RE.findall(cmd)
        if found:
            return found[0]
    return None


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl-c", "sigterm"])
def test_ctrl_c_cleans_up(no_leftovers, signum, code):
    """Ctrl-C, and a plain ``kill PID`` (CI cancelling a job), remove everything."""
    proc = subprocess.Popen(
        [sys.executable, "tools/azure-sim", "boot", "--datasource", "builtin", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    work = progress = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            work = work or _workdir_of(proc.pid)
            if work:
                no_leftovers.dirs.add(work)
                try:
                    progress = Path(work, "progress").read_text()
                except OSError:
                    progress = None
                if progress and re.match(r"boot \d+: ", progress):
                    break
            time.sleep(0.01)
        assert proc.poll() is None, f"the boot ended before a stage ran ({progress!r})"
        assert work and progress and progress.startswith("boot 1: "), (work, progress)
        print(f"interrupting in: {progress}")
        proc.send_signal(signum)  # its own pid only
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, stderr
    assert "interrupted" in stderr
    assert not Path(work).exists()
    assert processes_naming(work) == []


# --- 7. the platform refuses the host's network namespace ------------------------------


def _fabric_in_fresh_netns(cfg_path: Path, host_netns: str | None):
    """Run ``python -m azure_sim.fabric`` inside a new network namespace.

    With ``host_netns`` None the configuration names the namespace the
    platform actually runs in (what it would see if started in the host's).
    """
    script = ('ns=$(readlink /proc/self/ns/net); echo "$ns" > "$1.ns"; '
              'printf \'{"host_netns": "%s"}\' "${3:-$ns}" > "$1"; '
              'exec "$2" -m azure_sim.fabric "$1"')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tools"), str(REPO)]))
    proc = subprocess.run(
        ["unshare", "--net", "sh", "-c", script, "sh", str(cfg_path), sys.executable,
         host_netns or ""],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    ran_in = Path(f"{cfg_path}.ns").read_text().strip()
    # Never the real host namespace.
    assert ran_in.startswith("net:[")
    assert ran_in != os.readlink("/proc/self/ns/net")
    return proc, ran_in


def test_platform_refuses_host_netns(tmp_path):
    cfg = tmp_path / "platform.json"
    proc, ran_in = _fabric_in_fresh_netns(cfg, None)
    assert json.loads(cfg.read_text()) == {"host_netns": ran_in}
    assert proc.returncode != 0
    assert "refusing to run in the host's network namespace" in proc.stderr


def test_platform_check_compares_namespaces(tmp_path):
    # Control: naming another namespace as the host's passes the check (and
    # then fails on the incomplete configuration, inside the throwaway netns).
    cfg = tmp_path / "platform.json"
    proc, ran_in = _fabric_in_fresh_netns(cfg, os.readlink("/proc/self/ns/net"))
    assert json.loads(cfg.read_text())["host_netns"] != ran_in
    assert proc.returncode != 0
    assert "refusing" not in proc.stderr
