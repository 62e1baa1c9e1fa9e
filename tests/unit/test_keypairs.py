"""OVF key pairs: confined to the user's home, dirs made as the user's, modes from birth."""

from __future__ import annotations

import os
import stat

import pytest

from cloudinit_azure import keypairs
from cloudinit_azure.certificates import CertificateKeys
from cloudinit_azure.report import UserConfigError

FP = "AB" * 20
KEYS = CertificateKeys({FP: "ssh-rsa AAAA x"}, {FP: b"-----BEGIN OPENSSH PRIVATE KEY-----\n"})


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("path, resolved", [
    ("/home/u/.ssh/id_rsa", "/home/u/.ssh/id_rsa"),
    ("$HOME/u/.ssh/id_rsa", "/home/u/.ssh/id_rsa"),  # $HOME is the home base, as waagent
    ("/home/u/./a/../id_rsa", "/home/u/id_rsa"),
])
def test_paths_inside_the_home_are_normalised(path, resolved):
    assert keypairs.resolve_path(path, "/home/u") == resolved


@pytest.mark.parametrize("path", [
    "/etc/passwd", "/home/other/.ssh/id_rsa", "relative/x", "$HOME/../../etc/x",
    "/home/u", "/home/u/", "/home/u/../u2/x", "", "/home/u/x\x00y",
])
def test_paths_outside_the_home_are_refused_with_a_reason(path):
    with pytest.raises(UserConfigError) as err:
        keypairs.resolve_path(path, "/home/u")
    assert err.value.reason in ("key pair path outside the user's home",
                                "invalid key pair path")


@pytest.mark.parametrize("fingerprint", ["..", "../..", "AB" * 19, "ZZ" * 20])
def test_a_fingerprint_must_be_forty_hex_digits(fingerprint):
    with pytest.raises(UserConfigError, match="invalid key pair fingerprint"):
        keypairs.key_pair_file(fingerprint, "/home/u/.ssh/id_rsa", "/home/u", KEYS)


def test_a_pair_without_its_certificate_is_a_failure():
    with pytest.raises(UserConfigError, match="certificate for key pair not found"):
        keypairs.key_pair_file("CD" * 20, "/home/u/.ssh/id_rsa", "/home/u", KEYS)


def test_installed_with_modes_and_missing_dirs_owned_by_the_user(tmp_path):
    home = tmp_path / "home/u"
    home.mkdir(parents=True)
    item = keypairs.key_pair_file(FP.lower(), "/home/u/a/b/id_rsa", "/home/u", KEYS)
    written = keypairs.install([item], os.getuid(), os.getgid(), "/home/u", root=tmp_path)
    dest = home / "a/b/id_rsa"
    assert written == [str(dest), f"{dest}.pub"]
    assert mode(dest) == 0o600 and mode(f"{dest}.pub") == 0o644
    assert mode(home / "a") == 0o700 and mode(home / "a/b") == 0o700
    assert (home / "a").stat().st_uid == os.getuid()
    assert dest.read_bytes().startswith(b"-----BEGIN OPENSSH")
    assert not list(dest.parent.glob(".*tmp"))


def test_staged_privately_then_installed_later(tmp_path):
    staging = tmp_path / "var/lib/cloudinit-azure/keypairs"
    home = tmp_path / "home/u"
    home.mkdir(parents=True)
    item = keypairs.key_pair_file(FP, "/home/u/.ssh/id_rsa", "/home/u", KEYS)
    keypairs.stage([item], root=tmp_path)
    assert mode(staging) == 0o700 and mode(staging / FP) == 0o600
    later = keypairs.KeyPairFile(FP, item.path)  # what the state keeps: no key material
    keypairs.install([later], os.getuid(), os.getgid(), "/home/u", root=tmp_path)
    assert (home / ".ssh/id_rsa.pub").read_text() == "ssh-rsa AAAA x\n"
    assert not (staging / FP).exists()


def test_install_refuses_a_path_that_skipped_the_plan(tmp_path):
    with pytest.raises(UserConfigError):
        keypairs.install([keypairs.KeyPairFile(FP, "/etc/shadow", b"x")], 0, 0, "/home/u",
                         root=tmp_path)


def test_nothing_staged_without_pairs(tmp_path):
    keypairs.stage([], root=tmp_path)
    assert not (tmp_path / "var").exists()
