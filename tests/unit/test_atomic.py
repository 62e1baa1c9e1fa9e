"""The one atomic-write helper: old or new content, never a half-written file."""

from __future__ import annotations

import os
import stat

import pytest

from cloudinit_azure import atomic


def test_new_file_gets_the_given_mode_and_no_temporary_is_left(tmp_path):
    target = tmp_path / "marker.json"
    assert atomic.write_file(target, "{}\n", mode=0o600) is True
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marker.json"]


def test_existing_file_keeps_its_mode_and_owner(tmp_path):
    target = tmp_path / "fstab"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    atomic.write_file(target, b"new\n")
    assert target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_if_changed_leaves_an_identical_file_alone(tmp_path):
    target = tmp_path / "rule"
    atomic.write_file(target, "same\n")
    before = target.stat().st_ino
    assert atomic.write_file(target, "same\n", if_changed=True) is False
    assert target.stat().st_ino == before
    assert atomic.write_file(target, "other\n", if_changed=True) is True
    assert target.stat().st_ino != before


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "grub"
    target.write_text("GRUB_CMDLINE_LINUX=\"\"\n")

    def broken_fsync(fd):
        raise OSError(5, "I/O error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError):
        atomic.write_file(target, "GRUB_CMDLINE_LINUX=\"numa=off\"\n")
    assert target.read_text() == "GRUB_CMDLINE_LINUX=\"\"\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grub"]


def test_the_data_is_synced_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("rename"),
                                                     real_replace(a, b)))
    atomic.write_file(tmp_path / "f", "x")
    # file data, the rename, then the directory entry
    assert calls == ["fsync", "rename", "fsync"]


def test_a_symlink_in_place_of_the_temporary_is_not_followed(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)
    monkeypatch.setattr(os, "getpid", lambda: 7)
    (tmp_path / ".f.7.000000.tmp").symlink_to(victim)
    atomic.write_file(tmp_path / "f", "new")
    assert victim.read_text() == "keep"
    assert (tmp_path / "f").read_text() == "new" and not (tmp_path / "f").is_symlink()


def test_a_temporary_left_by_a_power_cut_goes_with_the_next_write(tmp_path):
    (tmp_path / "fstab").write_text("old\n")
    (tmp_path / ".fstab.123.abcdef.tmp").write_text("half")
    (tmp_path / ".other.1.aaaaaa.tmp").write_text("not ours")
    atomic.write_file(tmp_path / "fstab", "new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.1.aaaaaa.tmp", "fstab"]


def test_sync_filesystem_syncs_the_file_system_of_the_path(tmp_path, monkeypatch):
    import ctypes

    calls, loads = [], []

    class Libc:
        def syncfs(self, fd):
            calls.append(os.fstat(fd).st_dev)
            return 0

    def cdll(*a, **k):
        loads.append(a)
        return Libc()

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setattr(os, "sync", lambda: calls.append("sync"))
    atomic._libc.cache_clear()
    try:
        atomic.sync_filesystem(tmp_path)
        atomic.sync_filesystem(tmp_path)
    finally:
        atomic._libc.cache_clear()  # not the fake for later tests
    assert calls == [tmp_path.stat().st_dev] * 2
    assert len(loads) == 1  # libc loaded once (a pool VM: while it waits, not before Ready)


def test_sync_filesystem_falls_back_to_sync(tmp_path, monkeypatch):
    import ctypes

    class Libc:
        def syncfs(self, fd):
            return -1

    calls = []
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: Libc())
    monkeypatch.setattr(os, "sync", lambda: calls.append("sync"))
    atomic._libc.cache_clear()
    try:
        atomic.sync_filesystem(tmp_path)
    finally:
        atomic._libc.cache_clear()
    assert calls == ["sync"]


def test_drop_empty_removes_only_empty_files(tmp_path):
    empty, full = tmp_path / "set-hostname", tmp_path / "other"
    empty.write_text("")
    full.write_text('{"hostname": "vm"}')
    missing = tmp_path / "missing"
    assert atomic.drop_empty([str(empty), str(full), str(missing)]) == [str(empty)]
    assert not empty.exists() and full.exists()
