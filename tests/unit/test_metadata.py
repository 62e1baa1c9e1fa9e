"""Instance metadata shaped as cloud-init's built-in Azure datasource shapes it.

The pure part (cloudinit_azure.metadata) and, against the cloud-init in the
venv (22.4.2, and 25.1.4 in make test's second run), the ``v1`` values both
datasources give cloud-init for the same metadata.
"""

from __future__ import annotations

import copy
import json

import pytest

from cloudinit_azure import metadata, provision
from cloudinit_azure.imds import parse_instance_metadata
from tests.fakes import openssl_runner

UUID = "6bd2a1c7-3f0e-4b8a-9c51-2d7e8f4a1b30"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq1ibK0Wsl8GWbHLd6M7BlSBIXnZIzGfSFeIO4vxVvL u@h"
IMDS = {
    "compute": {"vmId": UUID, "location": "westeurope", "zone": "2",
                "platformFaultDomain": "1", "vmSize": "Standard_D2s_v5",
                "name": "vm-1",
                "osProfile": {"computerName": "vm-1", "adminUsername": "azureuser",
                              "disablePasswordAuthentication": "true"},
                "publicKeys": [{"keyData": KEY, "path": "/home/azureuser/.ssh/x"}],
                "tagsList": [{"name": "env", "value": "test"}]},
    "network": {"interface": []},
    "extended": {"compute": {"hasCustomData": False, "ppsType": "None"}},
}


def plan(*args, **kwargs):
    """:func:`provision.plan` with the shared fake runner (openssl played in Python)."""
    return provision.plan(*args, runner=openssl_runner(), **kwargs)


def test_meta_data_carries_the_whole_imds_document_as_imds():
    md = metadata.instance_metadata(instance_id=UUID, local_hostname="vm-1",
                                    imds_document=IMDS, public_keys=[KEY])
    assert md == {"instance-id": UUID, "local-hostname": "vm-1", "imds": IMDS,
                  "public-keys": [KEY]}
    md["imds"]["compute"]["location"] = "changed"
    assert IMDS["compute"]["location"] == "westeurope"  # a copy, not shared
    json.dumps(md)  # cloud-init writes it to instance-data.json


def test_no_imds_is_an_empty_document_and_no_host_name_an_empty_string():
    md = metadata.instance_metadata(instance_id=UUID, local_hostname=None,
                                    imds_document=None, public_keys=())
    assert md["imds"] == {} and md["local-hostname"] == ""
    assert metadata.region(md) is None
    assert metadata.availability_zone(md) is None


def test_v1_values_are_read_from_the_document_as_the_builtin_reads_them():
    md = metadata.instance_metadata(instance_id=UUID, local_hostname="vm-1",
                                    imds_document=IMDS, public_keys=[])
    assert metadata.region(md) == "westeurope"
    assert metadata.availability_zone(md) == "1"  # the fault domain, not compute.zone
    assert md["imds"]["compute"]["vmSize"] == "Standard_D2s_v5"  # no v1 key for it


def test_metadata_pickled_by_an_older_plugin_still_answers():
    old = {"instance-id": UUID, "region": "westeurope", "availability-zone": "2"}
    assert metadata.region(old) == "westeurope"
    assert metadata.availability_zone(old) == "2"


def test_provision_plan_builds_it_from_the_parsed_imds_document():
    imds = parse_instance_metadata(json.dumps(IMDS).encode())
    p = plan(None, imds, system_uuid=UUID, existing_users={})
    assert p.metadata["imds"] == IMDS
    assert p.metadata["local-hostname"] == "vm-1"
    assert p.metadata["public-keys"] == [KEY]
    assert set(p.metadata) == {"instance-id", "local-hostname", "imds", "public-keys"}


# --- against cloud-init: the same v1 values as the built-in datasource --------------

V1_KEYS = ("cloud_name", "cloud-name", "platform", "region", "availability_zone",
           "availability-zone", "instance_id", "instance-id", "local_hostname",
           "local-hostname", "public_ssh_keys", "cloud_id")


def _v1(ds) -> dict:
    sys_info = {"dist": ["debian", "12", "bookworm"], "python": "3.11",
                "uname": ["Linux", "h", "6.1", "#1", "x86_64"], "platform": "x",
                "variant": "debian"}
    return ds._get_standardized_metadata({"sys_info": sys_info})["v1"]


def test_v1_matches_the_builtin_datasource(tmp_path):
    helpers = pytest.importorskip("cloudinit.helpers")
    builtin = pytest.importorskip("cloudinit.sources.DataSourceAzure")
    from cloudinit_azure.sources import DataSourceAzure as ours

    paths = helpers.Paths({"cloud_dir": str(tmp_path / "cloud"),
                           "run_dir": str(tmp_path / "run")})
    imds = parse_instance_metadata(json.dumps(IMDS).encode())
    plugin = ours.DataSourceAzure({}, None, paths)
    plugin.metadata = dict(plan(None, imds, system_uuid=UUID,
                                          existing_users={}).metadata)
    reference = builtin.DataSourceAzure({}, None, paths)
    # What the built-in's crawl_metadata + _get_data leave in .metadata.
    reference.metadata = {"local-hostname": "vm-1", "imds": IMDS, "instance-id": UUID}
    mine, theirs = _v1(plugin), _v1(reference)
    assert {k: mine[k] for k in V1_KEYS} == {k: theirs[k] for k in V1_KEYS}
    assert theirs["region"] == "westeurope" and theirs["cloud_name"] == "azure"


def test_imds_user_data_is_not_in_the_world_readable_instance_data():
    sources = pytest.importorskip("cloudinit.sources")
    from cloudinit_azure.sources import DataSourceAzure as ours

    doc = copy.deepcopy(IMDS)
    doc["compute"]["userData"] = "IyEvYmluL3NoCmVjaG8gc2VjcmV0Cg=="
    md = metadata.instance_metadata(instance_id=UUID, local_hostname="vm-1",
                                    imds_document=doc, public_keys=[])
    data = sources.process_instance_metadata(
        {"ds": {"meta_data": md}}, sensitive_keys=ours.DataSourceAzure.sensitive_metadata_keys)
    public = sources.redact_sensitive_keys(data)
    assert public["ds"]["meta_data"]["imds"]["compute"]["userData"] != doc["compute"]["userData"]
    assert public["ds"]["meta_data"]["imds"]["compute"]["vmSize"] == "Standard_D2s_v5"
