"""Our namespaces in cloud-init's own user-data validation (22.4.2 and 25.1.4).

``make test`` runs these against both cloud-init versions (CLOUD_INIT=...).
"""

from __future__ import annotations

import pytest

ci_schema = pytest.importorskip("cloudinit.config.schema")

from cloudinit_azure.modules import cloud_schema  # noqa: E402

EVERY_KEY = {
    "azure_resource_disk": {"enabled": True, "device": "/dev/sdb", "filesystem": "xfs",
                            "label": "AzureTemp", "mountpoint": "/mnt/resource",
                            "mount_options": "defaults,nofail", "never_destroy_ntfs": False,
                            "swap": {"enabled": True, "size": "10%"}, "wait_seconds": 5},
    "azure_kernel": {"sysfs": "/sys", "numa": {"enabled": False},
                     "entropy": {"enabled": True},
                     "scsi_timeout": {"enabled": True, "seconds": 120},
                     "serial_console": {"enabled": True, "args": "console=ttyS0",
                                        "regenerate_grub": False, "getty": True}},
    "azure_network": {"platform_routes": {"enabled": True},
                      "publish_hostname": {"enabled": True, "watch": True},
                      "mask_persistent_net_rules": True,
                      "report_host_key_fingerprints": True, "host_key_type": "ed25519"},
    "cloud_init_modules": ["seed_random", "azure_kernel", ["azure_ready", "once"],
                           "azure_network", "azure_resource_disk"],
    "runcmd": ["true"],
}


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(ci_schema, "get_schema", ci_schema.get_schema)  # restored after
    assert cloud_schema.register()
    return ci_schema


def _errors(schema_mod, cfg):
    try:
        schema_mod.validate_cloudconfig_schema(cfg, strict=True)
    except schema_mod.SchemaValidationError as err:
        return str(err)
    return ""


def test_every_documented_key_and_module_name_validates(registered):
    assert _errors(registered, EVERY_KEY) == ""


def test_a_bad_value_of_ours_is_still_reported_naming_the_key(registered):
    err = _errors(registered, {"azure_resource_disk": {"filesystem": "zfs"}})
    assert "azure_resource_disk.filesystem" in err
    err = _errors(registered, {"azure_kernel": {"sysfs": "/sys/../etc"}})
    assert "azure_kernel.sysfs" in err
    err = _errors(registered, {"azure_network": {"publish_hostname": {"wtach": True}}})
    assert "azure_network.publish_hostname" in err


def test_registering_twice_wraps_once(registered):
    first = registered.get_schema
    assert cloud_schema.register()
    assert registered.get_schema is first


def test_other_schema_types_are_left_alone(registered):
    kind = getattr(registered, "SchemaType", None)
    if kind is None:
        pytest.skip("cloud-init 22.4 has one schema type")
    net = registered.get_schema(kind.NETWORK_CONFIG_V1)
    assert "azure_resource_disk" not in (net.get("properties") or {})
