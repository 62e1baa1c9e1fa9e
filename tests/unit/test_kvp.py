from __future__ import annotations

import json
import multiprocessing
import os
import time
from datetime import datetime, timezone

import pytest

from cloudinit_azure import kvp
from cloudinit_azure.report import MediaError, Report, decode_report


def test_record_layout_and_padding():
    rec = kvp.encode_record("KEY", "value")
    assert len(rec) == kvp.RECORD_SIZE == 2560
    assert rec[:3] == b"KEY"
    assert rec[3:512] == b"\x00" * 509
    assert rec[512:517] == b"value"
    assert rec[517:] == b"\x00" * (2048 - 5)


def test_round_trip():
    records = [("a", "1"), ("PROVISIONING_REPORT", "result=success|agent=x"),
               ("ключ", "значение ✓"), ("empty", "")]
    data = b"".join(kvp.encode_record(k, v) for k, v in records)
    assert len(data) == 4 * 2560
    assert kvp.decode_records(data) == records


def test_decode_ignores_trailing_partial_record_and_empty_slots():
    data = kvp.encode_record("a", "1") + b"\x00" * 2560 + kvp.encode_record("b", "2")
    assert kvp.decode_records(data + b"garbage" * 10) == [("a", "1"), ("b", "2")]
    assert kvp.decode_records(b"") == []
    assert kvp.decode_records(b"x" * 2559) == []


def test_value_truncated_to_1024_chars():
    rec = kvp.encode_record("k", "x" * 5000)
    assert kvp.decode_records(rec) == [("k", "x" * 1024)]


def test_value_truncated_at_utf8_boundary_when_bytes_overflow():
    # 1,024 four-byte characters are 4,096 bytes: cut to whole characters in 2,048.
    value = "a" + "\U0001F600" * 1100
    rec = kvp.encode_record("k", value)
    raw_value = rec[512:].rstrip(b"\x00")
    assert len(raw_value) <= 2048
    decoded = raw_value.decode("utf-8")  # strict: no partial sequence
    assert decoded == "a" + "\U0001F600" * 511
    assert len(rec) == 2560


def test_value_without_char_limit_fills_2048_bytes():
    rec = kvp.encode_record("k", "é" * 2000, max_chars=None)
    assert kvp.decode_records(rec) == [("k", "é" * 1024)]


@pytest.mark.parametrize("key", ["", "k" * 513, "é" * 257, "a\x00b"])
def test_bad_keys_rejected(key):
    with pytest.raises(ValueError):
        kvp.encode_record(key, "v")


def test_key_of_exactly_512_bytes_allowed():
    rec = kvp.encode_record("k" * 512, "v")
    assert kvp.decode_records(rec) == [("k" * 512, "v")]


def test_nul_in_value_rejected():
    with pytest.raises(ValueError):
        kvp.encode_record("k", "a\x00b")


def test_append_and_read(tmp_path):
    pool = tmp_path / ".kvp_pool_1"
    assert kvp.read(pool) == []
    assert kvp.append(pool, [("a", "1"), ("b", "2")]) == 2
    assert kvp.append(pool, [("c", "3")]) == 1
    assert kvp.append(pool, []) == 0
    assert pool.stat().st_size == 3 * 2560
    assert kvp.read(pool) == [("a", "1"), ("b", "2"), ("c", "3")]
    assert kvp.read(pool, lock=False) == kvp.read(pool)


def test_append_creates_pool_0644(tmp_path):
    pool = tmp_path / "pool"
    old = os.umask(0)
    try:
        kvp.append(pool, [("a", "1")])
    finally:
        os.umask(old)
    assert pool.stat().st_mode & 0o777 == 0o644


def test_append_without_directory_raises(tmp_path):
    with pytest.raises(OSError):
        kvp.append(tmp_path / "missing" / "pool", [("a", "1")])


def _writer(path: str, worker: int, count: int) -> None:
    for i in range(count):
        # Each call appends 3 records; they must stay together.
        kvp.append(path, [(f"w{worker}-{i}-{j}", f"{worker}:{i}:{j}" * 100)
                          for j in range(3)])


