from __future__ import annotations

import base64
import struct
import warnings

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from cloudinit_azure import account
from cloudinit_azure.account import (
    UserPlan,
    cloud_config,
    hash_password,
    normalize_ssh_key,
    read_passwd,
    ssh_pwauth,
    validate_hostname,
    validate_username,
    verify_password,
)
from cloudinit_azure.report import UserConfigError
from cloudinit_azure.runner import Result
from tests.fakes import FakeRunner, openssl_runner

HAVE_CRYPT = account._crypt_module() is not None
needs_crypt = pytest.mark.skipif(not HAVE_CRYPT, reason="no crypt module")


def plan_user(*args, **kwargs):
    """:func:`account.plan_user` with the fake openssl unless a test brings its runner."""
    kwargs.setdefault("runner", openssl_runner())
    return account.plan_user(*args, **kwargs)

# ------------------------------------------------------------------ helpers


def _openssh(key) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {
        "ssh-rsa": _openssh(rsa.generate_private_key(65537, 2048)),
        "ssh-ed25519": _openssh(ed25519.Ed25519PrivateKey.generate()),
        "ecdsa-sha2-nistp256": _openssh(ec.generate_private_key(ec.SECP256R1())),
        "ecdsa-sha2-nistp384": _openssh(ec.generate_private_key(ec.SECP384R1())),
        "ecdsa-sha2-nistp521": _openssh(ec.generate_private_key(ec.SECP521R1())),
        "ssh-dss": _dsa(),
    }


def _dsa() -> str:
    # cryptography deprecates DSA SSH keys; Azure may still send them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _openssh(dsa.generate_private_key(1024))


