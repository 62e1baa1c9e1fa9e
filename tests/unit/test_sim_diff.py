"""azure-sim diff's pure part: views of two boot reports, compared against the allow-list."""

from __future__ import annotations

import copy

import pytest

from azure_sim import diff

ALLOW_MD = """\
# doc

```sh
not: this
```

```yaml
allow:
  - id: routes
    paths: ["network.*"]
    reason: host routes
  - id: old-only
    cloud_init: ["22.4.2"]
    scenarios: ["net-*"]
    paths: [sshd.settings.passwordauthentication]
    builtin: "yes"
    plugin: "no"
    reason: >
      follows IMDS
  - id: masked
    kind: deliberate
    paths: ["network.masked"]
    plugin: '["-> /dev/null"]'
    reason: masked
  - id: reasons
    paths: [failure.reason]
    reason: our words
```
"""


def report(**over):
    base = {
        "ready": True, "ready_count": 1, "failure": None,
        "verdict": {"ok": True, "problems": []},
        "cloud_init_status": "done", "cloud_init_errors": [],
        "cloud_init_recoverable_errors": {},
        "requests": [{"method": "GET", "path": "/metadata/instance", "status": 200},
                     {"method": "GET", "path": "/machine/?comp=goalstate", "status": 200},
                     {"method": "POST", "path": "/machine?comp=health", "status": 200}],
        "health_reports": [{"state": "Ready"}], "kvp": [],
        "system": {"passwd": {"azureuser": {"uid": "1001", "shell": "/bin/bash"}},
                   "sshd": {"settings": {"passwordauthentication": "no"}},
                   "network": {"eth0": ["[Match]", "Name=eth0"]},
                   "instance_data": {"v1": {"region": "westeurope"},
                                     "ds": {"meta_data": {"imds": {"compute": {
                                         "publicKeys": [{"keyData": "k"}]}}}}}},
    }
    for key, value in over.items():
        base[key] = value
    return base


@pytest.fixture
def allow():
    return diff.parse_allowlist(ALLOW_MD)


def test_allowlist_block_is_found_and_read(allow):
    assert [a.id for a in allow] == ["routes", "old-only", "masked", "reasons"]
    assert allow[1].reason == "follows IMDS"
    assert allow[1].cloud_init == ("22.4.2",) and allow[0].kind == "deliberate"


def test_the_shipped_allowlist_parses_and_every_entry_has_a_reason():
    entries = diff.parse_allowlist(diff.ALLOWLIST.read_text())
    assert len(entries) >= 10
    assert all(len(e.reason) > 20 for e in entries)


@pytest.mark.parametrize("block, message", [
    ("nothing: here", "no ```yaml block"),
    ("allow:\n  - {id: a, paths: [x]}", "'reason' is required"),
    ("allow:\n  - {id: a, paths: [x], reason: r, typo: 1}", "unknown key 'typo'"),
    ("allow:\n  - {id: a, paths: [x], reason: r}\n  - {id: a, paths: [y], reason: r}",
     "duplicate id 'a'"),
    ("allow:\n  - {id: a, paths: [x], reason: r, kind: maybe}", "'kind' must be"),
    ("allow:\n  - {id: a, paths: 3, reason: r}", "'paths' must be"),
])
def test_a_bad_allowlist_is_refused_naming_the_problem(block, message):
    with pytest.raises(diff.AllowlistError, match=message):
        diff.parse_allowlist(f"```yaml\n{block}\n```\n")


def test_identical_reports_have_no_difference(allow):
    res = diff.result({"name": "s"}, "22.4.2", report(), report(), allow)
    assert res["ok"] and res["differences"] == [] and res["compared"] > 8


def test_an_undocumented_difference_fails_and_names_both_values(allow):
    ours = report()
    ours["system"]["passwd"]["azureuser"]["shell"] = "/bin/sh"
    res = diff.result({"name": "s"}, "22.4.2", report(), ours, allow)
    assert not res["ok"] and res["undocumented"] == 1
    [d] = res["differences"]
    assert (d["path"], d["builtin"], d["plugin"], d["allowed"]) == (
        "passwd.azureuser.shell", "/bin/bash", "/bin/sh", None)
    text = diff.render(res)
    assert "UNDOCUMENTED passwd.azureuser.shell" in text
    assert "built-in: /bin/bash" in text and "UNDOCUMENTED DIFFERENCES" in text


def test_documented_differences_pass_with_their_reason(allow):
    ours = report()
    ours["system"]["network"]["eth0"] = ["[Match]", "Name=eth0", "[Route]"]
    res = diff.result({"name": "s"}, "25.1.4", report(), ours, allow)
    assert res["ok"] and res["documented"] == 1
    assert res["differences"][0]["reason"] == "host routes"
    assert "+ plug-in only:  [Route]" in diff.render(res)


def test_scenario_version_and_value_narrow_an_entry(allow):
    theirs = report()
    theirs["system"]["sshd"]["settings"]["passwordauthentication"] = "yes"
    for scenario, version, ok in (("net-a", "22.4.2", True), ("other", "22.4.2", False),
                                  ("net-a", "25.1.4", False)):
        res = diff.result({"name": scenario}, version, theirs, report(), allow)
        assert res["ok"] is ok, (scenario, version)
    worse = report()
    worse["system"]["sshd"]["settings"]["passwordauthentication"] = "maybe"
    assert not diff.result({"name": "net-a"}, "22.4.2", theirs, worse, allow)["ok"]


