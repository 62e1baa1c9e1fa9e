"""The flow's seams where cloud-init's own helpers do the work.

:class:`CloudInitMachine` is the flow's ``Machine``; :func:`mount_reader` and
:func:`cloudinit_dhcp` are what the ``Platform`` borrows from cloud-init.

The account is created exactly as the init stage's ``users_groups`` would
create it: ``ug_util.normalize_users_groups`` over the merged configuration
(the image's plus the datasource's), then ``distro.create_user`` (groups,
sudo, hashed password or lock, authorized keys). sshd's password setting is
``cc_set_passwords.handle_ssh_pwauth``; host keys follow ``cc_ssh`` (its key
file names, the configured ``ssh_genkeytypes``, stale image keys deleted on
a new instance, the ``ssh_keys`` group's permissions); the host name is
``distro.set_hostname``. Afterwards those modules find everything in place.
"""

from __future__ import annotations

import glob
import logging
import os
import posixpath
import pwd
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

from cloudinit import subp, util
from cloudinit.distros import ug_util

from cloudinit_azure import account, early, keypairs
from cloudinit_azure.host import Host, read_text
from cloudinit_azure.provision import Provisioning

LOG = logging.getLogger(__name__)
# cc_ssh.KEY_FILE_TPL (22.4 and 25.1; a unit test holds them equal). Importing
# cc_ssh just for it costs 22.4 a parse of its 130 KB schema before Ready.
KEY_FILE_TPL = "/etc/ssh/ssh_host_%s_key"


def previous_instance_id(paths: Any) -> Optional[str]:
    """The instance id cloud-init recorded on the last boot (``<cloud_dir>/data``)."""
    try:
        return Path(paths.get_cpath("data"), "instance-id").read_text().strip() or None
    except OSError:
        return None


def merged_config(plan_config: Mapping[str, Any], sys_cfg: Mapping[str, Any]) -> dict:
    """The configuration the init stage will see (the datasource's wins over the image's)."""
    return util.mergemanydict([dict(plan_config), dict(sys_cfg)])


def mount_reader(device: str) -> Optional[bytes]:
    """Mount the DVD read-only with cloud-init's helper; None where the kernel cannot."""
    try:
        if not {"udf", "iso9660"} & set(Path("/proc/filesystems").read_text().split()):
            return None  # no driver loaded: the core reads the image directly
        return util.mount_cb(device, lambda mnt: Path(mnt, "ovf-env.xml").read_bytes(),
                             mtype=["udf", "iso9660"])
    except Exception as exc:  # MountFailedError, OSError: the direct read follows
        LOG.debug("mounting %s failed (%s); reading the image directly", device, exc)
        return None


def cloudinit_dhcp(distro: Any, nic: str) -> Any:
    """cloud-init's own ephemeral DHCP, for images with no client the core can run."""
    import inspect

    from cloudinit.net.ephemeral import EphemeralDHCPv4

    if "distro" in inspect.signature(EphemeralDHCPv4.__init__).parameters:  # 23.x+
        return EphemeralDHCPv4(distro, iface=nic)
    return EphemeralDHCPv4(iface=nic)


class _WithDefaultUser:
    """What ``ug_util`` asks of a distro: its default user (here the merged one)."""

    def __init__(self, default_user: Mapping[str, Any]) -> None:
        self._default_user = dict(default_user)

    def get_default_user(self) -> dict:
        return dict(self._default_user)


@contextmanager
def _lock_unless_locked(distro: Any, name: str) -> Iterator[None]:
    """While a new user is created: the distro's lock only where shadow shows none.

    shadow's useradd leaves a new account without a password locked (``!``);
    ``create_user`` then runs ``passwd -l`` (22.4 and 25.1), which changes
    nothing: one program run less before Ready. A password set by
    ``create_user`` before its lock (or any entry not locked, or no entry) is
    locked by the distro as before. Not ``lock_passwd: false``: 24.3 and later
    warn about an unlocked new user (the status turns degraded).
    """
    lock, own = distro.lock_passwd, "lock_passwd" in vars(distro)

    def checked(user: str) -> None:
        if user == name and account.password_locked(read_text("/etc/shadow") or "", user):
            LOG.debug("%s: already locked by useradd, no passwd -l", user)
            return
        lock(user)

    distro.lock_passwd = checked
    try:
        yield
    finally:
        if own:
            distro.lock_passwd = lock
        else:
            del distro.lock_passwd  # the class's method again


