"""The plug-in datasource end to end: real cloud-init 22.4.2 and 25.1.4 in the simulator.

Every boot runs the four real stages with our datasource and modules; the
report is what the platform and the VM observed. Reports shared by several
tests are booted once per module and version.
"""

from __future__ import annotations

import pytest

from azure_sim.scenario import DEFAULT_KEY, DEFAULT_MAC, DEFAULT_VM_ID

pytestmark = pytest.mark.integration

_REPORTS: dict = {}

PASSWORD = "Sim-Passw0rd!x"
PASSWORD_SCENARIO = f"""
name: password
ovf:
  password: "{PASSWORD}"
  public_keys: []
"""
IMDS_500 = """
name: imds-500
faults: [{endpoint: imds, status: 500, count: 3}]
"""
BROKEN_OVF = """
name: broken-ovf
ovf_xml: "<Environment><bad"
expect: failure
"""
BAD_CUSTOM_DATA = """
name: bad-custom-data
ovf: {custom_data: null, custom_data_raw: "%%% not base64 %%%"}
expect: failure
"""
RESERVED_USER = """
name: reserved-user
ovf: {username: root}
imds: {compute: {osProfile: {adminUsername: root}}}
expect: failure
"""
BAD_IMDS_JSON = """
name: bad-imds-json
imds_raw: "{not json"
expect: failure
"""
BAD_SSH_KEY = """
name: bad-ssh-key
ovf: {public_keys: ["ssh-rsa !!!notbase64 user@host"]}
imds: {compute: {publicKeys: []}}
expect: failure
"""
LONG_PASSWORD = """
name: long-password
ovf: {password: "%s"}
expect: failure
""" % ("P4ss-" * 40)
KEY_PAIR = """
name: key-pair
ovf:
  key_pairs: [{fingerprint: deploykey, path: $HOME/azureuser/deploy/keys/id_rsa}]
"""
KEY_PAIR_OUTSIDE_HOME = """
name: key-pair-outside-home
ovf:
  key_pairs: [{fingerprint: deploykey, path: /etc/cron.d/evil}]
expect: failure
"""
# /home has its own file system that is not mounted yet at init-local: the
# account is left to cloud-init's modules and Ready to azure_ready.
HOME_NOT_MOUNTED = """
name: home-not-mounted
image_files:
  /etc/fstab: "LABEL=home /home ext4 defaults,nofail 0 2\n"
"""
HOME_NOT_MOUNTED_PASSWORD = f"""
name: home-not-mounted-password
image_files:
  /etc/fstab: "LABEL=home /home ext4 defaults,nofail 0 2\\n"
ovf:
  password: "{PASSWORD}"
  public_keys: []
"""
# The Ready POST fails past its budget on boot 1 (two 503s, a 1 s budget).
READY_UNDELIVERED = """
name: ready-undelivered
boots: 2
cloud_config: {datasource: {Azure: {ready_budget_s: 1}}}
faults: [{endpoint: health, status: 503, count: 2}]
"""
FAILURE_UNDELIVERED = """
name: failure-undelivered
boots: 2
ovf_xml: "<Environment><bad"
cloud_config: {datasource: {Azure: {failure_report_budget_s: 1}}}
faults: [{endpoint: health, status: 503, count: 2}]
expect: failure
"""
IMDS_403 = """
name: imds-403
faults: [{endpoint: imds, status: 403, count: 1}]
"""
IMDS_403_NO_MEDIA = """
name: imds-403-no-media
media: none
ovf: {custom_data: null}
faults: [{endpoint: imds, status: 403, count: 1}]
expect: failure
"""
IMDS_ONLY = """
name: imds-only
media: none
ovf: {custom_data: null}
"""
BAD_SETTING = """
name: bad-setting
cloud_config: {datasource: {Azure: {imds_deadline_s: soon}}}
expect: failure
"""
DATA_DIR = """
name: data-dir
cloud_config: {datasource: {Azure: {data_dir: /var/lib/agent-cache}}}
"""
TWO_BOOTS = """
name: two-boots
boots: 2
"""
FINGERPRINT_KEYS = """
name: fingerprint-keys
ovf:
  public_keys: []
  key_fingerprints: [userkey]
imds: {compute: {publicKeys: []}}
"""


def _report(run_boot, text, cloud_init):
    key = (text, cloud_init)
    if key not in _REPORTS:
        _REPORTS[key] = run_boot(text, cloud_init=cloud_init, datasource="plugin")
    return _REPORTS[key]


def _ok(r):
    assert r["sim_error"] is None, r.get("traceback")
    assert r["datasource"] == "plugin"
    assert not r["secret_leaks"], r["secret_leaks"]


