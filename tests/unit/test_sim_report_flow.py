"""Report keys for the init-local flow: host key changes after Ready, KVP phases."""

from __future__ import annotations

import json

from azure_sim import report


def test_host_keys_changed_compares_the_keys_seen_at_ready_with_the_last():
    history = [(10.0, {}), (10.5, {"ed": "aa"}), (12.0, {"ed": "bb"})]
    assert report.host_keys_changed(history, 11.0) is True  # regenerated after Ready
    assert report.host_keys_changed(history, 12.5) is False
    assert report.host_keys_changed(history[:2], 11.0) is False
    assert report.host_keys_changed(history, 10.2) is True  # none at Ready, some later
    assert report.host_keys_changed(history, None) is None
    assert report.host_keys_changed([], 11.0) is None


def test_kvp_diagnostics_parses_the_phase_records_only():
    value = json.dumps({"msg": "imds: fallback in 0.012 s (IMDS answered 403)",
                        "ts": "2026-12-01T00:00:00+00:00"})
    records = [{"key": "PROVISIONING_REPORT", "value": "result=success"},
               {"key": "CLOUD_INIT_AZURE|imds|1234", "value": value},
               {"key": "CLOUD_INIT_AZURE|ready|5678",
                "value": json.dumps({"msg": "ready: ok in 0.010 s"})}]
    assert report.kvp_diagnostics(records) == [
        {"phase": "imds", "outcome": "fallback", "seconds": 0.012,
         "detail": "IMDS answered 403"},
        {"phase": "ready", "outcome": "ok", "seconds": 0.01, "detail": ""}]
