"""Key pairs staged in init-local, installed with their modes once the user exists."""

from __future__ import annotations

import os
import stat

from cloudinit_azure import keypairs


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_staged_privately_then_installed_with_modes(tmp_path):
    staging = tmp_path / "stage"
    keypairs.stage({"AB": b"-----BEGIN OPENSSH PRIVATE KEY-----\n"},
                   {"AB": "ssh-rsa AAAA x", "CD": "ssh-rsa BBBB y"}, staging)
    assert mode(staging) == 0o700 and mode(staging / "AB") == 0o600
    assert not (staging / "CD.pub").exists()  # only pairs are staged
    dest = tmp_path / "home/u/.ssh/id_rsa"
    written = keypairs.install([("AB", str(dest)), ("EF", str(tmp_path / "x"))],
                               os.getuid(), os.getgid(), staging)
    assert written == [str(dest), f"{dest}.pub"]
    assert mode(dest) == 0o600 and mode(f"{dest}.pub") == 0o644
    assert mode(dest.parent) == 0o700
    assert dest.read_bytes().startswith(b"-----BEGIN OPENSSH")
    assert not (staging / "AB").exists()


def test_nothing_staged_without_private_keys(tmp_path):
    keypairs.stage({}, {"AB": "ssh-rsa AAAA x"}, tmp_path / "stage")
    assert not (tmp_path / "stage").exists()
