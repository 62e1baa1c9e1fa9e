"""azure-sim diff over the example scenarios: an undocumented difference fails.

Each case boots a scenario twice (built-in datasource, then ours) on one
cloud-init version and compares the systems against docs/differences.md.
``make test`` runs a representative subset on both versions (accounts,
password and sshd; instance data and jinja customData; two NICs; a failure:
17 boots, about a minute on an idle machine); ``make test-parity``
(``AZURE_SIM_DIFF=all``, run by CI after ``make test``) runs every scenario of
scenarios/ on both versions (41 boots).
"""

from __future__ import annotations

import os

import pytest

from azure_sim import diff
from azure_sim.boot import SimError, boot
from azure_sim.scenario import DEFAULT_VM_ID, load_scenario
from tests.integration.conftest import CLOUD_INIT_VERSIONS, REPO

pytestmark = pytest.mark.integration

SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
SUBSET = {"jinja-custom-data", "password-login", "broken-ovf", "network-two-nics"}
FULL = os.environ.get("AZURE_SIM_DIFF") == "all"
CASES = [(path, version) for path in SCENARIOS for version in CLOUD_INIT_VERSIONS
         if FULL or path.stem in SUBSET]
FACTS = ["vm_size=Standard_D2s_v5", "region=westeurope", "cloud=azure", "platform=azure",
         "zone=0", "host=sim-vm-01", f"instance={DEFAULT_VM_ID}"]


def _diff(path, version):
    reports = {}

    def booting(scenario, **kwargs):
        reports[kwargs["datasource"]] = boot(scenario, **kwargs)
        return reports[kwargs["datasource"]]

    res = diff.run(load_scenario(path.read_text()), cloud_init=version, boot=booting,
                   allowlist=diff.parse_allowlist(diff.ALLOWLIST.read_text()),
                   on_error=SimError)
    print(diff.render(res))
    return res, reports


@pytest.mark.parametrize("path, version", CASES,
                         ids=[f"{p.stem}-{v}" for p, v in CASES])
def test_no_undocumented_difference(path, version):
    res, reports = _diff(path, version)
    assert res["builtin_unsupported"] is None, res["builtin_unsupported"]
    assert res["ok"], diff.render(res)
    if res["expect"] != "failure":
        assert res["compared"] > 100  # the whole system was collected on both sides
    if path.stem == "jinja-custom-data":
        # Not only the same: rendered, from the IMDS document and v1, with both.
        for datasource, report in reports.items():
            facts = report["system"]["files"].get("/var/tmp/instance-facts")
            assert facts == FACTS, (datasource, facts)
            assert report["cloud_init_status"] == "done", datasource
        imds = reports["plugin"]["system"]["instance_data"]["ds"]["meta_data"]["imds"]
        assert imds["compute"]["userData"] == "redacted for non-root user"


def test_a_scenario_the_builtin_cannot_boot_is_reported_as_such():
    scenario = load_scenario("name: udhcpc-only\ndhcp_client: udhcpc\n")
    res = diff.run(scenario, cloud_init="22.4.2", boot=boot, allowlist=[],
                   on_error=SimError)
    assert "only dhclient" in res["builtin_unsupported"]
    assert res["plugin_verdict"]["ok"] and res["ok"], diff.render(res)
    assert "not compared" in diff.render(res)
