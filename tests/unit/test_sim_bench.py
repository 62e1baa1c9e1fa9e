"""azure-sim bench: the pure parts (order, medians, ratios, rendering) on hand-made rows.

No boot runs here: ``run_bench`` is driven by a fake ``boot``. Timing is
measured by the benchmark, never asserted.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from azure_sim import bench


def _report(*, ready=0.4, login=1.0, keys=0.9, cpu=1.6, rss=43.0, requests=3, ok=True,
            problems=None, reason=None):
    prov = None
    if ready is not None and login is not None:
        prov = max(ready, login, keys or 0)
    return {
        "time_to_ready_s": ready, "time_to_login_s": login, "time_to_host_keys_s": keys,
        "time_to_provisioned_s": prov, "cpu_s": cpu, "peak_rss_mb": rss,
        "requests": [{"t": 0.1, "endpoint": "imds", "method": "GET", "path": "/x",
                      "status": 200}] * requests,
        "stages": [], "cloud_init_status": "done", "wall_s": 3.0, "sim_error": None,
        "failure": {"decoded": {"reason": reason}} if reason else None,
        "cloud_init_errors": [],
        "verdict": {"expected": "ready", "ok": ok, "problems": problems or []},
    }


def _row(combo, run=1, **kw):
    return bench.row_from_report(_report(**kw), run=run, combo=combo)


P = ("22.4.2", "dhclient", "plugin")
B = ("22.4.2", "dhclient", "builtin")


def test_combinations_default_is_twelve_in_display_order():
    combos = bench.combinations()
    assert len(combos) == 12
    assert combos[:2] == [("22.4.2", "dhclient", "plugin"), ("22.4.2", "dhclient", "builtin")]
    assert combos[-1] == ("25.1.4", "udhcpc", "builtin")


def test_combinations_selection_and_duplicates():
    combos = bench.combinations(["builtin", "builtin"], ["25.1.4"], ["dhcpcd"])
    assert combos == [("25.1.4", "dhcpcd", "builtin")]


def test_schedule_is_round_robin():
    combos = [P, B]
    assert bench.schedule(combos, 3) == [(1, P), (1, B), (2, P), (2, B), (3, P), (3, B)]


def test_warmup_prefers_builtin_dhclient():
    assert bench.warmup_combo([("25.1.4", "dhcpcd", "plugin"), B]) == B
    assert bench.warmup_combo([P]) == P


def test_login_time_needs_key_and_host_key():
    assert bench.login_time(0.8, 0.9) == 0.9
    assert bench.login_time(1.0, 0.9) == 1.0
    assert bench.login_time(None, 0.9) is None
    assert bench.login_time(0.8, None) is None


def test_median_ignores_none():
    assert bench.median([3.0, None, 1.0, 2.0]) == 2.0
    assert bench.median([1.0, 2.0]) == 1.5
    assert bench.median([None, None]) is None
    assert bench.median([]) is None


def test_row_from_report_ok():
    row = _row(B, run=2, ready=0.32, login=0.77, keys=0.80, requests=3)
    assert row["ok"] and row["reason"] is None
    assert (row["run"], row["cloud_init"], row["dhcp_client"], row["datasource"]) == (
        2, "22.4.2", "dhclient", "builtin")
    assert row["login_s"] == 0.80
    assert row["time_to_provisioned_s"] == 0.80
    assert row["requests"] == 3
    assert row["request_log"] == ["GET /x -> 200"] * 3
    json.dumps(row)


def test_row_from_report_failed_keeps_reason():
    row = _row(B, ready=None, login=None, ok=False, problems=["no Ready health report"],
               reason="failure to obtain DHCP lease")
    assert not row["ok"]
    assert "no Ready health report" in row["reason"]
    assert "failure to obtain DHCP lease" in row["reason"]
    assert row["time_to_provisioned_s"] is None


def test_failure_reason_names_logged_error_and_broken_os_network():
    report = _report(ready=None, login=None, ok=False, problems=["no Ready health report"])
    report["warnings"] = [
        "2026-11-25 23:20:56,238 - azure.py[WARNING]: something minor",
        "2026-11-25 23:20:56,238 - azure.py[ERROR]: dhclient executable not found"]
    report["stages"] = [{"stage": "init-local", "rc": 0}, {"stage": "os-network", "rc": 1}]
    reason = bench.failure_reason(report)
    assert reason == ("no Ready health report; logged: azure.py[ERROR]: dhclient executable "
                      "not found; the image's own DHCP client (os-network) exited 1")


def test_failure_reason_names_recoverable_error_of_degraded_boot():
    report = _report(ok=False, problems=["cloud-init status is degraded done"])
    report["cloud_init_recoverable_errors"] = {"WARNING": ["Failed to run x", "other"]}
    assert bench.failure_reason(report) == (
        "cloud-init status is degraded done; cloud-init WARNING: Failed to run x")


def test_aggregate_medians_over_ok_rows_only_and_counts_failures():
    rows = [
        _row(B, run=1, ready=0.30, login=0.70, keys=0.75, cpu=1.5, rss=40.0, requests=3),
        _row(B, run=2, ready=0.50, login=0.90, keys=0.95, cpu=1.7, rss=42.0, requests=3),
        _row(B, run=3, ready=0.40, login=0.80, keys=0.85, cpu=1.6, rss=41.0, requests=5),
        # a failed boot with wild numbers must not move the medians
        _row(B, run=4, ready=9.0, login=9.0, keys=9.0, cpu=9.0, rss=99.0, ok=False,
             problems=["Ready reported 2 times"]),
    ]
    [agg] = bench.aggregate(rows)
    assert agg["boots"] == 4 and agg["ok"] == 3 and agg["failed"] == 1
    assert agg["ready_s"] == 0.40
    assert agg["login_s"] == 0.85
    assert agg["provisioned_s"] == 0.85
    assert agg["cpu_s"] == 1.6
    assert agg["peak_rss_mb"] == 41.0
    assert agg["requests"] == 3
    assert agg["reasons"] == ["Ready reported 2 times"]


def test_aggregate_reasons_deduplicated_and_combo_order_kept():
    err = bench.error_row("SimError: the sandbox died", run=1, combo=P)
    rows = [err, dict(err, run=2), _row(B)]
    summary = bench.aggregate(rows, [B, P])
    assert [(s["datasource"]) for s in summary] == ["builtin", "plugin"]
    plugin = summary[1]
    assert plugin["failed"] == 2 and plugin["ok"] == 0
    assert plugin["reasons"] == ["simulator: SimError: the sandbox died"]
    assert plugin["provisioned_s"] is None and plugin["requests"] is None


def test_aggregate_lists_unmeasured_combo_with_zero_boots():
    [agg] = bench.aggregate([], [P])
    assert agg["boots"] == 0 and agg["failed"] == 0 and agg["ready_s"] is None


def _summary(entries):
    """entries: {(version, client, datasource): (provisioned, login)}."""
    out = []
    for (v, c, d), (prov, login) in entries.items():
        out.append({"cloud_init": v, "dhcp_client": c, "datasource": d, "boots": 3,
                    "ok": 3 if prov is not None else 0,
                    "failed": 0 if prov is not None else 3, "reasons": [],
                    "ready_s": 0.3, "login_s": login, "provisioned_s": prov,
                    "cpu_s": 1.0, "peak_rss_mb": 40.0, "requests": 3})
    return out


def test_ratios_goal_vs_builtin_login():
    summary = _summary({("22.4.2", "dhclient", "plugin"): (0.4, 0.4),
                        ("22.4.2", "dhclient", "builtin"): (0.8, 0.8)})
    [r] = bench.ratios(summary)
    assert r["ratio"] == "plugin provisioned / builtin login"
    assert r["value"] == pytest.approx(0.5)
    assert r["goal"] == 1.0 and r["met"] is True


def test_ratios_not_met():
    summary = _summary({("25.1.4", "udhcpc", "plugin"): (1.2, 1.2),
                        ("25.1.4", "udhcpc", "builtin"): (1.0, 1.0)})
    [r] = bench.ratios(summary)
    assert r["value"] == pytest.approx(1.2) and r["met"] is False


def test_ratios_dhcpcd_has_the_stricter_second_goal():
    summary = _summary({("25.1.4", "dhcpcd", "plugin"): (0.6, 0.5),
                        ("25.1.4", "dhcpcd", "builtin"): (2.0, 1.9)})
    first, second, third = bench.ratios(summary)
    assert third["ratio"] == "plugin init-local / builtin init-local"
    assert third["value"] is None  # no stage times in this summary
    assert first["goal"] == 1.0 and first["value"] == pytest.approx(0.6 / 1.9)
    assert second["ratio"] == "plugin provisioned / builtin provisioned"
    assert second["goal"] == 0.5
    assert second["value"] == pytest.approx(0.3) and second["met"] is True


def test_ratios_missing_side_is_na_not_met():
    summary = _summary({("22.4.2", "dhcpcd", "plugin"): (0.6, 0.5),
                        ("22.4.2", "dhcpcd", "builtin"): (None, None)})
    for r in bench.ratios(summary):
        assert r["value"] is None and r["met"] is None
        assert r["why_missing"].endswith(": no successful boot")
    assert [r["why_missing"] for r in bench.ratios(summary)][:2] == [
        "builtin: no successful boot"] * 2
    only_builtin = _summary({("22.4.2", "dhclient", "builtin"): (0.8, 0.8)})
    [r] = bench.ratios(only_builtin)
    assert r["why_missing"] == "plugin not measured"


def test_render_table_shows_medians_failures_and_reasons_once():
    rows = [_row(B, run=i, ready=0.3, login=0.8, keys=0.8) for i in (1, 2, 3)]
    err = bench.error_row("SimError: boom", run=1, combo=P)
    rows += [err, dict(err, run=2), dict(err, run=3)]
    text = bench.render_table(bench.aggregate(rows, [P, B]))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["cloud-init", "dhcp", "datasource"]
    assert "provisioned s" in lines[0] and "failed" in lines[0]
    builtin_line = next(ln for ln in lines if "builtin" in ln)
    assert "0.300" in builtin_line and "0.800" in builtin_line
    assert builtin_line.rstrip().endswith("0/3")
    plugin_line = next(ln for ln in lines if ln.startswith("22.4.2") and "plugin" in ln)
    assert plugin_line.rstrip().endswith("3/3") and " - " in plugin_line
    assert text.count("simulator: SimError: boom") == 1
    assert "failed boots:" in text


def test_render_ratios_lines():
    summary = _summary({("25.1.4", "dhcpcd", "plugin"): (0.6, 0.5),
                        ("25.1.4", "dhcpcd", "builtin"): (None, None),
                        ("25.1.4", "dhclient", "plugin"): (0.9, 0.9),
                        ("25.1.4", "dhclient", "builtin"): (0.8, 0.8)})
    text = bench.render_ratios(bench.ratios(summary))
    assert "goal <= 1.0" in text and "goal <= 0.5" in text
    assert "NOT met" in text
    assert "n/a (builtin: no successful boot)" in text
    assert bench.render_ratios([]).startswith("ratios: none")


def test_run_bench_interleaves_warms_up_and_survives_failures():
    calls = []

    def fake_boot(scenario, *, cloud_init, datasource, timeout):
        calls.append((cloud_init, scenario["dhcp_client"], datasource, timeout))
        if datasource == "plugin" and scenario["dhcp_client"] == "dhcpcd":
            raise RuntimeError("plugin not finished\nsecond line")
        if datasource == "plugin":
            return _report(ok=False, ready=None, problems=["no Ready health report"])
        return _report()

    combos = bench.combinations(None, ["22.4.2"], ["dhclient", "dhcpcd"])
    messages = []
    rows = bench.run_bench(combos, 2, boot_fn=fake_boot,
                           scenario_fn=lambda: {"dhcp_client": "dhclient"},
                           timeout=7.0, progress=messages.append)
    # one warm-up, then round robin
    assert calls[0] == ("22.4.2", "dhclient", "builtin", 7.0)
    assert [c[:3] for c in calls[1:]] == [c for _ in range(2) for c in combos]
    assert len(rows) == 8 and [r["run"] for r in rows] == [1] * 4 + [2] * 4
    crashed = [r for r in rows if r["dhcp_client"] == "dhcpcd" and r["datasource"] == "plugin"]
    assert all(not r["ok"] for r in crashed)
    assert crashed[0]["reason"] == "simulator: RuntimeError: plugin not finished"
    assert any("warm-up" in m for m in messages)
    assert any(m.startswith("[8/8]") for m in messages)
    json.dumps(rows)


def test_run_bench_without_warmup_and_unexpected_errors_propagate():
    def broken(scenario, **kw):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        bench.run_bench([B], 1, boot_fn=broken, scenario_fn=dict, warmup=False,
                        error_types=(RuntimeError,))


def test_main_rejects_zero_runs(capsys):
    args = SimpleNamespace(runs=0, cloud_init=None, datasource=None, dhcp_client=None,
                           json=None)
    assert bench.main(args) == 2
    assert "--runs" in capsys.readouterr().err
