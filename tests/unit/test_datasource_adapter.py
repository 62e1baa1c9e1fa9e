"""The datasource adapter against the cloud-init in the venv (22.4.2 by default).

The adapter holds no provisioning logic; these tests pin the parts of the
cloud-init interface it must honour: discovery, detection, instance-id
continuity, unpickling older objects, and module placement in its config.
"""

from __future__ import annotations

import pickle

import pytest

sources = pytest.importorskip("cloudinit.sources")
helpers = pytest.importorskip("cloudinit.helpers")

from cloudinit_azure.sources import DataSourceAzure as dsmod  # noqa: E402

UUID = "6bd2a1c7-3f0e-4b8a-9c51-2d7e8f4a1b30"


@pytest.fixture
def ds(tmp_path, monkeypatch):
    seed = tmp_path / "seed"
    seed.mkdir()
    paths = helpers.Paths({"cloud_dir": str(tmp_path / "cloud"),
                           "run_dir": str(tmp_path / "run")})
    cfg = {"datasource": {"Azure": {"seed_dir": str(seed)}},
           "cloud_init_modules": ["seed_random", "users-groups", "ssh"]}
    return dsmod.DataSourceAzure(cfg, None, paths)


def test_found_for_the_local_stage_only():
    local = sources.list_sources(["Azure"], (sources.DEP_FILESYSTEM,),
                                 ["cloudinit_azure.sources"])
    assert local == [dsmod.DataSourceAzure]
    assert sources.list_sources(["Azure"], (sources.DEP_FILESYSTEM, sources.DEP_NETWORK),
                                ["cloudinit_azure.sources"]) == []


def test_detection_by_asset_tag_or_seed(ds, monkeypatch, tmp_path):
    answers = {"chassis-asset-tag": ""}
    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: answers.get(key))
    calls = []
    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: calls.append(key) or answers.get(key))
    assert ds.ds_detect() is False
    assert ds._get_data() is False
    assert calls == ["chassis-asset-tag"]  # detected once per boot, not per call
    for tag, seed, expected in ((dsmod.AZURE_CHASSIS_ASSET_TAG, False, True),
                                ("", True, True)):
        answers["chassis-asset-tag"] = tag
        if seed:
            (tmp_path / "seed" / "ovf-env.xml").write_text("<x/>")
        ds._detected = None  # a new boot
        assert ds.ds_detect() is expected


def test_off_azure_get_data_is_false_without_touching_anything(ds, monkeypatch):
    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: None)
    monkeypatch.setattr(dsmod.DataSourceAzure, "_platform_network",
                        lambda self: pytest.fail("no network off Azure"))
    assert ds._get_data() is False
    assert ds.provisioned is False


@pytest.mark.parametrize("current, same", [
    (UUID, True), (UUID.upper(), True),
    ("c7a1d26b-0e3f-8a4b-9c51-2d7e8f4a1b30", True),  # Gen1 byte order
    ("00000000-0000-4000-8000-000000000001", False),
])
def test_check_instance_id_keeps_the_same_vm(ds, monkeypatch, current, same):
    ds.metadata = {"instance-id": UUID}
    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: current)
    assert ds.check_instance_id({}) is same


def test_unpickling_an_older_object_gains_new_attributes(ds):
    ds.metadata = {"instance-id": UUID}
    del ds.key_pairs
    del ds.wireserver_address
    restored = pickle.loads(pickle.dumps(ds))
    restored._unpickle(1)
    assert restored.key_pairs == [] and restored.wireserver_address is None
    assert restored.metadata["instance-id"] == UUID


def test_bad_datasource_config_names_the_key(tmp_path):
    paths = helpers.Paths({"cloud_dir": str(tmp_path)})
    ds = dsmod.DataSourceAzure({"datasource": {"Azure": {"imds_deadline_s": "soon"}}},
                               None, paths)
    from cloudinit_azure.report import ConfigError

    with pytest.raises(ConfigError, match="datasource_azure.imds_deadline_s"):
        ds._settings()


def test_apply_places_our_modules_in_the_config_it_returns(ds):
    from cloudinit_azure.provision import Provisioning

    ds.settings = ds._settings()
    ds._apply(Provisioning(instance_id=UUID, vm_id=UUID, hostname="h", username="u",
                           public_keys=("k",), userdata=b"ud",
                           config={"system_info": {"default_user": {"name": "u"}}},
                           metadata={"instance-id": UUID, "public-keys": ["k"]}))
    modules = ds.get_config_obj()["cloud_init_modules"]
    assert modules == ["seed_random", "azure_kernel", "users-groups", "ssh",
                       "azure_ready", "azure_network", "azure_resource_disk"]
    assert ds.get_public_ssh_keys() == ["k"]
    assert ds.device_name_to_device("ephemeral0") is None
    assert ds.userdata_raw == b"ud"