def host_key_whole(keyfile: str) -> bool:
    """A host key and its public half both non-empty (what sshd needs to start)."""
    try:
        return os.path.getsize(keyfile) > 0 and os.path.getsize(keyfile + ".pub") > 0
    except OSError:
        return False


class CloudInitMachine:
    def __init__(self, distro: Any, sys_cfg: Mapping[str, Any], paths: Any,
                 host: Host) -> None:
        self.distro = distro
        self.sys_cfg = sys_cfg
        self.paths = paths
        self.runner = host.runner
        self.root = host.root

    def existing_users(self) -> Mapping[str, int]:
        return account.read_passwd("/etc/passwd")

    def home_dir(self, username: str) -> str:
        try:
            return pwd.getpwnam(username).pw_dir
        except KeyError:
            return posixpath.join("/home", username)

    def account_blocker(self, home: str) -> Optional[str]:
        return early.account_blocker(home, read_text("/etc/fstab") or "",
                                   read_text("/proc/self/mountinfo") or "")

    def _default_user(self, plan_config: Mapping[str, Any]) -> tuple[str, dict]:
        """The default user and its config, as ``users_groups`` will see them.

        cloud-init hands datasources its config without ``system_info``: the
        image's default user comes from the distro, and the init stage merges the
        datasource's ``default_user`` over it, as done here.
        """
        ours = ((plan_config.get("system_info") or {}).get("default_user")) or {}
        default_user = util.mergemanydict([dict(ours), self.distro.get_default_user() or {}])
        users, _groups = ug_util.normalize_users_groups(
            merged_config(plan_config, self.sys_cfg), _WithDefaultUser(default_user))
        name, config = ug_util.extract_default(users)
        return name, {k: v for k, v in (config or {}).items()
                      if k not in ("default", "ssh_redirect_user")}

    def prepare_account(self) -> None:
        """While a pool VM waits: the groups the default user joins, and sshd's module.

        No customer changes them (their documents carry no groups): the image's
        default user's, made with the distro's ``create_group`` as its
        ``create_user`` would make them right before ``useradd``, in the same
        order, so the ids are the same. An empty group is all a customer whose
        document then fails is left with.
        """
        from cloudinit.config import cc_set_passwords  # noqa: F401 (22.4 parses its schema)

        _name, config = self._default_user({})
        if not config.get("create_groups", True):
            return
        groups = config.get("groups") or []
        if isinstance(groups, str):
            groups = groups.split(",")
        for group in [g.strip() for g in groups] + [config.get("primary_group") or ""]:
            if group and not util.is_group(group):
                self.distro.create_group(group)

    def create_user(self, plan: Provisioning) -> None:
        """``users_groups``' own steps over the config the init stage will have."""
        name, config = self._default_user(plan.config)
        if name != plan.username:
            raise RuntimeError(f"the default user is {name!r}, not {plan.username!r}")
        config["ssh_authorized_keys"] = list(plan.public_keys)
        LOG.debug("creating %s as users_groups would (%s)", name, ", ".join(sorted(config)))
        if util.is_user(name):
            self.distro.create_user(name, **config)
            return
        with _lock_unless_locked(self.distro, name):
            self.distro.create_user(name, **config)

    def remove_user(self, name: str) -> None:
        subp.subp(["userdel", "--remove", "--force", name], rcs=[0, 6, 12])
        sudoers = "/etc/sudoers.d/90-cloud-init-users"
        if os.path.exists(sudoers):
            lines = util.load_file(sudoers).splitlines(keepends=True)
            kept = [line for line in lines if not line.startswith(f"{name} ")
                    and line.strip() != f"# User rules for {name}"]
            util.write_file(sudoers, "".join(kept), 0o440)

    def set_password_auth(self, allow: bool) -> None:
        from cloudinit.config import cc_set_passwords

        cc_set_passwords.handle_ssh_pwauth(allow, self.distro)

    def password_auth_in_drop_in(self) -> bool:
        """cloud-init writes sshd's setting to ``sshd_config.d/50-cloud-init.conf``.

        Its own test (both versions): ``sshd_config`` includes the drop-in
        directory. Otherwise it rewrites ``sshd_config`` in place, the file its
        key step reads for ``AuthorizedKeysFile``: not beside the account, then.
        """
        from cloudinit import ssh_util

        try:
            return bool(ssh_util._includes_dconf(ssh_util.DEF_SSHD_CFG))
        except (AttributeError, OSError):  # a cloud-init without it: one after the other
            return False

    def install_key_pairs(self, username: str,
                          files: Sequence[keypairs.KeyPairFile]) -> None:
        if files:
            user = pwd.getpwnam(username)
            keypairs.install(files, user.pw_uid, user.pw_gid, user.pw_dir, root=self.root)

    def stage_key_pairs(self, files: Sequence[keypairs.KeyPairFile]) -> None:
        keypairs.stage(files, root=self.root)

    def generate_host_keys(self, new_instance: bool) -> tuple[str, ...]:
        """cc_ssh's host keys, made now (in parallel); () when cloud-config brings its own."""
        cfg = self.sys_cfg
        if "ssh_keys" in cfg:
            return ()
        if new_instance and cfg.get("ssh_deletekeys", True):
            for stale in glob.glob("/etc/ssh/ssh_host_*key*"):
                util.del_file(stale)
        wanted = util.get_cfg_option_list(cfg, "ssh_genkeytypes")
        if wanted is None:  # cc_ssh's default list (it differs between releases)
            from cloudinit.config import cc_ssh

            wanted = cc_ssh.GENERATE_KEY_NAMES
        env = dict(os.environ, LANG="C")
        jobs = {}
        for keytype in wanted:
            keyfile = KEY_FILE_TPL % keytype
            if os.path.exists(keyfile) and not host_key_whole(keyfile):
                # ssh-keygen does not fsync: a power cut can leave an empty key.
                LOG.warning("host key %s is empty or has no public half: made anew", keyfile)
                util.del_file(keyfile)
                util.del_file(keyfile + ".pub")
            if not os.path.exists(keyfile):
                util.ensure_dir(os.path.dirname(keyfile))
                jobs[keyfile] = subprocess.Popen(
                    ["ssh-keygen", "-t", keytype, "-N", "", "-f", keyfile, "-q"],
                    env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)
        for keyfile, job in jobs.items():
            _, err = job.communicate()
            if job.returncode == 1 and err.lower().startswith(b"unknown key"):
                LOG.debug("ssh-keygen: unknown key type for %s", keyfile)
            elif job.returncode != 0:
                raise RuntimeError(f"ssh-keygen for {keyfile} exited {job.returncode}: "
                                   f"{err.decode(errors='replace').strip()[:120]}")
        gid = util.get_group_id("ssh_keys")
        made = tuple(k for k in jobs if os.path.exists(k))
        for keyfile in made:
            if gid != -1:  # the same "sanitize permissions" as cc_ssh and sshd-keygen
                os.chown(keyfile, -1, gid)
                os.chmod(keyfile, 0o640)
                os.chmod(keyfile + ".pub", 0o644)
        return tuple(KEY_FILE_TPL % t for t in wanted if os.path.exists(KEY_FILE_TPL % t))

    def set_hostname(self, hostname: str) -> None:
        self.distro.set_hostname(hostname)
