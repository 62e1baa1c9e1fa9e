"""The flow's state mapped onto cloud-init: config, network config, identity."""

from __future__ import annotations

from cloudinit_azure import flowstate
from cloudinit_azure.flowstate import FlowState, Link
from cloudinit_azure.provision import Provisioning

UUID = "6bd2a1c7-3f0e-4b8a-9c51-2d7e8f4a1b30"
PLAN = Provisioning(instance_id=UUID, vm_id=UUID, hostname="h", username="u",
                    public_keys=(), config={"system_info": {"default_user": {
                        "name": "u", "sudo": ["ALL=(ALL) ALL"]}}, "ssh_pwauth": True})


def test_after_init_local_made_the_account_cloud_init_keeps_it_as_it_is():
    cfg = flowstate.cloud_config(FlowState(UUID, provisioning=PLAN, host_keys=("k",)),
                                 ["users-groups", "ssh"], insert_modules=True)
    assert cfg["system_info"]["default_user"]["sudo"] is None
    assert cfg["ssh_deletekeys"] is False and cfg["ssh_pwauth"] is True
    assert "azure_ready" in cfg["cloud_init_modules"]
    # cloud-init runs disk_setup (nothing to do) and records it for the instance
    assert cfg["disk_setup"] == {}
    assert PLAN.config["system_info"]["default_user"]["sudo"] == ["ALL=(ALL) ALL"]


def test_on_the_fallback_path_cloud_init_makes_the_account_and_host_keys():
    state = FlowState(UUID, provisioning=PLAN, ready_from=flowstate.READY_FROM_MODULE)
    cfg = flowstate.cloud_config(state, ["ssh"], insert_modules=False)
    assert cfg["system_info"]["default_user"]["sudo"] == ["ALL=(ALL) ALL"]
    assert "ssh_deletekeys" not in cfg and "cloud_init_modules" not in cfg


def test_network_config_off_or_dhcp_on_the_primary_nic_without_imds():
    state = FlowState(UUID, provisioning=PLAN, link=Link("00:0d:3a:00:00:01", "veth"))
    assert flowstate.network_config(state, {"apply_network_config": False}, {}) is None
    cfg = flowstate.network_config(state, {}, {"00:0d:3a:00:00:01": "eth0"})
    [(name, nic)] = cfg["ethernets"].items()
    assert nic["dhcp4"] is True and nic["match"]["macaddress"] == "00:0d:3a:00:00:01"


def test_same_instance_up_to_case_and_gen1_byte_order():
    assert flowstate.same_instance(UUID.upper(), UUID)
    assert flowstate.same_instance("c7a1d26b-0e3f-8a4b-9c51-2d7e8f4a1b30", UUID)
    assert not flowstate.same_instance("00000000-0000-4000-8000-000000000001", UUID)
    assert not flowstate.same_instance(UUID, None)
    assert not flowstate.same_instance("garbage", UUID)


def test_subplatform_names_the_media():
    assert flowstate.subplatform(FlowState(None, media_kind="seed",
                                           media_device="/s")) == "seed-dir (/s)"
    assert flowstate.subplatform(FlowState(None)) == "imds"
