"""The Machine seam against the cloud-init in the venv: the user config it applies."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("cloudinit.distros")

from cloudinit_azure.provision import Provisioning  # noqa: E402
from cloudinit_azure.sources import machine  # noqa: E402
from tests.fakes import fake_host  # noqa: E402

# What cloud-init hands a datasource: its config without system_info (the
# image's default user lives in the distro).
SYS_CFG = {"users": ["default"]}
HOST = fake_host(Path("/nonexistent"))  # create_user goes through the fake distro
IMAGE_USER = {"name": "debian", "lock_passwd": True, "gecos": "Debian",
              "groups": ["adm", "sudo"], "sudo": ["ALL=(ALL) NOPASSWD:ALL"],
              "shell": "/bin/bash"}
PLAN = Provisioning(
    instance_id="i", vm_id="i", hostname="h", username="azureuser",
    public_keys=("ssh-ed25519 AAAA k",),
    config={"system_info": {"default_user": {"name": "azureuser", "lock_passwd": False,
                                             "hashed_passwd": "$6$salt$hash"}}})


class Distro:
    name = "debian"

    def __init__(self):
        self.created = []

    def get_default_user(self):
        return dict(IMAGE_USER)

    def create_user(self, name, **kw):
        self.created.append((name, kw))


def test_the_user_is_created_with_the_config_the_init_stage_would_apply():
    distro = Distro()
    machine.CloudInitMachine(distro, SYS_CFG, None, HOST).create_user(PLAN)
    [(name, kw)] = distro.created
    assert name == "azureuser"
    assert kw["hashed_passwd"] == "$6$salt$hash" and kw["lock_passwd"] is False
    assert kw["groups"] in ("adm,sudo", ["adm", "sudo"])  # the image's groups, kept
    assert kw["sudo"] == ["ALL=(ALL) NOPASSWD:ALL"] and kw["shell"] == "/bin/bash"
    assert kw["gecos"] == "Debian"
    assert kw["ssh_authorized_keys"] == ["ssh-ed25519 AAAA k"]
    assert "default" not in kw


def test_a_default_user_other_than_the_plans_is_refused():
    cfg = {"users": [{"name": "bob"}]}  # no default user at all
    with pytest.raises(RuntimeError, match="not 'azureuser'"):
        machine.CloudInitMachine(Distro(), cfg, None, HOST).create_user(PLAN)


def test_host_key_files_are_named_as_cc_ssh_names_them():
    from cloudinit.config import cc_ssh

    assert machine.KEY_FILE_TPL == cc_ssh.KEY_FILE_TPL


class GroupDistro(Distro):
    def __init__(self, user=None):
        super().__init__()
        self.user = user or dict(IMAGE_USER, groups="adm, netdev,sudo", primary_group="ops")
        self.groups_made = []

    def get_default_user(self):
        return dict(self.user)

    def create_group(self, name, members=None):
        self.groups_made.append(name)


def test_preparing_the_account_makes_the_default_users_missing_groups(monkeypatch):
    existing = {"adm", "sudo"}
    monkeypatch.setattr(machine.util, "is_group", lambda name: name in existing)
    distro = GroupDistro()
    machine.CloudInitMachine(distro, SYS_CFG, None, HOST).prepare_account()
    # The order distro.create_user would make them in (groups, then the primary group).
    assert distro.groups_made == ["netdev", "ops"]
    assert distro.created == []  # no user: the customer is not known yet


def test_no_groups_are_prepared_where_the_image_says_not_to_create_them(monkeypatch):
    monkeypatch.setattr(machine.util, "is_group", lambda name: False)
    distro = GroupDistro(dict(IMAGE_USER, create_groups=False))
    machine.CloudInitMachine(distro, SYS_CFG, None, HOST).prepare_account()
    assert distro.groups_made == []


@pytest.mark.parametrize("text, drop_in", [
    ("Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\n", True),
    ("AuthorizedKeysFile .ssh/keys\n", False),
])
def test_sshd_setting_beside_the_account_only_into_cloud_inits_drop_in(
        tmp_path, monkeypatch, text, drop_in):
    from cloudinit import ssh_util

    # cloud-init's own test, which decides where handle_ssh_pwauth writes.
    cfg = tmp_path / "sshd_config"
    cfg.write_text(text.replace("/etc/ssh/sshd_config", str(cfg)))
    monkeypatch.setattr(ssh_util, "DEF_SSHD_CFG", str(cfg))
    assert machine.CloudInitMachine(Distro(), SYS_CFG, None, HOST) \
        .password_auth_in_drop_in() is drop_in
    monkeypatch.delattr(ssh_util, "_includes_dconf")  # a cloud-init without it
    assert machine.CloudInitMachine(Distro(), SYS_CFG, None, HOST) \
        .password_auth_in_drop_in() is False


KEY_ONLY = Provisioning(
    instance_id="i", vm_id="i", hostname="h", username="azureuser",
    public_keys=("ssh-ed25519 AAAA k",),
    config={"system_info": {"default_user": {"name": "azureuser", "lock_passwd": True}}})


class LockingDistro(Distro):
    def __init__(self):
        super().__init__()
        self.locked = []

    def lock_passwd(self, name):
        self.locked.append(name)


@pytest.mark.parametrize("shadow, locked_again", [
    ("root:*:19000:0:99999:7:::\nazureuser:!:20788:0:99999:7:::\n", []),
    ("azureuser:$6$x$y:20788:0:99999:7:::\n", ["azureuser"]),  # not what useradd left
    ("", ["azureuser"]),  # unreadable or no entry: locked by the distro
])
def test_a_new_key_only_user_skips_a_lock_useradd_already_made(monkeypatch, shadow,
                                                               locked_again):
    monkeypatch.setattr(machine, "lock_flag_optional", lambda: True)
    monkeypatch.setattr(machine.util, "is_user", lambda name: False)
    monkeypatch.setattr(machine, "_read", lambda path: shadow if path == "/etc/shadow" else "")
    distro = LockingDistro()
    machine.CloudInitMachine(distro, SYS_CFG, None, HOST).create_user(KEY_ONLY)
    [(_name, kw)] = distro.created
    assert kw["lock_passwd"] is False
    assert distro.locked == locked_again


@pytest.mark.parametrize("optional, exists", [(False, False), (True, True)])
def test_the_lock_stays_with_create_user_otherwise(monkeypatch, optional, exists):
    # cloud-init 24.3+ (it warns about an unlocked new user), or an existing user.
    monkeypatch.setattr(machine, "lock_flag_optional", lambda: optional)
    monkeypatch.setattr(machine.util, "is_user", lambda name: exists)
    distro = LockingDistro()
    machine.CloudInitMachine(distro, SYS_CFG, None, HOST).create_user(KEY_ONLY)
    assert distro.created[0][1]["lock_passwd"] is True and distro.locked == []


def test_the_lock_is_left_out_only_before_cloud_init_24_3():
    from cloudinit import version

    major, minor = (int(p) for p in version.version_string().split(".")[:2])
    assert machine.lock_flag_optional() is ((major, minor) < (24, 3))
