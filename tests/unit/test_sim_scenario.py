"""azure-sim scenarios: the embedded default, validation messages, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from azure_sim.scenario import (
    DEFAULT_KEY,
    DEFAULT_SCENARIO_YAML,
    DEFAULTS,
    SCHEMA,
    ScenarioError,
    deep_merge,
    load_scenario,
    validate,
)

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_default_scenario_loads_and_validates():
    validate(yaml.safe_load(DEFAULT_SCENARIO_YAML))
    s = load_scenario()
    assert s["ovf"]["hostname"] == "sim-vm-01"
    assert s["ovf"]["username"] == "azureuser"
    assert s["ovf"]["public_keys"] == [DEFAULT_KEY]
    assert s["ovf"]["custom_data"].startswith("#cloud-config\n")
    assert s["ovf"]["namespace_prefix"] == "ns1"
    assert s["expect"] == "ready"
    assert s["media"] == "iso"
    # Every top-level default is present.
    assert set(DEFAULTS) <= set(s)


def test_empty_scenario_gets_every_default():
    s = load_scenario("")
    for key, value in DEFAULTS.items():
        assert s[key] == value, key
    assert s["ovf"]["hostname"] == "sim-vm-01"
    assert s["ovf"]["public_keys"] == [DEFAULT_KEY]  # a file says only what differs


def test_defaults_are_not_shared_between_loads():
    a = load_scenario("")
    a["resource_disk"]["files"].append("x")
    a["dhcp"]["option_245"] = False
    b = load_scenario("")
    assert b["resource_disk"]["files"] == ["dataloss_warning_readme.txt"]
    assert b["dhcp"]["option_245"] is True


@pytest.mark.parametrize("text,key", [
    ("bogus: 1", "'bogus'"),
    ("ovf: {hostnme: x}", "'ovf.hostnme'"),
    ("faults: [{endpoit: imds, status: 500}]", "'faults.0.endpoit'"),
    ("faults: [{endpoint: imds, status: 500}, {endpoint: imds, status: 500, cnt: 2}]",
     "'faults.1.cnt'"),
    ("dhcp: {option_254: true}", "'dhcp.option_254'"),
    ("ovf: {key_pairs: [{path: /x, colour: red}]}", "'ovf.key_pairs.0.colour'"),
])
def test_unknown_keys_refused_naming_the_key(text, key):
    with pytest.raises(ScenarioError) as exc:
        load_scenario(text)
    assert "unknown key" in str(exc.value)
    assert key in str(exc.value)


def test_unknown_nested_resource_disk_key_named():
    with pytest.raises(ScenarioError, match=r"unknown key 'resource_disk\.sizemib'"):
        load_scenario("resource_disk: {sizemib: 128}")


def test_unknown_resource_disk_key_refused_at_least():
    # Whatever the message, the scenario must not load.
    with pytest.raises(ScenarioError, match="resource_disk"):
        load_scenario("resource_disk: {sizemib: 128}")


@pytest.mark.parametrize("text,path,fragment", [
    ("boots: two", "boots", "integer"),
    ("ovf: {hostname: 3}", "ovf.hostname", "string"),
    ("ovf: {public_keys: ssh-ed25519 AAA}", "ovf.public_keys", "array"),
    ("dhcp: {option_245: 1}", "dhcp.option_245", "boolean"),
    ("imds: [1, 2]", "imds", "object"),
    ("media: floppy", "media", "iso"),
    ("nics: 9", "nics", "9"),
    ("faults: [{endpoint: imds, status: 500, count: 0}]", "faults.0.count", "0"),
    ("faults: [{endpoint: dns, status: 500}]", "faults.0.endpoint", "dns"),
    ("faults: [{endpoint: imds, status: 500, delay_s: 61}]", "faults.0.delay_s", "61"),
    ("resource_disk: true", "resource_disk", "True"),
    ("timeout_s: 1", "timeout_s", "1"),
])
def test_wrong_types_and_values_named(text, path, fragment):
    with pytest.raises(ScenarioError) as exc:
        load_scenario(text)
    msg = str(exc.value)
    assert f"bad value for '{path}'" in msg
    assert fragment in msg


def test_missing_required_fault_field_named():
    with pytest.raises(ScenarioError, match=r"'faults\.0'.*'status' is a required"):
        load_scenario("faults: [{endpoint: imds}]")


def test_top_level_must_be_a_mapping():
    with pytest.raises(ScenarioError, match="top level must be a mapping"):
        load_scenario("- a\n- b\n")


def test_ovf_and_ovf_xml_together_refused():
    with pytest.raises(ScenarioError, match="either 'ovf' or 'ovf_xml'"):
        load_scenario("ovf: {hostname: a}\novf_xml: '<Environment/>'\n")


def test_ovf_xml_alone_kept_verbatim_and_no_ovf_defaults():
    s = load_scenario("ovf_xml: '<Environment><bad'\n")
    assert s["ovf_xml"] == "<Environment><bad"
    assert "ovf" not in s


def test_ovf_defaults_merged_under_given_values():
    s = load_scenario("ovf: {username: alice, password: pw}")
    assert s["ovf"]["username"] == "alice"
    assert s["ovf"]["password"] == "pw"
    assert s["ovf"]["hostname"] == "sim-vm-01"
    assert s["ovf"]["namespace_prefix"] == "ns1"
    assert s["ovf"]["preprovisioned_vm"] is False


def test_resource_disk_defaults_merged():
    s = load_scenario("resource_disk: {size_mib: 128, format: ext4}")
    assert s["resource_disk"] == {"size_mib": 128, "format": "ext4",
                                  "files": ["dataloss_warning_readme.txt"]}


def test_resource_disk_false_kept_false():
    s = load_scenario("resource_disk: false")
    assert s["resource_disk"] is False


def test_fault_defaults_filled():
    s = load_scenario("faults: [{endpoint: imds, status: 500},"
                      " {endpoint: health, status: reset, count: 2, delay_s: 0.5,"
                      " retry_after: 3}]")
    assert s["faults"] == [
        {"endpoint": "imds", "status": 500, "count": 1, "delay_s": 0},
        {"endpoint": "health", "status": "reset", "count": 2, "delay_s": 0.5,
         "retry_after": 3},
    ]


def test_dhcp_partial_override_keeps_other_default():
    s = load_scenario("dhcp: {option_245: false}")
    assert s["dhcp"] == {"option_245": False, "option_121": True}


def test_deep_merge_dicts_merge_and_scalars_replace():
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    out = deep_merge(base, {"a": {"c": [2]}, "e": 2})
    assert out == {"a": {"b": 1, "c": [2]}, "d": 1, "e": 2}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}


def test_every_schema_key_has_a_default_or_is_optional():
    # Keys the rest of the simulator reads unconditionally must be defaulted.
    for key in ("media", "mount_shim", "imds", "faults", "resource_disk", "dhcp",
                "dhcp_client", "generation", "nics", "cloud_config", "boots", "expect",
                "timeout_s"):
        assert key in SCHEMA["properties"]
        assert key in DEFAULTS


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_example_scenarios_load(path):
    s = load_scenario(path.read_text())
    assert s["name"] == path.stem
    assert s["description"]
