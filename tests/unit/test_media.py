from __future__ import annotations

import io
import logging
import os
import random
import stat
import time

import pycdlib
import pytest

from cloudinit_azure import media
from cloudinit_azure.media import Candidate
from cloudinit_azure.report import MediaError
from cloudinit_azure.runner import CommandError, Result
from tests.fakes import FakeRunner

OVF = b'<?xml version="1.0"?><Environment>ovf</Environment>\n'


def build(path, *, data=OVF, new=None, add=None, extra=()):
    """Write an image with pycdlib; ``add`` are add_fp keyword paths (None = no file)."""
    iso = pycdlib.PyCdlib()
    iso.new(**(new or {}))
    if add is not None:
        iso.add_fp(io.BytesIO(data), len(data), **add)
    for name, kwargs in extra:
        iso.add_fp(io.BytesIO(name), len(name), **kwargs)
    iso.write(str(path))
    iso.close()
    return path


AZURE = dict(new=dict(interchange_level=3, joliet=3, udf="2.60"),
             add=dict(iso_path="/OVF_ENV.XML;1", joliet_path="/ovf-env.xml",
                      udf_path="/ovf-env.xml"))


def test_azure_udf_iso_joliet_image(tmp_path):
    image = build(tmp_path / "azure.iso", **AZURE)
    assert media.read_ovf_from_image(image) == OVF
    assert media.read_ovf_from_image(str(image)) == OVF


def test_azure_image_is_fast(tmp_path):
    image = build(tmp_path / "azure.iso", **AZURE)
    media.read_ovf_from_image(image)
    start = time.perf_counter()
    for _ in range(10):
        media.read_ovf_from_image(image)
    assert (time.perf_counter() - start) / 10 < 0.05


def test_udf_is_preferred(tmp_path):
    # Different contents per namespace show which tree was read.
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, udf="2.60")
    for data, kw in [(b"iso", dict(iso_path="/OVF_ENV.XML;1", joliet_path="/ovf-env.xml")),
                     (b"udf", dict(udf_path="/ovf-env.xml"))]:
        iso.add_fp(io.BytesIO(data), len(data), **kw)
    iso.write(str(tmp_path / "i.iso"))
    iso.close()
    assert media.read_ovf_from_image(tmp_path / "i.iso") == b"udf"


def test_joliet_preferred_over_iso9660(tmp_path):
    iso = pycdlib.PyCdlib()
    iso.new(joliet=3)
    iso.add_fp(io.BytesIO(b"iso"), 3, iso_path="/OVF_ENV.XML;1")
    iso.add_fp(io.BytesIO(b"joliet"), 6, iso_path="/OVFENV.XML;1", joliet_path="/ovf-env.xml")
    iso.write(str(tmp_path / "i.iso"))
    iso.close()
    assert media.read_ovf_from_image(tmp_path / "i.iso") == b"joliet"


def test_large_blank_device_fails_fast(tmp_path):
    blank = tmp_path / "blank.img"
    with open(blank, "wb") as fh:
        fh.truncate(4 * 1024**3)  # sparse: a 4 GiB "device" of zeros
    start = time.perf_counter()
    with pytest.raises(MediaError, match="unreadable media"):
        media.read_ovf_from_image(blank)
    assert time.perf_counter() - start < 0.5


def test_joliet_only_image(tmp_path):
    image = build(tmp_path / "j.iso", new=dict(joliet=3),
                  add=dict(iso_path="/OVFENV.XML;1", joliet_path="/OVF-ENV.xml"))
    assert media.read_ovf_from_image(image) == OVF


def test_rock_ridge_image(tmp_path):
    image = build(tmp_path / "rr.iso", new=dict(rock_ridge="1.09"),
                  add=dict(iso_path="/OVFENV.XML;1", rr_name="ovf-env.xml"))
    assert media.read_ovf_from_image(image) == OVF


@pytest.mark.parametrize("iso_path, level", [("/OVF_ENV.XML;1", 1), ("/ovf-env.xml", 4)])
def test_plain_iso9660_image(tmp_path, iso_path, level):
    image = build(tmp_path / "p.iso", new=dict(interchange_level=level),
                  add=dict(iso_path=iso_path))
    assert media.read_ovf_from_image(image) == OVF


def test_udf_only_file(tmp_path):
    image = build(tmp_path / "u.iso", new=dict(udf="2.60"), add=dict(udf_path="/ovf-env.xml"))
    assert media.read_ovf_from_image(image) == OVF