def test_concurrent_appends_do_not_interleave(tmp_path):
    pool = str(tmp_path / "pool")
    workers, count = 6, 40
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(pool, w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert os.path.getsize(pool) == workers * count * 3 * 2560
    records = kvp.read(pool)
    assert len(records) == workers * count * 3
    for idx in range(0, len(records), 3):
        group = records[idx:idx + 3]
        prefix = group[0][0].rsplit("-", 1)[0]
        assert [k for k, _ in group] == [f"{prefix}-{j}" for j in range(3)]
        for key, value in group:
            w, i, j = key[1:].split("-")
            assert value == (f"{w}:{i}:{j}" * 100)[:1024]
    assert len({k for k, _ in records}) == len(records)


def test_boot_time(tmp_path):
    (tmp_path / "stat").write_text("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n")
    assert kvp.boot_time(tmp_path) == 1700000000.0
    (tmp_path / "stat").write_text("cpu 1\n")
    assert kvp.boot_time(tmp_path) is None
    assert kvp.boot_time(tmp_path / "nope") is None


def test_boot_time_of_this_machine():
    bt = kvp.boot_time()
    assert bt is not None and bt < time.time()


def test_truncate_if_stale(tmp_path):
    pool = tmp_path / "pool"
    assert kvp.truncate_if_stale(pool, time.time()) is False  # missing
    kvp.append(pool, [("old", "boot")])
    old = time.time() - 3600
    os.utime(pool, (old, old))
    boot = time.time() - 60
    assert kvp.truncate_if_stale(pool, boot) is True
    assert pool.stat().st_size == 0
    assert pool.stat().st_mtime >= boot
    # Once per boot: records written after boot survive a second call.
    kvp.append(pool, [("new", "boot")])
    assert kvp.truncate_if_stale(pool, boot) is False
    assert kvp.read(pool) == [("new", "boot")]


def test_truncate_if_stale_empty_pool_touches_mtime(tmp_path):
    pool = tmp_path / "pool"
    pool.touch()
    os.utime(pool, (1000, 1000))
    assert kvp.truncate_if_stale(pool, 2000) is True
    assert kvp.truncate_if_stale(pool, 2000) is False


def test_report_to_kvp(tmp_path):
    pool = tmp_path / "pool"
    error = MediaError(device="/dev/sr0", detail="x" * 3000)
    report = Report.from_error(error, vm_id="vm")
    assert kvp.report_to_kvp(pool, report.encode(kvp.AZURE_MAX_VALUE_CHARS)) is True
    [(key, value)] = kvp.read(pool)
    assert key == "PROVISIONING_REPORT"
    assert len(value) <= 1024
    decoded = decode_report(value)
    assert decoded["result"] == "error"
    assert decoded["vm_id"] == "vm"


def test_report_to_kvp_long_text_truncated(tmp_path):
    pool = tmp_path / "pool"
    assert kvp.report_to_kvp(pool, "result=success|" + "y" * 2000)
    [(_, value)] = kvp.read(pool)
    assert len(value) == 1024


def test_report_to_kvp_off_hyperv_returns_false_without_a_warning(tmp_path, caplog):
    """No pool directory is a normal VM off Hyper-V (a Debian 13 VM under QEMU warned
    nine times and cloud-init's status became degraded); a broken pool still warns."""
    import logging

    caplog.set_level(logging.DEBUG, logger=kvp.LOG.name)
    assert kvp.report_to_kvp(tmp_path / "no" / "pool", "result=success") is False
    assert kvp.diagnostic(tmp_path / "no" / "pool", "media", "found") is False
    assert [r.levelname for r in caplog.records] == ["DEBUG", "DEBUG"]
    assert "not Hyper-V" in caplog.text
    caplog.clear()
    (tmp_path / "pool").mkdir()  # a pool that cannot be written
    assert kvp.report_to_kvp(tmp_path / "pool", "result=success") is False
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "could not write" in caplog.text


def test_diagnostic(tmp_path):
    pool = tmp_path / "pool"
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert kvp.diagnostic(pool, "media|found", "read ovf from /dev/sr0", now=now)
    assert kvp.diagnostic(pool, "big", "z" * 5000)
    (k1, v1), (k2, v2) = kvp.read(pool)
    prefix, event, uid = k1.split("|")
    assert (prefix, event) == ("CLOUD_INIT_AZURE", "media_found")
    assert len(uid) == 36
    assert json.loads(v1) == {"msg": "read ovf from /dev/sr0",
                              "ts": "2024-01-02T03:04:05+00:00"}
    assert k1 != k2
    body = json.loads(v2)  # still valid JSON after cutting the message
    assert len(v2) <= 1024 and body["msg"] == "z" * len(body["msg"])


def test_diagnostic_value_escaped_message_fits():
    text = kvp.diagnostic_value('"\\\n' * 2000)
    assert len(text) <= 1024
    json.loads(text)