def _s(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def _blob(*fields: bytes) -> str:
    return base64.b64encode(b"".join(_s(f) for f in fields)).decode()


SK_ED = "sk-ssh-ed25519@openssh.com " + _blob(
    b"sk-ssh-ed25519@openssh.com", b"\x01" * 32, b"ssh:") + " yubi"
SK_EC = "sk-ecdsa-sha2-nistp256@openssh.com " + _blob(
    b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", b"\x04" + b"\x02" * 64, b"ssh:")


# ---------------------------------------------------------------- user names


@pytest.mark.parametrize("name", [
    "azureuser", "a", "_svc", "user.name", "user-name", "user_1", "a" * 32, "admin",
    "adm1n", "x9", "AzureOps", "Azureuser", "ADMIN", "1user", "u.-_",
])
def test_valid_usernames(name):
    """Azure allows upper case for Linux admins; Debian's useradd creates all these."""
    assert validate_username(name) == name


@pytest.mark.parametrize("name, problem", [
    ("", "empty"), ("-user", "only"), (".user", "only"), ("user name", "only"),
    ("user@host", "only"), ("a" * 33, "longer than 32"), ("user$", "only"),
    ("üser", "only"), ("user\n", "only"), ("us:er", "only"), ("user/x", "only"),
    ("123", "all digits"), ("x\ud800y", "only"), ("a,b", "only"), ("~a", "only"),
])
def test_invalid_usernames(name, problem):
    with pytest.raises(UserConfigError) as info:
        validate_username(name)
    assert info.value.reason == "invalid user name"
    assert info.value.supporting_data["problem"].startswith(problem)
    shown = info.value.supporting_data["user"]
    shown.encode("utf-8")  # a report can always carry it
    assert shown == name[:40] or "\\ud800" in shown


def test_names_up_to_azures_64_where_useradd_creates_them():
    assert validate_username("a" * 64, max_length=64) == "a" * 64
    with pytest.raises(UserConfigError) as info:
        validate_username("a" * 65, max_length=255)
    assert info.value.supporting_data["problem"] == "longer than 64 characters"


@pytest.mark.parametrize("version, limit", [
    ("1:4.13+dfsg1-1+deb12u1", 32), ("1:4.17.4-2", 64), ("4.14.0-1", 64),
    ("1:4.8.1-1", 32), (None, 32), ("garbage", 32), ("1:10.0-1", 64),
])
def test_username_limit_follows_shadows_useradd(version, limit):
    assert account.username_limit(version) == limit


def test_read_username_limit_from_dpkg_status(tmp_path):
    status = tmp_path / "status"
    status.write_text("Package: login\nVersion: 1:4.17.4-2\n\n"
                      "Package: passwd\nStatus: install ok installed\n"
                      "Version: 1:4.13+dfsg1-1+deb12u1\nDescription: x\n long\n\n")
    assert account.read_username_limit(status) == 32
    status.write_text("Package: passwd\nVersion: 1:4.17.4-2\n")
    assert account.read_username_limit(status) == 64
    assert account.read_username_limit(tmp_path / "missing") == 32


@pytest.mark.parametrize("name", [
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "systemd-network",
    "systemd-timesync", "messagebus", "sshd", "_apt", "Root", "SSHD", "Systemd-x",
])
def test_reserved_usernames(name):
    with pytest.raises(UserConfigError) as info:
        validate_username(name)
    assert info.value.reason == "reserved user name"
    assert info.value.supporting_data["user"] == name


@pytest.mark.parametrize("password, policy, rule", [
    (None, "auto", "ALL=(ALL) NOPASSWD:ALL"),
    ("Secret-123", "auto", "ALL=(ALL) ALL"),
    ("REDACTED", "auto", "ALL=(ALL) ALL"),
    ("Secret-123", "nopasswd", "ALL=(ALL) NOPASSWD:ALL"),
    (None, "password", "ALL=(ALL) ALL"),
    ("Secret-123", "none", None),
    (None, None, None),
    (None, "ALL=(ALL) /usr/bin/apt", "ALL=(ALL) /usr/bin/apt"),
])
def test_sudo_asks_for_the_password_only_when_one_was_given(password, policy, rule):
    plan = plan_user("azureuser", password, [], None, "vm", sudo=policy,
                     runner=FakeRunner(default=Result(0, "$6$" + "x" * 90, "")))
    assert plan.sudo == rule
    default_user = cloud_config(plan)["system_info"]["default_user"]
    assert default_user.get("sudo") == ([rule] if rule else None)


def test_sudo_is_auto_by_default_and_in_the_schema():
    assert plan_user("azureuser", None, [], None, "vm").sudo == "ALL=(ALL) NOPASSWD:ALL"
    from cloudinit_azure import settings

    prop = settings.schema("datasource_azure")["properties"]["sudo"]
    assert prop["default"] == "auto" and set(prop["enum"]) == {"auto", *account.SUDO_RULES}


@pytest.mark.parametrize("name,uid,ok", [
    ("postfix", 105, False), ("ntp", 999, False), ("alice", 1000, True),
    ("bob", 60000, True), ("carol", None, True),
])
def test_existing_system_users(name, uid, ok):
    existing = {"postfix": 105, "ntp": 999, "alice": 1000, "bob": 60000}
    if ok:
        assert validate_username(name, existing) == name
    else:
        with pytest.raises(UserConfigError) as info:
            validate_username(name, existing)
        assert info.value.reason == "reserved user name"
        assert info.value.supporting_data == {"user": name, "uid": uid}


def test_read_passwd(tmp_path):
    path = tmp_path / "passwd"
    path.write_text(
        "root:x:0:0:root:/root:/bin/bash\n"
        "# comment\n"
        "\n"
        "daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n"
        "broken-line\n"
        "baduid:x:abc:1::/:/bin/false\n"
        "+nisuser::::::\n"
        "azureuser:x:1000:1000::/home/azureuser:/bin/bash\n"
        "root:x:5:0:dup:/:/bin/sh\n"
    )
    assert read_passwd(path) == {"root": 0, "daemon": 1, "azureuser": 1000}
    assert read_passwd(str(path))["azureuser"] == 1000


def test_read_passwd_missing(tmp_path):
    assert read_passwd(tmp_path / "nope") == {}


def test_read_passwd_feeds_validate(tmp_path):
    path = tmp_path / "passwd"
    path.write_text("postgres:x:112:120::/var/lib/postgresql:/bin/bash\n")
    with pytest.raises(UserConfigError):
        validate_username("postgres", read_passwd(path))


# ----------------------------------------------------------------- passwords


@pytest.mark.parametrize("backend", [
    pytest.param("crypt", marks=needs_crypt), "openssl", "auto"])
@pytest.mark.parametrize("password", [
    "P@ssw0rd!", " leading and trailing ", "pässwörd€", "x" * 72, "a$b\\c'\"d",
])
def test_hash_verify_round_trip(backend, password):
    hashed = hash_password(password, openssl_runner(), backend=backend)
    assert hashed is not None
    assert hashed.startswith("$6$")
    salt = hashed.split("$")[2]
    assert len(salt) == 16
    assert password not in hashed
    assert verify_password(password, hashed, openssl_runner(), backend=backend)
    assert not verify_password(password + "x", hashed, openssl_runner(), backend=backend)
    assert not verify_password(password[:-1], hashed, openssl_runner(), backend=backend)


def test_password_limit_is_azures_for_linux():
    """OSProfile.adminPassword: 72 characters for Linux (123 is Windows')."""
    assert hash_password("x" * 72, openssl_runner(), backend="openssl")
    with pytest.raises(UserConfigError) as info:
        hash_password("x" * 73, openssl_runner(), backend="openssl")
    assert info.value.reason == "password too long"
    assert info.value.supporting_data == {"max_length": 72}


@needs_crypt
def test_crypt_and_openssl_agree():
    hashed = hash_password("same secret", openssl_runner(), backend="openssl")
    assert verify_password("same secret", hashed, openssl_runner(), backend="crypt")
    hashed = hash_password("same secret", openssl_runner(), backend="crypt")
    assert verify_password("same secret", hashed, openssl_runner(), backend="openssl")


def test_salts_are_fresh():
    hashes = {hash_password("pw", openssl_runner(), backend="openssl") for _ in range(5)}
    assert len(hashes) == 5


@pytest.mark.parametrize("password", [None, ""])
def test_no_password_is_none(password):
    runner = openssl_runner()
    assert hash_password(password, runner, backend="openssl") is None
    assert runner.calls == []


def test_openssl_password_only_on_stdin():
    runner = openssl_runner()
    secret = "Very$ecret-123"
    hashed = hash_password(secret, runner, backend="openssl")
    assert verify_password(secret, hashed, runner, backend="openssl")
    assert len(runner.calls) == 2
    for argv, kwargs in runner.invocations:
        assert argv[:3] == ["openssl", "passwd", "-6"]
        assert "-stdin" in argv
        assert all(secret not in arg for arg in argv)
        assert kwargs["input"] == secret + "\n"


def test_auto_falls_back_to_openssl(monkeypatch):
    monkeypatch.setattr(account, "_crypt_module", lambda: None)
    runner = openssl_runner()
    hashed = hash_password("pw-fallback", runner)
    assert hashed.startswith("$6$")
    assert len(runner.calls) == 1
    assert "pw-fallback" not in " ".join(runner.calls[0])
    with pytest.raises(RuntimeError):
        hash_password("pw", runner, backend="crypt")


@needs_crypt
def test_crypt_backend_never_runs_programs():
    runner = FakeRunner(default=Result(1, "", "must not be called"))
    assert hash_password("pw", runner, backend="crypt").startswith("$6$")
    assert runner.calls == []


def test_openssl_failure_is_user_config_error_without_password():
    runner = FakeRunner(default=Result(1, "", "boom"))
    with pytest.raises(UserConfigError) as info:
        hash_password("TopSecret99", runner, backend="openssl")
    assert info.value.reason == "password hashing failed"
    assert "TopSecret99" not in str(info.value)


def test_openssl_missing_binary():
    with pytest.raises(UserConfigError) as info:
        hash_password("pw", FakeRunner(missing={"openssl"}), backend="openssl")
    assert info.value.reason == "password hashing failed"


def test_password_too_long():
    secret = "S" * 124
    with pytest.raises(UserConfigError) as info:
        hash_password(secret, openssl_runner())
    assert info.value.reason == "password too long"
    assert secret not in str(info.value)
    assert "S" * 10 not in repr(info.value.supporting_data)


@pytest.mark.parametrize("password", ["a\nb", "a\rb", "a\x00b"])
def test_password_control_characters(password):
    runner = openssl_runner()
    with pytest.raises(UserConfigError):
        hash_password(password, runner, backend="openssl")
    assert runner.calls == []


@pytest.mark.parametrize("hashed", [
    "", "plain", "$1$abc$def", "$6$salt$short", "$5$" + "a" * 16 + "$" + "b" * 43,
])
def test_verify_rejects_other_hash_formats(hashed):
    assert verify_password("pw", hashed, openssl_runner()) is False


def test_verify_empty_password():
    assert verify_password("", hash_password("pw", openssl_runner(), backend="openssl"),
                           openssl_runner()) is False


def test_unknown_backend():
    with pytest.raises(ValueError):
        hash_password("pw", openssl_runner(), backend="bcrypt")


# ------------------------------------------------------------------ SSH keys


@pytest.mark.parametrize("kind", [
    "ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "ssh-dss",
])
def test_valid_keys(keys, kind):
    key = keys[kind]
    assert normalize_ssh_key(key) == key
    assert normalize_ssh_key(f"  {key} me@laptop  \n") == f"{key} me@laptop"


@pytest.mark.parametrize("key", [SK_ED, SK_EC])
def test_security_key_types(key):
    assert normalize_ssh_key(key) == key


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r"])
@pytest.mark.parametrize("cut", [10, 37, 200, -5])
def test_split_mid_base64_rejoined(keys, brk, cut):
    kind, b64 = keys["ssh-rsa"].split()
    broken = f"{kind} {b64[:cut]}{brk}{b64[cut:]} user@host{brk}"
    assert normalize_ssh_key(broken) == f"{kind} {b64} user@host"


def test_wrapped_in_many_lines_with_indentation(keys):
    kind, b64 = keys["ssh-rsa"].split()
    wrapped = "\r\n    ".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    assert normalize_ssh_key(f"{kind}\r\n  {wrapped}\r\n") == f"{kind} {b64}"


def test_break_between_type_and_data(keys):
    kind, b64 = keys["ssh-ed25519"].split()
    assert normalize_ssh_key(f"{kind}\r\n{b64}") == f"{kind} {b64}"


def test_break_before_comment_without_space(keys):
    kind, b64 = keys["ssh-ed25519"].split()
    # "user" is itself valid base64: the parser must see the blob is complete.
    assert normalize_ssh_key(f"{kind} {b64}\r\nuser@host") == f"{kind} {b64} user@host"
    assert normalize_ssh_key(f"{kind} {b64}\nAAAA") == f"{kind} {b64} AAAA"


def test_comment_whitespace_collapsed(keys):
    key = keys["ssh-ed25519"]
    assert normalize_ssh_key(f"{key}  my\tcomment\r\nmore") == f"{key} my comment more"


def _bad(text, index=None) -> UserConfigError:
    with pytest.raises(UserConfigError) as info:
        normalize_ssh_key(text, index=index)
    err = info.value
    assert err.reason == "invalid SSH public key"
    return err


def test_wrong_embedded_type(keys):
    _, b64 = keys["ssh-ed25519"].split()
    err = _bad(f"ssh-rsa {b64} x", index=3)
    assert err.supporting_data["problem"] == "key type does not match the key data"
    assert err.supporting_data["index"] == 3


def test_wrong_curve_embedded(keys):
    _, b64 = keys["ecdsa-sha2-nistp384"].split()
    assert "does not match" in _bad(f"ecdsa-sha2-nistp256 {b64}").supporting_data["problem"]
    blob = _blob(b"ecdsa-sha2-nistp256", b"nistp384", b"\x04" + b"\x01" * 64)
    assert "curve" in _bad(f"ecdsa-sha2-nistp256 {blob}").supporting_data["problem"]


@pytest.mark.parametrize("text,problem", [
    ("", "empty key"),
    ("   \r\n", "empty key"),
    ("ssh-foo AAAA", "unknown key type"),
    ("ssh-rsa", "base64 does not decode"),
    ("ssh-rsa AAAAB3NzaC1yc2E", "base64 does not decode"),
    ("ssh-rsa !!!!", "invalid character in key data"),
    ("ssh-rsa AAAA*AAA", "invalid character in key data"),
    ('command="/bin/sh" ssh-rsa AAAA', "options are not allowed"),
    ("no-pty,from=\"1.2.3.4\" ssh-ed25519 AAAA", "options are not allowed"),
    ("ssh-ed25519 " + _blob(b"ssh-ed25519", b"\x00" * 31), "ed25519 key is not 32 bytes"),
    ("ssh-ed25519 " + _blob(b"ssh-ed25519", b"\x00" * 32, b"extra"),
     "key data has the wrong number of fields"),
    ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\xffabc").decode(),
     "base64 does not decode to a key"),
    ("ssh-ed25519 " + _blob(b"\xff\xfe"), "key type in the key data is not text"),
    ("ssh-ed25519 ====", "base64 does not decode to a key"),
])
def test_invalid_keys(text, problem):
    err = _bad(text)
    assert err.supporting_data["problem"] == problem
    assert "index" not in err.supporting_data


def test_truncated_key(keys):
    kind, b64 = keys["ssh-rsa"].split()
    err = _bad(f"{kind} {b64[:-8]}")
    assert err.supporting_data["problem"].startswith("base64 does not decode")


def test_error_does_not_dump_key(keys):
    kind, b64 = keys["ssh-rsa"].split()
    err = _bad(f"ssh-ed25519 {b64}")
    assert b64 not in str(err)
    assert len(err.supporting_data["prefix"]) <= 20


# ---------------------------------------------------------------- host names


@pytest.mark.parametrize("name", [
    "a", "vm1", "my-vm", "MyVM", "1vm", "123", "a" * 63, "host.example.com",
    ".".join(["a" * 63] * 3) + "." + "b" * 61,
])
def test_valid_hostnames(name):
    assert validate_hostname(name) == name


@pytest.mark.parametrize("name", [
    "", "-vm", "vm-", "my_vm", "my vm", "a" * 64, "host..example", ".host", "host.",
    "hôst", "host/x", ".".join(["a" * 63] * 4), "vm-.example", "x.-y",
])
def test_invalid_hostnames(name):
    with pytest.raises(UserConfigError) as info:
        validate_hostname(name)
    assert info.value.reason == "invalid host name"


# --------------------------------------------------------------- ssh_pwauth


@pytest.mark.parametrize("flag,has_password,expected", [
    (True, True, False), (True, False, False),
    (False, True, True), (False, False, True),
    (None, True, True), (None, False, None),
])
def test_ssh_pwauth(flag, has_password, expected):
    assert ssh_pwauth(flag, has_password) is expected


# --------------------------------------------------------------------- plans


def test_plan_with_password_and_keys(keys):
    key = keys["ssh-ed25519"]
    kind, b64 = key.split()
    plan = plan_user("azureuser", "Secr3t!pass", [key, f"{kind} {b64[:9]}\r\n{b64[9:]}"],
                     None, "vm-01", {"root": 0})
    assert plan.name == "azureuser"
    assert plan.lock_password is False
    assert verify_password("Secr3t!pass", plan.password_hash, openssl_runner())
    assert plan.ssh_keys == (key,)  # normalised duplicate dropped
    assert plan.ssh_pwauth is True
    assert plan.hostname == "vm-01"
    assert "Secr3t" not in repr(plan)
    assert plan.password_hash not in repr(plan)


def test_plan_keys_only(keys):
    plan = plan_user("azureuser", None, [keys["ssh-rsa"]], True, "vm-01")
    assert plan.password_hash is None
    assert plan.lock_password is True
    assert plan.ssh_pwauth is False


def test_plan_no_flag_no_password():
    plan = plan_user("azureuser", "", [], None, None)
    assert plan.ssh_pwauth is None and plan.hostname is None and plan.lock_password


def test_plan_redacted_password_keeps_account_unlocked():
    runner = FakeRunner(default=Result(1, "", "must not be called"))
    plan = plan_user("azureuser", "REDACTED", [], None, "vm", runner=runner)
    assert plan.password_hash is None
    assert plan.lock_password is False
    assert plan.ssh_pwauth is True
    assert runner.calls == []


@pytest.mark.parametrize("kwargs,reason", [
    ({"username": "root"}, "reserved user name"),
    ({"username": "-bad"}, "invalid user name"),
    ({"hostname": "bad_host"}, "invalid host name"),
    ({"password": "p" * 200}, "password too long"),
    ({"ssh_keys": ["ssh-rsa AAAA"]}, "invalid SSH public key"),
])
def test_plan_errors(kwargs, reason):
    args = {"username": "azureuser", "password": None, "ssh_keys": [],
            "disable_ssh_password_auth": None, "hostname": "vm"}
    args.update(kwargs)
    with pytest.raises(UserConfigError) as info:
        plan_user(**args)
    assert info.value.reason == reason


def test_plan_key_index_reported(keys):
    with pytest.raises(UserConfigError) as info:
        plan_user("azureuser", None, [keys["ssh-rsa"], "ssh-rsa AAAA"], None, "vm")
    assert info.value.supporting_data["index"] == 1


def test_plan_keys_must_be_a_list(keys):
    with pytest.raises(TypeError):
        plan_user("azureuser", None, keys["ssh-rsa"], None, "vm")


def test_plan_existing_system_user():
    with pytest.raises(UserConfigError):
        plan_user("postfix", None, [], None, "vm", {"postfix": 107})


# ------------------------------------------------------------- cloud_config


def test_cloud_config_with_password():
    plan = UserPlan(name="azureuser", password_hash="$6$salt$hash", lock_password=False,
                    ssh_keys=("ssh-ed25519 AAAA",), ssh_pwauth=True, hostname="vm")
    assert cloud_config(plan) == {
        "system_info": {"default_user": {
            "name": "azureuser",
            "lock_passwd": False,
            "hashed_passwd": "$6$salt$hash",
            "sudo": ["ALL=(ALL) NOPASSWD:ALL"],
        }},
        "ssh_pwauth": True,
        "disable_root": True,
    }


def test_cloud_config_locked_no_pwauth_key():
    plan = UserPlan(name="azureuser", lock_password=True, ssh_keys=("k",), hostname="vm")
    cfg = cloud_config(plan)
    assert "ssh_pwauth" not in cfg
    assert cfg["system_info"]["default_user"] == {
        "name": "azureuser", "lock_passwd": True, "sudo": ["ALL=(ALL) NOPASSWD:ALL"]}
    text = repr(cfg)
    assert "vm" not in text.replace("azureuser", "") and "'k'" not in text


def test_cloud_config_pwauth_false_groups_and_no_sudo():
    plan = UserPlan(name="u", ssh_pwauth=False, sudo=None, groups=("adm", "sudo"))
    cfg = cloud_config(plan)
    assert cfg["ssh_pwauth"] is False
    assert cfg["system_info"]["default_user"] == {
        "name": "u", "lock_passwd": True, "groups": ["adm", "sudo"]}


def test_cloud_config_from_plan_end_to_end(keys):
    plan = plan_user("azureuser", "pw-123456", [keys["ssh-rsa"]], False, "vm-01")
    cfg = cloud_config(plan)
    user = cfg["system_info"]["default_user"]
    assert verify_password("pw-123456", user["hashed_passwd"], openssl_runner())
    assert user["lock_passwd"] is False
    assert cfg["ssh_pwauth"] is True
    assert "pw-123456" not in repr(cfg)