def test_udf_name_case_insensitive(tmp_path):
    image = build(tmp_path / "u.iso", new=dict(udf="2.60"), add=dict(udf_path="/OVF-ENV.XML"))
    assert media.read_ovf_from_image(image) == OVF


def test_other_files_ignored(tmp_path):
    image = build(tmp_path / "o.iso", new=dict(joliet=3, udf="2.60"),
                  add=dict(iso_path="/OVF_ENV.XML;1", joliet_path="/ovf-env.xml",
                           udf_path="/ovf-env.xml"),
                  extra=[(b"other", dict(iso_path="/OVF_ENV.BAK;1",
                                         joliet_path="/ovf-env.xml.bak",
                                         udf_path="/ovf-env.xml.bak"))])
    assert media.read_ovf_from_image(image) == OVF


def test_image_without_file(tmp_path):
    image = build(tmp_path / "none.iso", new=dict(joliet=3, udf="2.60"), add=None,
                  extra=[(b"x", dict(iso_path="/README.TXT;1", joliet_path="/readme.txt",
                                     udf_path="/readme.txt"))])
    with pytest.raises(MediaError) as info:
        media.read_ovf_from_image(image)
    assert info.value.reason == "ovf-env.xml not found on media"
    assert info.value.supporting_data == {"device": str(image)}


def test_file_in_subdirectory_not_found(tmp_path):
    iso = pycdlib.PyCdlib()
    iso.new(udf="2.60")
    iso.add_directory("/SUB", udf_path="/sub")
    iso.add_fp(io.BytesIO(OVF), len(OVF), iso_path="/SUB/OVF_ENV.XML;1",
               udf_path="/sub/ovf-env.xml")
    iso.write(str(tmp_path / "s.iso"))
    iso.close()
    with pytest.raises(MediaError, match="not found"):
        media.read_ovf_from_image(tmp_path / "s.iso")


# Fixed noise, not os.urandom: xdist workers must collect the same test ids.
@pytest.mark.parametrize("content", [b"", b"garbage" * 1000, random.Random(17).randbytes(70000)],
                         ids=["empty", "text", "noise"])
def test_garbage_is_unreadable_media(tmp_path, content):
    bad = tmp_path / "bad.img"
    bad.write_bytes(content)
    with pytest.raises(MediaError) as info:
        media.read_ovf_from_image(bad)
    assert info.value.reason == "unreadable media"
    assert info.value.supporting_data["device"] == str(bad)


def test_missing_device_is_unreadable(tmp_path):
    with pytest.raises(MediaError) as info:
        media.read_ovf_from_image(tmp_path / "sr9")
    assert info.value.reason == "unreadable media"


def test_file_handle_closed(tmp_path, monkeypatch):
    opened = []
    real_open = open

    def spy(*args, **kwargs):
        fh = real_open(*args, **kwargs)
        opened.append(fh)
        return fh

    monkeypatch.setattr("builtins.open", spy)
    image = build(tmp_path / "a.iso", **AZURE)
    bad = tmp_path / "bad"
    bad.write_bytes(b"junk" * 10000)
    media.read_ovf_from_image(image)
    with pytest.raises(MediaError):
        media.read_ovf_from_image(bad)
    assert opened and all(fh.closed for fh in opened)


def test_too_large(tmp_path, monkeypatch):
    image = build(tmp_path / "a.iso", **AZURE)
    monkeypatch.setattr(media, "MAX_OVF_SIZE", 10)
    with pytest.raises(MediaError) as info:
        media.read_ovf_from_image(image)
    assert info.value.reason == "ovf-env.xml too large"


def test_the_mount_path_honours_the_size_limit_too(tmp_path, monkeypatch):
    """A mounted DVD's file is held to the same limit as a seed or an image read."""
    monkeypatch.setattr(media, "MAX_OVF_SIZE", 10)
    big = tmp_path / "mnt" / "ovf-env.xml"
    big.parent.mkdir()
    big.write_bytes(b"x" * 11)
    device = Candidate("device", "/dev/sr0")
    for mount in (lambda dev: big.read_bytes(),            # a callback reading it all
                  lambda dev: media.read_limited(big)):    # one reading through the limit
        with pytest.raises(MediaError) as info:
            media.read_ovf(device, mount=mount)
        assert info.value.reason == "ovf-env.xml too large"
    big.write_bytes(b"x" * 10)
    assert media.read_ovf(device, mount=lambda dev: media.read_limited(big)) == b"x" * 10


def test_read_limited_refuses_a_file_past_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(media, "MAX_OVF_SIZE", 4)
    path = tmp_path / "seed"
    path.write_bytes(b"12345")
    with pytest.raises(MediaError) as info:
        media.read_limited(path)
    assert info.value.supporting_data["max_bytes"] == 4
    with pytest.raises(MediaError) as info:
        media.read_limited(tmp_path / "missing")
    assert info.value.reason == "ovf-env.xml not found on media"


