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
        self.locked = []

    def get_default_user(self):
        return dict(IMAGE_USER)

    def create_user(self, name, **kw):
        self.created.append((name, kw))

    def lock_passwd(self, name):
        self.locked.append(name)


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
    """``create_user`` as cloud-init's (22.4 and 25.1): its lock unless ``lock_passwd``
    is false, through ``self.lock_passwd``."""

    def create_user(self, name, **kw):
        super().create_user(name, **kw)
        if kw.get("lock_passwd", True):
            self.lock_passwd(name)


@pytest.mark.parametrize("shadow, locked", [
    ("root:*:19000:0:99999:7:::\nazureuser:!:20788:0:99999:7:::\n", []),
    ("azureuser:$6$x$y:20788:0:99999:7:::\n", ["azureuser"]),  # a password: locked
    ("", ["azureuser"]),  # unreadable or no entry: locked by the distro
])
def test_a_new_users_lock_is_skipped_only_where_useradd_already_locked_it(
        monkeypatch, shadow, locked):
    monkeypatch.setattr(machine.util, "is_user", lambda name: False)
    monkeypatch.setattr(machine, "read_text", lambda path: shadow if path == "/etc/shadow" else "")
    distro = LockingDistro()
    machine.CloudInitMachine(distro, SYS_CFG, None, HOST).create_user(KEY_ONLY)
    [(_name, kw)] = distro.created
    assert kw["lock_passwd"] is True  # no "lock_passwd: false": 24.3+ would warn
    assert distro.locked == locked
    assert "lock_passwd" not in vars(distro)  # the distro's own method again


def test_an_existing_users_lock_stays_with_create_user(monkeypatch):
    monkeypatch.setattr(machine.util, "is_user", lambda name: True)
    monkeypatch.setattr(machine, "read_text", lambda path: "azureuser:!:1:0:99999:7:::\n")
    distro = LockingDistro()
    machine.CloudInitMachine(distro, SYS_CFG, None, HOST).create_user(KEY_ONLY)
    assert distro.locked == ["azureuser"]


def test_the_check_is_removed_also_when_create_user_fails(monkeypatch):
    class Failing(LockingDistro):
        def create_user(self, name, **kw):
            raise OSError("useradd broke")

    monkeypatch.setattr(machine.util, "is_user", lambda name: False)
    distro = Failing()
    with pytest.raises(OSError):
        machine.CloudInitMachine(distro, SYS_CFG, None, HOST).create_user(KEY_ONLY)
    assert "lock_passwd" not in vars(distro)