def test_default_scenario_reaches_ready_with_everything_applied(run_boot, cloud_init):
    r = _report(run_boot, None, cloud_init)
    _ok(r)
    assert r["verdict"]["ok"], r["verdict"]
    assert r["ready"] and r["ready_count"] == 1 and r["failure"] is None
    assert r["user"]["exists"] and r["user"]["authorized_keys"] == [DEFAULT_KEY]
    assert r["hostname"] == "sim-vm-01" and r["etc_hostname"] == "sim-vm-01"
    assert r["custom_data_applied"]
    assert r["cloud_init_status"] == "done", r["cloud_init_errors"]
    assert r["instance_id"] == DEFAULT_VM_ID
    # Ready from init-local, and only once the user can log in: the key and a host
    # key exist before the report, and the host keys never change afterwards.
    assert r["time_to_login_s"] is not None
    assert r["time_to_login_s"] <= r["time_to_ready_s"]
    assert r["time_to_host_keys_s"] <= r["time_to_ready_s"]
    init_local = r["stages"][0]
    assert init_local["stage"] == "init-local"
    assert r["time_to_ready_s"] <= init_local["start"] + init_local["seconds"]
    assert r["host_keys_changed"] is False
    # One KVP diagnostic per phase, with outcome and duration.
    phases = {d["phase"]: d for d in r["kvp_diagnostics"]}
    assert list(phases) == ["media", "dhcp", "imds", "certificates", "plan", "account",
                            "host", "ready"]
    assert phases["ready"]["outcome"] == "ok" and phases["imds"]["seconds"] >= 0
    # Success goes to KVP too, and the platform saw one IMDS GET and no failure.
    reports = [k["value"] for k in r["kvp"] if k["key"] == "PROVISIONING_REPORT"]
    assert len(reports) == 1 and reports[0].startswith("result=success|")
    assert [q["endpoint"] for q in r["requests"]].count("imds") == 1
    # The Azure Linux Agent's copy: redacted, private.
    assert r["waagent_ovf"]["mode"] == "0o600" and r["waagent_ovf"]["dir_mode"] == "0o700"
    assert r["ejected"] == ["/dev/sr0"]
    assert {"mac": DEFAULT_MAC, "ip": "10.0.0.4", "hostname": "sim-vm-01"} in r["dhcp_leases"]


def test_password_scenario_allows_password_login_with_a_verifying_hash(run_boot, cloud_init):
    r = _report(run_boot, PASSWORD_SCENARIO, cloud_init)
    _ok(r)
    assert r["verdict"]["ok"], r["verdict"]
    assert r["user"]["password_set"] and r["user"]["password_verifies"] is True
    assert r["user"]["password_login_allowed"] is True
    assert r["user"]["authorized_keys"] == []
    assert r["waagent_ovf"]["has_redacted"] is True
    # Password-only VM: Ready only once sshd takes passwords.
    assert r["time_to_password_auth_s"] is not None
    assert r["time_to_password_auth_s"] <= r["time_to_ready_s"]
    assert r["host_keys_changed"] is False
    # sshd is not running yet in init-local (it starts after cloud-init's network
    # stage): cloud-init asks, hears "inactive" and writes its setting without a restart.
    asked = [c for c in r["services"] if c.split()[-1] in ("ssh", "sshd")]
    assert asked and not any(" restart " in f" {c} " for c in asked), r["services"]


def test_imds_answering_500_three_times_still_reaches_ready(run_boot, cloud_init):
    r = _report(run_boot, IMDS_500, cloud_init)
    _ok(r)
    assert r["verdict"]["ok"], r["verdict"]
    statuses = [q["status"] for q in r["requests"] if q["endpoint"] == "imds"]
    assert statuses == [500, 500, 500, 200]


@pytest.mark.parametrize("text, reason", [
    (BROKEN_OVF, "ovf-env.xml is not well-formed XML"),
    (BAD_CUSTOM_DATA, "CustomData"),
    (RESERVED_USER, "reserved user name"),
    (BAD_IMDS_JSON, "error parsing IMDS metadata"),
    (BAD_SSH_KEY, "invalid SSH public key"),
    (LONG_PASSWORD, "password too long"),
    (KEY_PAIR_OUTSIDE_HOME, "key pair path outside the user's home"),
    (IMDS_403_NO_MEDIA, "error communicating with IMDS"),
    (BAD_SETTING, "datasource.Azure.imds_deadline_s"),
])
def test_bad_input_ends_in_provisioning_failed_with_its_reason(run_boot, cloud_init,
                                                               text, reason):
    r = _report(run_boot, text, cloud_init)
    assert r["sim_error"] is None, r.get("traceback")
    assert r["verdict"]["ok"], r["verdict"]
    assert not r["ready"]
    failures = [h for h in r["health_reports"] if h["state"] == "NotReady"]
    assert len(failures) == 1
    assert failures[0]["substatus"] == "ProvisioningFailed"
    decoded = failures[0]["decoded"]
    assert decoded["result"] == "error"
    assert reason in decoded["reason"] + "|" + str(decoded)
    assert decoded["agent"].startswith("cloudinit-azure/")
    kvp = [k["value"] for k in r["kvp"] if k["key"] == "PROVISIONING_REPORT"]
    assert len(kvp) == 1 and kvp[0].startswith("result=error|")
    assert [d["phase"] for d in r["kvp_diagnostics"]][-1] == "report"
    if r["user"]["name"] != "root":
        assert not r["user"]["exists"]  # nothing half-applied
    else:
        assert DEFAULT_KEY not in r["user"]["authorized_keys"]
    assert not any("Traceback" in w for w in r["warnings"])