# --- discovery -----------------------------------------------------------------------


BLKID = ("blkid", "-c", "/dev/null", "-t")


def test_probe_block_types():
    runner = FakeRunner({BLKID + ("TYPE=udf",): Result(0, "/dev/sr0\n/dev/sr1\n", ""),
                         BLKID + ("TYPE=iso9660",): Result(0, "/dev/sr1\n/dev/loop3\n\n", "")})
    assert media.probe_block_types(runner) == {"/dev/sr0": "udf", "/dev/sr1": "udf",
                                               "/dev/loop3": "iso9660"}
    assert runner.invocations[0] == (
        ["blkid", "-c", "/dev/null", "-t", "TYPE=udf", "-o", "device"], {"check": False})


def test_probe_block_types_none_found():
    runner = FakeRunner({BLKID + ("TYPE=udf",): Result(2, "", ""),
                         BLKID + ("TYPE=iso9660",): Result(2, "", "")})
    assert media.probe_block_types(runner) == {}


def test_probe_block_types_failures(caplog):
    runner = FakeRunner({BLKID + ("TYPE=udf",): FileNotFoundError("blkid"),
                         BLKID + ("TYPE=iso9660",): Result(4, "", "usage")})
    with caplog.at_level(logging.WARNING):
        assert media.probe_block_types(runner) == {}
    assert "cannot probe" in caplog.text and "exited 4" in caplog.text
    runner = FakeRunner({BLKID + ("TYPE=udf",): CommandError(["blkid"], Result(1, "", "")),
                         BLKID + ("TYPE=iso9660",): Result(0, "/dev/sr0\n", "")})
    assert media.probe_block_types(runner) == {"/dev/sr0": "iso9660"}


def _root(tmp_path, seed=True, sr0=True, cache=True):
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    if seed:
        (root / "var/lib/cloud/seed/azure").mkdir(parents=True)
        (root / "var/lib/cloud/seed/azure/ovf-env.xml").write_bytes(b"seed")
    if sr0:
        (root / "dev/sr0").write_bytes(b"")
    if cache:
        (root / "var/lib/waagent").mkdir(parents=True)
        (root / "var/lib/waagent/ovf-env.xml").write_bytes(b"cache")
    return root


def test_candidates_order_and_dedup(tmp_path):
    root = _root(tmp_path)
    sr0 = str(root / "dev/sr0")
    types = {"/dev/sr5": "udf", sr0: "udf", "/dev/vda1": "ext4", "/dev/sr6": "ISO9660",
             "/dev/loop1": "vfat"}
    assert media.candidates(root, types) == [
        Candidate("seed", str(root / "var/lib/cloud/seed/azure/ovf-env.xml")),
        Candidate("device", sr0),
        Candidate("device", "/dev/sr5"),
        Candidate("device", "/dev/sr6"),
        Candidate("cache", str(root / "var/lib/waagent/ovf-env.xml")),
    ]


def test_candidates_dedup_symlink(tmp_path):
    root = _root(tmp_path, seed=False, cache=False)
    (root / "dev/cdrom").symlink_to("sr0")
    assert media.candidates(root, {str(root / "dev/cdrom"): "udf"}) == [
        Candidate("device", str(root / "dev/sr0"))]


def test_candidates_empty_root(tmp_path):
    root = _root(tmp_path, seed=False, sr0=False, cache=False)
    (root / "var/lib/cloud/seed/azure").mkdir(parents=True)  # seed dir without the file
    assert media.candidates(root, {}) == []
    assert media.candidates(root, {"/dev/sr1": "udf"}) == [Candidate("device", "/dev/sr1")]


def test_read_ovf_seed_and_cache(tmp_path):
    root = _root(tmp_path)
    seed, _, cache = media.candidates(root, {})
    assert media.read_ovf(seed) == b"seed"
    assert media.read_ovf(cache) == b"cache"
    with pytest.raises(MediaError, match="not found"):
        media.read_ovf(Candidate("seed", str(tmp_path / "nope")))
    with pytest.raises(MediaError, match="unreadable"):
        media.read_ovf(Candidate("cache", str(tmp_path)))  # a directory


def test_read_ovf_device_direct(tmp_path):
    image = build(tmp_path / "a.iso", **AZURE)
    assert media.read_ovf(Candidate("device", str(image))) == OVF


