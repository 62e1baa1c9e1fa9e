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
    from cloudinit_azure import flow

    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: None)
    monkeypatch.setattr(flow, "run", lambda *a, **k: pytest.fail("no flow off Azure"))
    assert ds._get_data() is False
    assert ds.state is None


@pytest.mark.parametrize("current, same", [
    (UUID, True), (UUID.upper(), True),
    ("c7a1d26b-0e3f-8a4b-9c51-2d7e8f4a1b30", True),  # Gen1 byte order
    ("00000000-0000-4000-8000-000000000001", False),
])
def test_check_instance_id_keeps_the_same_vm(ds, monkeypatch, current, same):
    ds.metadata = {"instance-id": UUID}
    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: current)
    assert ds.check_instance_id({}) is same


def test_a_reboot_on_the_cached_datasource_drops_a_torn_set_hostname(ds, monkeypatch,
                                                                     tmp_path):
    """Power cut (VM tier, Debian 12, during:grub): 22.4 wrote set-hostname without
    fsync, the file came back empty, and cc_set_hostname failed the recovery boot,
    which restores this object from obj.pkl and so never runs _get_data."""
    data = tmp_path / "cloud" / "data"
    data.mkdir(parents=True)
    (data / "set-hostname").write_text("")
    (data / "instance-id").write_text("")  # not ours to judge: left alone
    ds.metadata = {"instance-id": UUID}
    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: UUID)
    assert ds.check_instance_id({}) is True
    assert not (data / "set-hostname").exists()
    assert (data / "instance-id").exists()
    (data / "set-hostname").write_text('{"fqdn": "vm1"}')
    assert ds.check_instance_id({}) is True
    assert (data / "set-hostname").read_text() == '{"fqdn": "vm1"}'


def test_unpickling_an_object_of_the_plug_in_before_the_flow(ds):
    """Loose attributes of the old adapter become one FlowState (azure_ready's path)."""
    del ds.state
    ds.metadata = {"instance-id": UUID, "local-hostname": "h", "public-keys": ["k"]}
    ds.__dict__.update(provisioned=True, wireserver_address="10.0.0.9", vm_id=UUID,
                       primary_mac="00:0d:3a:00:00:01", _nic_driver="hv_netvsc",
                       _imds_network=None, media_kind="device", media_device="/dev/sr0",
                       key_pairs=[["AB", "/home/u/.ssh/id_rsa"]],
                       _config={"system_info": {"default_user": {"name": "u"}},
                                "cloud_init_modules": ["ssh"]})
    restored = pickle.loads(pickle.dumps(ds))
    restored._unpickle(1)
    state = restored.state
    assert state.provisioned and state.instance_id == UUID
    assert state.wireserver == "10.0.0.9" and state.link.mac == "00:0d:3a:00:00:01"
    assert state.ready_from == "azure_ready"  # old instances: Ready was azure_ready's
    assert state.provisioning.username == "u" and state.key_pairs == (
        ("AB", "/home/u/.ssh/id_rsa"),)
    assert "cloud_init_modules" not in state.provisioning.config
    assert restored.metadata["instance-id"] == UUID
    assert restored._network_cfg is None and restored.settings_error is None


def test_unpickling_a_current_object_keeps_its_state(ds):
    from cloudinit_azure.flowstate import FlowState

    ds.state = FlowState(UUID)
    restored = pickle.loads(pickle.dumps(ds))
    restored._unpickle(1)
    assert restored.state == FlowState(UUID)


def test_bad_datasource_config_is_kept_for_the_failure_report(tmp_path, monkeypatch):
    """Never silence: the flow runs with the defaults and reports the ConfigError."""
    from cloudinit_azure import flow
    from cloudinit_azure.flowstate import FlowState

    paths = helpers.Paths({"cloud_dir": str(tmp_path)})
    ds = dsmod.DataSourceAzure({"datasource": {"Azure": {"imds_deadline_s": "soon"}}},
                               None, paths)
    seen = {}
    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: dsmod.AZURE_CHASSIS_ASSET_TAG)
    monkeypatch.setattr(flow, "run",
                        lambda *a, **k: seen.update(k) or FlowState(None, failure="x"))
    assert ds._get_data() is False
    assert "datasource.Azure.imds_deadline_s" in str(seen["settings_error"])
    assert ds.settings["imds_deadline_s"] == 300  # the schema's default


def test_get_data_maps_the_flow_state_onto_cloud_init(ds, monkeypatch):
    from cloudinit_azure import flow
    from cloudinit_azure.flowstate import FlowState
    from cloudinit_azure.provision import Provisioning

    plan = Provisioning(instance_id=UUID, vm_id=UUID, hostname="h", username="u",
                        public_keys=("k",), userdata=b"ud",
                        config={"system_info": {"default_user": {"name": "u",
                                                                 "sudo": ["ALL=(ALL) ALL"]}}},
                        metadata={"instance-id": UUID, "public-keys": ["k"]})
    monkeypatch.setattr(dsmod, "_read_dmi", lambda key: dsmod.AZURE_CHASSIS_ASSET_TAG)
    monkeypatch.setattr(flow, "run", lambda *a, **k: FlowState(
        UUID, provisioning=plan, host_keys=("/etc/ssh/ssh_host_ed25519_key",),
        media_kind="device", media_device="/dev/sr0"))
    assert ds._get_data() is True
    cfg = ds.get_config_obj()
    assert cfg["cloud_init_modules"] == ["seed_random", "azure_kernel", "users-groups", "ssh",
                                         "azure_ready", "azure_network",
                                         "azure_resource_disk"]
    assert cfg["ssh_deletekeys"] is False  # host keys made before Ready stay
    assert cfg["system_info"]["default_user"]["sudo"] is None  # already written
    assert ds.get_public_ssh_keys() == ["k"]
    assert ds.device_name_to_device("ephemeral0") is None
    assert ds.userdata_raw == b"ud" and ds.metadata["instance-id"] == UUID
    assert ds._get_subplatform() == "config-disk (/dev/sr0)"


def test_a_host_key_left_empty_by_a_power_cut_is_not_whole(tmp_path):
    from cloudinit_azure.sources.machine import host_key_whole

    key = tmp_path / "ssh_host_ed25519_key"
    key.write_text("")
    (tmp_path / "ssh_host_ed25519_key.pub").write_text("ssh-ed25519 AAAA\n")
    assert not host_key_whole(str(key))
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    assert host_key_whole(str(key))
    (tmp_path / "ssh_host_ed25519_key.pub").unlink()
    assert not host_key_whole(str(key))