def test_value_patterns_take_brackets_literally(allow):
    ours = report()
    ours["system"]["network"]["masked"] = ["-> /dev/null"]
    [d] = diff.classify(diff.compare(diff.view(report(), "ready"), diff.view(ours, "ready")),
                        allow[2:], scenario="s", cloud_init="22.4.2")
    assert d["allowed"] == "masked"
    ours["system"]["network"]["masked"] = ["-> /etc/other"]
    [d] = diff.classify(diff.compare(diff.view(report(), "ready"), diff.view(ours, "ready")),
                        allow[2:], scenario="s", cloud_init="22.4.2")
    assert d["allowed"] is None


def test_lists_of_mappings_are_indexed_lists_of_lines_are_one_value():
    flat = diff.flatten({"a": [{"b": 1}, {"b": 2}], "lines": ["x", "y"], "empty": {}})
    assert flat == {"a.0.b": 1, "a.1.b": 2, "lines": ["x", "y"], "empty": {}}


def test_requests_keep_their_order_and_collapse_repeats():
    r = report(requests=[{"method": "GET", "path": "/i", "status": 500}] * 3
               + [{"method": "GET", "path": "/i", "status": 200}])
    assert diff.requests(r) == ["GET /i -> 500 x3", "GET /i -> 200"]
    swapped = report()
    swapped["requests"] = list(reversed(swapped["requests"]))
    res = diff.result({"name": "s"}, "22.4.2", report(), swapped, [])
    assert [d["path"] for d in res["differences"]] == ["requests"]


def test_failure_scenarios_compare_the_failure_reports_only(allow):
    def failed(reason, **over):
        return report(ready=False, ready_count=0,
                      failure={"state": "NotReady", "substatus": "ProvisioningFailed",
                               "decoded": {"reason": reason}, "description": "x"},
                      system={"passwd": {"debian": {"uid": "1000"}}}, **over)

    scenario = {"name": "broken", "expect": "failure"}
    res = diff.result(scenario, "25.1.4", failed("theirs"), failed("ours"), allow)
    assert res["ok"] and [d["path"] for d in res["differences"]] == ["failure.reason"]
    res = diff.result(scenario, "25.1.4", failed("theirs"), report(), allow)
    paths = {d["path"] for d in res["differences"] if not d["allowed"]}
    assert not res["ok"] and {"outcome.ready", "outcome.failure_reported",
                              "failure.state"} <= paths


def test_a_scenario_the_builtin_cannot_boot_is_reported_not_compared(allow):
    scenario = {"name": "s", "dhcp_client": "udhcpc"}
    assert "only dhclient" in diff.builtin_unsupported(scenario, "22.4.2")
    assert diff.builtin_unsupported(scenario, "25.1.4") is None
    broken = report(ready=False, sim_error="timed out after 240 s in: boot 1: init-local")
    res = diff.result(scenario, "25.1.4", broken, report(), allow)
    assert res["builtin_unsupported"].startswith("the built-in's boot did not finish")
    assert res["ok"] and res["differences"] == []
    bad_ours = report(verdict={"ok": False, "problems": ["no Ready"]})
    assert not diff.result(scenario, "25.1.4", broken, bad_ours, allow)["ok"]
    res = diff.result(scenario, "25.1.4", report(ready=False, verdict={
        "ok": False, "problems": ["no Ready health report"]}), report(), allow)
    assert "did not provision: no Ready health report" in res["builtin_unsupported"]
    assert "not compared" in diff.render(res)


def test_run_boots_both_datasources_and_survives_a_builtin_that_cannot_run(allow):
    calls = []

    class SimFailure(Exception):
        pass

    def boot(scenario, *, cloud_init, datasource, timeout):
        calls.append((datasource, cloud_init))
        if datasource == "builtin" and scenario["name"] == "bad":
            raise SimFailure("the sandbox died")
        return copy.deepcopy(report())

    res = diff.run({"name": "ok"}, cloud_init="25.1.4", boot=boot, allowlist=allow,
                   on_error=SimFailure)
    assert calls == [("builtin", "25.1.4"), ("plugin", "25.1.4")] and res["ok"]
    res = diff.run({"name": "bad"}, cloud_init="25.1.4", boot=boot, allowlist=allow,
                   on_error=SimFailure)
    assert "could not run: the sandbox died" in res["builtin_unsupported"]
    calls.clear()
    diff.run({"name": "u", "dhcp_client": "dhcpcd"}, cloud_init="22.4.2", boot=boot,
             allowlist=allow)
    assert calls == [("plugin", "22.4.2")]  # not booted when known not to work


def test_cli_refuses_a_bad_allowlist_or_scenario_before_booting(tmp_path, capsys):
    from azure_sim import cli

    bad = tmp_path / "allow.md"
    bad.write_text("```yaml\nallow:\n  - {id: a}\n```\n")
    assert cli.main(["diff", "--allowlist", str(bad)]) == 2
    assert "'paths' is required" in capsys.readouterr().err
    scenario = tmp_path / "s.yaml"
    scenario.write_text("boots: two\n")
    assert cli.main(["diff", str(scenario)]) == 2
    assert "boots" in capsys.readouterr().err