def test_read_ovf_device_mount_first(tmp_path):
    image = build(tmp_path / "a.iso", **AZURE)
    calls = []

    def mount(device):
        calls.append(device)
        return b"mounted"

    assert media.read_ovf(Candidate("device", str(image)), mount=mount) == b"mounted"
    assert calls == [str(image)]


@pytest.mark.parametrize("mount_result", [None, RuntimeError("mount: unknown fs udf")])
def test_read_ovf_device_mount_fallback(tmp_path, mount_result):
    image = build(tmp_path / "a.iso", **AZURE)

    def mount(device):
        if isinstance(mount_result, BaseException):
            raise mount_result
        return mount_result

    assert media.read_ovf(Candidate("device", str(image)), mount=mount) == OVF


def test_first_ovf(tmp_path):
    empty = build(tmp_path / "empty.iso", new=dict(udf="2.60"))
    good = build(tmp_path / "a.iso", **AZURE)
    cands = [Candidate("device", str(empty)), Candidate("device", str(good)),
             Candidate("cache", str(tmp_path / "never-read"))]
    assert media.first_ovf(cands) == (cands[1], OVF)


def test_first_ovf_all_fail(tmp_path):
    empty = build(tmp_path / "empty.iso", new=dict(udf="2.60"))
    junk = tmp_path / "junk"
    junk.write_bytes(b"junk")
    with pytest.raises(MediaError) as info:
        media.first_ovf([Candidate("device", str(empty)), Candidate("device", str(junk))])
    assert info.value.reason == "ovf-env.xml not found on media"
    assert info.value.supporting_data == {"device": str(empty),
                                          "tried": f"{empty},{junk}"}
    with pytest.raises(MediaError) as info:
        media.first_ovf([])
    assert info.value.reason == "no provisioning media found"


# --- side effects ----------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_write_cached_copy_modes(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = media.write_cached_copy(tmp_path, b"<redacted/>")
    finally:
        os.umask(old)
    assert path == tmp_path / "var/lib/waagent/ovf-env.xml"
    assert path.read_bytes() == b"<redacted/>"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["ovf-env.xml"]


def test_write_cached_copy_replaces_and_fixes_dir_mode(tmp_path):
    d = tmp_path / "var/lib/waagent"
    d.mkdir(parents=True, mode=0o755)
    os.chmod(d, 0o755)
    (d / "ovf-env.xml").write_bytes(b"old")
    os.chmod(d / "ovf-env.xml", 0o644)
    path = media.write_cached_copy(tmp_path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_write_cached_copy_never_world_readable(tmp_path, monkeypatch):
    # Every file ever created in the directory is created with mode 0600.
    modes = []
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            modes.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    media.write_cached_copy(tmp_path, b"x")
    assert modes == [0o600]


def test_write_cached_copy_cleans_up_on_failure(tmp_path, monkeypatch):
    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        media.write_cached_copy(tmp_path, b"x")
    assert os.listdir(tmp_path / "var/lib/waagent") == []


def test_eject():
    runner = FakeRunner({"eject": Result(0, "", "")})
    assert media.eject("/dev/sr0", runner) is True
    assert runner.invocations == [(["eject", "/dev/sr0"], {"check": False})]


@pytest.mark.parametrize("answer", [Result(1, "", "eject: unable to eject"),
                                    FileNotFoundError("eject"),
                                    CommandError(["eject"], Result(1, "", ""))])
def test_eject_failure_logged(answer, caplog):
    with caplog.at_level(logging.WARNING):
        assert media.eject("/dev/sr0", FakeRunner({"eject": answer})) is False
    assert "eject /dev/sr0" in caplog.text


def test_configured_seed_dir_replaces_the_default(tmp_path):
    seed = tmp_path / "elsewhere"
    seed.mkdir()
    (seed / "ovf-env.xml").write_text("<x/>")
    found = media.candidates(tmp_path, {}, seed_dir=seed)
    assert found[0] == media.Candidate("seed", str(seed / "ovf-env.xml"))
    assert media.candidates(tmp_path, {}) == []


def test_data_dir_chooses_where_the_cached_copy_lives_and_is_found(tmp_path):
    """The built-in datasource's ``data_dir`` setting: write there, find it there."""
    path = media.write_cached_copy(tmp_path, b"<redacted/>", data_dir="/srv/agent")
    assert path == tmp_path / "srv/agent/ovf-env.xml"
    assert not (tmp_path / "var/lib/waagent").exists()
    found = media.candidates(tmp_path, {}, data_dir="/srv/agent")
    assert [(c.kind, c.path) for c in found] == [("cache", str(path))]
    assert media.candidates(tmp_path, {}) == []
