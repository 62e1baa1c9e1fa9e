"""The live Platform seam: media lookup order and the KVP routing, on a fake root."""

from __future__ import annotations

from cloudinit_azure import kvp, settings
from cloudinit_azure.platform import LivePlatform
from cloudinit_azure.runner import Result
from tests.fakes import FakeRunner, fake_host


def cfg(tmp_path, **over):
    base = settings.load("datasource_azure", {})
    base.update(seed_dir=str(tmp_path / "seed"), kvp_pool=str(tmp_path / "kvp"), **over)
    return base


def Blkid(devices=()):
    """blkid finding ``devices`` as UDF and nothing else (exit 2: none found)."""
    udf = Result(0, "\n".join(devices), "") if devices else Result(2, "", "")
    return FakeRunner({("blkid", "-c", "/dev/null", "-t", "TYPE=udf"): udf},
                      default=Result(2, "", ""))


def test_a_seed_is_read_without_probing_block_devices(tmp_path):
    (tmp_path / "seed").mkdir()
    (tmp_path / "seed/ovf-env.xml").write_bytes(b"<x/>")
    blkid = Blkid()
    found = LivePlatform(cfg(tmp_path), host=fake_host(tmp_path, blkid)).read_media()
    assert (found.kind, found.data) == ("seed", b"<x/>") and blkid.calls == []


def test_other_media_are_probed_only_when_seed_and_sr0_fail(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/sr0").write_bytes(b"not an iso")
    cache = tmp_path / "var/lib/waagent"
    cache.mkdir(parents=True)
    (cache / "ovf-env.xml").write_bytes(b"<cached/>")
    blkid = Blkid()
    found = LivePlatform(cfg(tmp_path), host=fake_host(tmp_path, blkid)).read_media()
    assert found.kind == "cache" and len(blkid.calls) == 2  # udf, iso9660


def test_no_media_at_all_is_none(tmp_path):
    assert LivePlatform(cfg(tmp_path), host=fake_host(tmp_path, Blkid())).read_media() is None


def test_reports_and_diagnostics_go_to_their_kvp_keys(tmp_path):
    p = LivePlatform(cfg(tmp_path), host=fake_host(tmp_path))
    p.kvp("PROVISIONING_REPORT", "result=success")
    p.kvp("imds", "imds: ok in 0.010 s")
    records = kvp.read(tmp_path / "kvp")
    assert records[0] == ("PROVISIONING_REPORT", "result=success")
    assert records[1][0].startswith("CLOUD_INIT_AZURE|imds|")
    assert '"msg": "imds: ok in 0.010 s"' in records[1][1]
