"""``datasource: Azure:`` settings: every built-in key accepted, unknown keys warned."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudinit_azure import settings
from cloudinit_azure.report import ConfigError, Report, decode_report
from tests.fuzz import fuzz

# The built-in datasource's BUILTIN_DS_CONFIG of older cloud-init releases
# (17.x-21.x), as images still carry it in cloud.cfg.d.
LEGACY = {
    "agent_command": "__builtin__",
    "data_dir": "/var/lib/waagent",
    "set_hostname": True,
    "hostname_bounce": {"interface": "eth0", "policy": True, "command": "builtin",
                        "hostname_command": "hostname"},
    "disk_aliases": {"ephemeral0": "/dev/disk/cloud/azure_resource"},
    "dhclient_lease_file": "/var/lib/dhcp/dhclient.eth0.leases",
    "apply_network_config": True,
}
OLDEST = {
    "agent_command": ["service", "walinuxagent", "start"],
    "hostname_bounce": {"interface": "eth0", "policy": "force",
                        "command": ["sh", "-xc", "ifdown eth0; ifup eth0"],
                        "hostname_command": ["hostname"]},
}


def _load(ds_cfg, log=None):
    return settings.load_datasource({"datasource": {"Azure": ds_cfg}}, log=log)


def test_defaults_without_any_config():
    cfg = settings.load_datasource({})
    assert cfg["apply_network_config"] is True and cfg["sudo"] == "auto"
    assert settings.load_datasource({"datasource": None}) == cfg
    assert settings.load_datasource({"datasource": {"Azure": None}}) == cfg


@pytest.mark.parametrize("given_cfg", [LEGACY, OLDEST, {"hostname_bounce": None},
                                       {"disk_aliases": None}, {"never_destroy_ntfs": True},
                                       {"apply_network_config_for_secondary_ips": False},
                                       {"hostname_bounce": {"policy": "OFF"}}])
def test_legacy_keys_are_accepted_without_a_warning(given_cfg, caplog):
    with caplog.at_level(logging.DEBUG, logger="cloudinit_azure"):
        cfg = _load(given_cfg)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    for key, value in given_cfg.items():
        assert cfg[key] == value


def test_every_key_of_the_installed_builtin_datasource_is_known():
    builtin = pytest.importorskip("cloudinit.sources.DataSourceAzure")
    known = settings.schema("datasource_azure")["properties"]
    keys = set(builtin.BUILTIN_DS_CONFIG) | {builtin.DS_CFG_KEY_PRESERVE_NTFS}
    assert keys <= set(known)
    # The built-in's own defaults validate as they are.
    _load(dict(builtin.BUILTIN_DS_CONFIG))


def test_an_unknown_key_is_one_warning_naming_it_and_is_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="cloudinit_azure"):
        cfg = _load({"agent_comand": "__builtin__", "apply_network_config": False})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["datasource.Azure: unknown key 'agent_comand' ignored"]
    assert "agent_comand" not in cfg and cfg["apply_network_config"] is False


def test_an_unknown_key_is_shown_printable():
    log = logging.getLogger("test_settings.printable")
    records = []
    log.addHandler(type("H", (logging.Handler,), {"emit": lambda s, r: records.append(r)})())
    _load({"x\ud800y\n" + "k" * 500: 1}, log=log)
    (message,) = [r.getMessage() for r in records]
    message.encode("utf-8")
    assert "\n" not in message and len(message) < 140


@pytest.mark.parametrize("given_cfg, key", [
    ({"agent_command": 5}, "datasource.Azure.agent_command"),
    ({"agent_command": []}, "datasource.Azure.agent_command"),
    ({"set_hostname": "maybe"}, "datasource.Azure.set_hostname"),
    ({"hostname_bounce": {"policy": "sometimes"}}, "datasource.Azure.hostname_bounce.policy"),
    ({"hostname_bounce": "eth0"}, "datasource.Azure.hostname_bounce"),
    ({"disk_aliases": {"ephemeral0": 1}}, "datasource.Azure.disk_aliases.ephemeral0"),
    ({"data_dir": "relative"}, "datasource.Azure.data_dir"),
    ({"dhclient_lease_file": 3}, "datasource.Azure.dhclient_lease_file"),
    ({"imds_deadline_s": "soon"}, "datasource.Azure.imds_deadline_s"),
    ({"sudo": "always"}, "datasource.Azure.sudo"),
])
def test_a_known_key_with_a_bad_value_is_a_config_error_naming_it(given_cfg, key):
    with pytest.raises(ConfigError) as err:
        _load(given_cfg)
    assert err.value.reason == "invalid cloudinit-azure configuration"
    assert err.value.supporting_data["key"] == key
    assert f"at {key}:" in str(err.value)
    decoded = decode_report(Report.from_error(err.value).encode())
    assert decoded["reason"] == "invalid cloudinit-azure configuration"
    assert decoded["key"] == key


@pytest.mark.parametrize("sys_cfg, key", [
    ({"datasource": ["Azure"]}, "datasource"),
    ({"datasource": {"Azure": "on"}}, "datasource.Azure"),
])
def test_a_namespace_that_is_not_a_mapping_is_a_config_error(sys_cfg, key):
    with pytest.raises(ConfigError) as err:
        settings.load_datasource(sys_cfg)
    assert err.value.supporting_data["key"] == key


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=10)


@fuzz
@given(st.dictionaries(st.sampled_from(sorted(settings.schema("datasource_azure")
                                              ["properties"]) + ["other", "x"]),
                       _json, max_size=4))
def test_any_document_is_settings_or_a_config_error(doc):
    try:
        cfg = _load(doc)
    except ConfigError as err:
        assert err.supporting_data["key"].startswith("datasource.Azure")
    else:
        assert set(cfg) <= set(settings.schema("datasource_azure")["properties"])


def test_every_config_module_has_a_schema_on_one_draft():
    from cloudinit_azure.modules import cloud_schema

    names = (*cloud_schema.MODULES, settings.DATASOURCE_NAMESPACE)
    assert {settings.schema(n)["$schema"] for n in names} == {
        "https://json-schema.org/draft/2020-12/schema"}
    assert set(cloud_schema.NAMESPACES) == set(cloud_schema.MODULES)


def test_azure_ready_is_loaded_like_the_others():
    assert settings.load("azure_ready", {}) == {}
    with pytest.raises(ConfigError) as info:
        settings.load("azure_ready", {"azure_ready": {"retry": 3}})
    assert info.value.supporting_data["key"] == "azure_ready"


def test_partial_settings_get_the_schemas_defaults():
    got = settings.with_defaults("azure_network", {"publish_hostname": {"watch": True}})
    assert got["publish_hostname"] == {"enabled": True, "watch": True}
    assert got["mask_persistent_net_rules"] is True and got["host_key_type"] is None
