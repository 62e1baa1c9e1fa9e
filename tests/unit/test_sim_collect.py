"""azure-sim diff's collection in the VM, on fake root trees: secrets never leave it."""

from __future__ import annotations

import json

from azure_sim import collect

HASH = "$6$saltsalt$" + "x" * 86


def tree(tmp_path):
    root = tmp_path / "root"
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True)
    (root / "etc/sudoers.d").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n"
                                     "azureuser:x:1000:1000:Az:/home/azureuser:/bin/bash\n")
    (root / "etc/group").write_text("sudo:x:27:azureuser\nazureuser:x:1000:\n")
    (root / "etc/shadow").write_text(f"root:*:19000:0:99999:7:::\n"
                                     f"azureuser:{HASH}:19500:0:99999:7:::\n"
                                     f"locked:!{HASH}:19500::::::\n"
                                     "nopw:!:19500::::::\n")
    (root / "etc/ssh/sshd_config").write_text(
        "# comment\nInclude /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n"
        "Match User x\n  PermitRootLogin yes\n")
    (root / "etc/ssh/sshd_config.d/50-cloud-init.conf").write_text(
        "PasswordAuthentication no\n")
    (root / "etc/ssh/ssh_host_ed25519_key.pub").write_text("k\n")
    (root / "etc/sudoers.d/90-cloud-init-users").write_text(
        "# Created by cloud-init\nazureuser ALL=(ALL) NOPASSWD:ALL\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc/systemd/network").mkdir(parents=True)
    (root / "etc/systemd/network/10-cloud-init-eth0.network").write_text(
        "[Match]\nName=eth0\n")
    (root / "run/cloud-init").mkdir(parents=True)
    (root / "run/cloud-init/instance-data.json").write_text(json.dumps(
        {"v1": {"region": "westeurope"}, "ds": {"meta_data": {"note": "Sim-Passw0rd!"}}}))
    (root / "home/azureuser/.ssh").mkdir(parents=True)
    (root / "home/azureuser/.ssh/authorized_keys").write_text("ssh-ed25519 AAAA u@h\n")
    return root


def test_shadow_keeps_scheme_and_lock_state_never_the_hash(tmp_path):
    shadow = collect.shadow(tree(tmp_path))
    assert shadow["azureuser"] == {"hash_set": True, "scheme": "6", "locked": False,
                                   "empty": False, "min": "0", "max": "99999",
                                   "warn": "7", "inactive": "", "expire": ""}
    assert shadow["locked"]["locked"] and shadow["locked"]["hash_set"]
    assert shadow["nopw"]["locked"] and not shadow["nopw"]["hash_set"]
    assert not shadow["root"]["hash_set"]
    assert HASH not in json.dumps(shadow) and "saltsalt" not in json.dumps(shadow)


def test_sshd_settings_are_the_effective_ones(tmp_path):
    sshd = collect.sshd(tree(tmp_path))
    assert sshd["settings"]["passwordauthentication"] == "no"  # the Include came first
    assert sshd["settings"]["permitrootlogin"] == "prohibit-password"  # Match ignored
    assert sshd["config_files"] == ["/etc/ssh/sshd_config",
                                    "/etc/ssh/sshd_config.d/50-cloud-init.conf"]
    assert sshd["host_key_types"] == ["ed25519"]


def test_the_snapshot_redacts_the_scenario_secrets(tmp_path):
    root = tree(tmp_path)
    pw = tmp_path / "password"
    pw.write_text("Sim-Passw0rd!")
    snap = collect.system({"password_file": str(pw), "secret_texts": []}, root)
    assert snap["instance_data"]["ds"]["meta_data"]["note"] == collect.REDACTED
    assert "Sim-Passw0rd!" not in json.dumps(snap)
    assert snap["passwd"]["azureuser"]["shell"] == "/bin/bash"
    assert snap["group"]["sudo"]["members"] == ["azureuser"]
    assert snap["sudoers"]["/etc/sudoers.d/90-cloud-init-users"]["lines"] == [
        "azureuser ALL=(ALL) NOPASSWD:ALL"]
    assert snap["authorized_keys"]["/home/azureuser/.ssh/authorized_keys"]["lines"] == [
        "ssh-ed25519 AAAA u@h"]
    assert snap["network"] == {"/etc/systemd/network/10-cloud-init-eth0.network":
                               ["[Match]", "Name=eth0"]}
    assert snap["hosts"] == ["127.0.0.1 localhost"]