def test_second_boot_sends_no_report_and_keeps_the_instance(run_boot, cloud_init):
    r = _report(run_boot, TWO_BOOTS, cloud_init)
    _ok(r)
    assert r["verdict"]["ok"], r["verdict"]
    assert [s["boot"] for s in r["stages"]].count(2) == 5
    assert r["ready_count"] == 1
    assert [q["endpoint"] for q in r["requests"]].count("imds") == 1
    assert r["instance_id"] == DEFAULT_VM_ID
    assert r["user"]["authorized_keys"] == [DEFAULT_KEY]


def test_keys_given_only_as_fingerprints_come_through_the_certificates(run_boot, cloud_init):
    r = _report(run_boot, FINGERPRINT_KEYS, cloud_init)
    _ok(r)
    assert r["verdict"]["ok"], r["verdict"]
    expected = list(r["certificate_keys"].values())
    assert len(expected) == 1 and expected[0].startswith("ssh-rsa ")
    assert r["user"]["authorized_keys"] == expected
    assert "certificates" in [q["endpoint"] for q in r["requests"]]


OFF_AZURE = """
name: off-azure
on_azure: false
media: none
resource_disk: false
expect: silence
"""


def test_off_azure_the_datasource_bails_out_without_traffic(run_boot, cloud_init, tmp_path):
    r = run_boot(OFF_AZURE, cloud_init=cloud_init, datasource="plugin",
                 logs_to=str(tmp_path / "logs"))
    assert r["sim_error"] is None, r.get("traceback")
    assert r["verdict"]["ok"], r["verdict"]
    assert r["requests"] == [] and r["health_reports"] == [] and r["kvp"] == []
    log = (tmp_path / "logs" / "logs" / "cloud-init.log").read_text()
    assert "not on Azure (no chassis asset tag, no seed)" in log


def _kept(run_boot, text, cloud_init, tmp_path):
    """Boot, check it went as expected, and keep the VM's upper layer to look at."""
    keep = tmp_path / "upper"
    r = run_boot(text, cloud_init=cloud_init, datasource="plugin", keep=str(keep))
    _ok(r)
    assert r["verdict"]["ok"], r["verdict"]
    return r, keep


def test_ovf_key_pair_lands_at_its_path_with_private_modes(run_boot, cloud_init, tmp_path):
    r, keep = _kept(run_boot, KEY_PAIR, cloud_init, tmp_path)
    # $HOME is the home base (/home), as the platform writes it; the missing
    # directories on the way belong to the user.
    private = keep / "home/azureuser/deploy/keys/id_rsa"
    public = keep / "home/azureuser/deploy/keys/id_rsa.pub"
    assert private.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    assert oct(public.stat().st_mode & 0o777) == "0o644"
    assert public.read_text().startswith("ssh-rsa ")
    assert private.stat().st_uid == r["user"]["uid"]
    for directory in (keep / "home/azureuser/deploy", keep / "home/azureuser/deploy/keys"):
        assert directory.stat().st_uid == r["user"]["uid"]
        assert oct(directory.stat().st_mode & 0o777) == "0o700"
    # The init stage's users_groups re-applied the user made in init-local and
    # changed nothing: one sudo rule, not two (cloud-init 22.4 appends blindly).
    sudoers = (keep / "etc/sudoers.d/90-cloud-init-users").read_text()
    assert [line for line in sudoers.splitlines()
            if line.startswith("azureuser ")] == ["azureuser ALL=(ALL) NOPASSWD:ALL"]
    assert not (keep / "var/lib/cloudinit-azure/keypairs/").exists() or not any(
        (keep / "var/lib/cloudinit-azure/keypairs/").iterdir())


def _log(tmp_path):
    return (tmp_path / "logs" / "logs" / "cloud-init.log").read_text()


@pytest.mark.parametrize("text", [HOME_NOT_MOUNTED, HOME_NOT_MOUNTED_PASSWORD])
def test_home_not_mounted_yet_falls_back_to_ready_from_azure_ready(run_boot, cloud_init,
                                                                 tmp_path, text):
    r = run_boot(text, cloud_init=cloud_init, datasource="plugin",
                 logs_to=str(tmp_path / "logs"))
    _ok(r)
    assert r["verdict"]["ok"], r["verdict"]
    assert r["ready_count"] == 1 and r["user"]["exists"]
    log = _log(tmp_path)
    assert "INFO" in next(line for line in log.splitlines()
                          if "account not created in init-local" in line)
    assert "/home (in fstab) is not mounted yet at init-local" in log
    # Ready only after cloud-init's user modules, in the init stage.
    init = next(s for s in r["stages"] if s["stage"] == "init")
    assert init["start"] <= r["time_to_ready_s"] <= init["start"] + init["seconds"]
    if r["user"]["password_set"]:
        assert r["time_to_password_auth_s"] <= r["time_to_ready_s"]
    else:
        assert r["time_to_login_s"] <= r["time_to_ready_s"]
    assert {d["phase"]: d["outcome"] for d in r["kvp_diagnostics"]}["account"] == "deferred"


def test_ready_undelivered_on_boot_1_is_delivered_on_boot_2_exactly_once(run_boot,
                                                                       cloud_init):
    r = _report(run_boot, READY_UNDELIVERED, cloud_init)
    _ok(r)
    posts = [q for q in r["requests"] if q["endpoint"] == "health"]
    assert [q["status"] for q in posts] == [503, 503, 200]
    assert r["ready_count"] == 1 and r["failure"] is None
    # Delivered in boot 2's init stage (azure_ready), not again afterwards.
    boot2_init = next(s for s in r["stages"] if s["boot"] == 2 and s["stage"] == "init")
    assert boot2_init["start"] <= posts[-1]["t"]
    assert r["cloud_init_status"] == "done", r["cloud_init_errors"]


def test_failure_undelivered_on_boot_1_is_delivered_on_boot_2_exactly_once(run_boot,
                                                                         cloud_init):
    r = _report(run_boot, FAILURE_UNDELIVERED, cloud_init)
    assert r["sim_error"] is None, r.get("traceback")
    assert r["verdict"]["ok"], r["verdict"]
    posts = [q for q in r["requests"] if q["endpoint"] == "health"]
    assert [q["status"] for q in posts] == [503, 503, 200]
    failures = [h for h in r["health_reports"] if h["state"] == "NotReady"]
    assert len(failures) == 1 and "not well-formed" in str(failures[0]["decoded"])
    boot2 = next(s for s in r["stages"] if s["boot"] == 2)
    assert boot2["start"] <= posts[-1]["t"]
    assert not r["user"]["exists"]


def test_imds_hard_failure_provisions_from_the_ovf(run_boot, cloud_init):
    r = _report(run_boot, IMDS_403, cloud_init)
    _ok(r)
    assert r["ready"] and r["ready_count"] == 1 and r["failure"] is None
    assert r["user"]["authorized_keys"] == [DEFAULT_KEY] and r["hostname"] == "sim-vm-01"
    imds = next(d for d in r["kvp_diagnostics"] if d["phase"] == "imds")
    assert imds["outcome"] == "fallback" and "403" in imds["detail"]
    assert [q["status"] for q in r["requests"] if q["endpoint"] == "imds"] == [403]


def test_imds_only_boot_is_ready_and_status_done(run_boot, cloud_init, tmp_path):
    r = run_boot(IMDS_ONLY, cloud_init=cloud_init, datasource="plugin",
                 logs_to=str(tmp_path / "logs"))
    _ok(r)
    assert r["verdict"]["ok"], r["verdict"]
    assert r["cloud_init_status"] == "done", r["cloud_init_errors"]
    assert "no provisioning media (seed, DVD, cached copy): IMDS only" in _log(tmp_path)
    assert not [w for w in r["warnings"] if "cloudinit_azure" in w]


def test_data_dir_chooses_where_the_redacted_ovf_is_kept(run_boot, cloud_init, tmp_path):
    _r, keep = _kept(run_boot, DATA_DIR, cloud_init, tmp_path)
    cached = keep / "var/lib/agent-cache/ovf-env.xml"
    assert b"REDACTED" in cached.read_bytes() or b"UserPassword" not in cached.read_bytes()
    assert oct(cached.stat().st_mode & 0o777) == "0o600"
    assert not (keep / "var/lib/waagent/ovf-env.xml").exists()
