"""What the simulated platform serves: ovf-env.xml, the IMDS document, goal state.

Pure functions of the scenario; the platform process and the media builder
call them. Rendering is our own so the simulator never depends on the
plug-in's parser to produce what that parser reads.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any, Mapping
from xml.sax.saxutils import escape

from azure_sim.scenario import DEFAULT_MAC, DEFAULT_VM_ID, deep_merge

WA_NS = "http://schemas.microsoft.com/windowsazure"
OVF_NS = "http://schemas.dmtf.org/ovf/environment/1"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

CONTAINER_ID = "c6d5e2a1-0f3b-4e27-9d6e-8a1b2c3d4e5f"
INCARNATION = "1"


def _mac_plain(mac: str) -> str:
    return mac.replace(":", "").upper()


def nic_mac(index: int) -> str:
    """MAC of NIC ``index`` (0-based): the default MAC with the last byte bumped."""
    parts = DEFAULT_MAC.split(":")
    parts[-1] = f"{int(parts[-1], 16) + index:02x}"
    return ":".join(parts)


def nic_ip(index: int) -> str:
    return f"10.0.{index}.4"


def customer_nic_mac() -> str:
    """MAC of the NIC a Savable pool VM gets on assignment (a new NIC, a new MAC)."""
    return "00:0d:3a:5a:0b:01"


def role_instance_id(vm_id: str = DEFAULT_VM_ID) -> str:
    return f"{vm_id}.sim-vm-01"


def render_ovf(ovf: Mapping[str, Any]) -> bytes:
    """ovf-env.xml as the platform writes it (windowsazure elements under a prefix)."""
    p = ovf.get("namespace_prefix") or ""
    tag = (lambda name: f"{p}:{name}") if p else (lambda name: name)
    # With no prefix, the windowsazure namespace is the default namespace of
    # each section (the root keeps the OVF one).
    decl = f'xmlns:{p}="{WA_NS}"' if p else ""
    section_ns = "" if p else f' xmlns="{WA_NS}"'

    def el(name: str, value: Any) -> str:
        return f"<{tag(name)}>{escape(str(value))}</{tag(name)}>"

    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<Environment xmlns="{OVF_NS}" xmlns:oe="{OVF_NS}" {decl} '
        f'xmlns:i="{XSI_NS}" oe:id="">',
        f'<{tag("ProvisioningSection")}{section_ns}>',
        el("Version", "1.0"),
        f"<{tag('LinuxProvisioningConfigurationSet')}>",
        el("ConfigurationSetType", "LinuxProvisioningConfiguration"),
    ]
    if ovf.get("hostname") is not None:
        lines.append(el("HostName", ovf["hostname"]))
    if ovf.get("username") is not None:
        lines.append(el("UserName", ovf["username"]))
    if ovf.get("password") is not None:
        lines.append(el("UserPassword", ovf["password"]))
    if ovf.get("disable_ssh_password_auth") is not None:
        lines.append(el("DisableSshPasswordAuthentication",
                        str(ovf["disable_ssh_password_auth"]).lower()))
    keys = list(ovf.get("public_keys") or [])
    fps = list(ovf.get("key_fingerprints") or [])
    pairs = list(ovf.get("key_pairs") or [])
    key_path = f"/home/{ovf.get('username')}/.ssh/authorized_keys"
    if keys or fps or pairs:
        lines.append(f"<{tag('SSH')}><{tag('PublicKeys')}>")
        for fp, value in [("", k) for k in keys] + [(f, None) for f in fps]:
            body = el("Fingerprint", fp) + el("Path", key_path)
            if value is not None:
                body += el("Value", value)
            lines.append(f"<{tag('PublicKey')}>{body}</{tag('PublicKey')}>")
        lines.append(f"</{tag('PublicKeys')}><{tag('KeyPairs')}>")
        for pair in pairs:
            body = el("Fingerprint", pair["fingerprint"]) + el("Path", pair["path"])
            lines.append(f"<{tag('KeyPair')}>{body}</{tag('KeyPair')}>")
        lines.append(f"</{tag('KeyPairs')}></{tag('SSH')}>")
    if ovf.get("custom_data_raw") is not None:
        lines.append(el("CustomData", ovf["custom_data_raw"]))
    elif ovf.get("custom_data") is not None:
        encoded = base64.b64encode(ovf["custom_data"].encode()).decode()
        lines.append(el("CustomData", encoded))
    lines += [
        f"</{tag('LinuxProvisioningConfigurationSet')}>",
        f"</{tag('ProvisioningSection')}>",
        f"<{tag('PlatformSettingsSection')}{section_ns}>",
        el("Version", "1.0"),
        f"<{tag('PlatformSettings')}>",
        el("KmsServerHostname", "kms.core.windows.net"),
        el("ProvisionGuestAgent", str(bool(ovf.get("provision_guest_agent"))).lower()),
        f"<{tag('GuestAgentPackageName')} i:nil=\"true\"/>",
        el("PreprovisionedVm", str(bool(ovf.get("preprovisioned_vm"))).lower()),
    ]
    if ovf.get("preprovisioned_vm_type"):
        lines.append(el("PreprovisionedVMType", ovf["preprovisioned_vm_type"]))
    else:
        lines.append(f"<{tag('PreprovisionedVMType')} i:nil=\"true\"/>")
    lines += [
        f"</{tag('PlatformSettings')}>",
        f"</{tag('PlatformSettingsSection')}>",
        "</Environment>",
    ]
    return ("\n".join(lines) + "\n").encode()


def default_imds(scenario: Mapping[str, Any]) -> dict[str, Any]:
    """The IMDS instance document for the scenario (before its ``imds`` overlay)."""
    ovf = scenario.get("ovf") or {}
    username = ovf.get("username") or "azureuser"
    keys = [
        {"keyData": k, "path": f"/home/{username}/.ssh/authorized_keys"}
        for k in ovf.get("public_keys") or []
    ]
    interfaces = []
    for i in range(scenario.get("nics", 1)):
        interfaces.append({
            "macAddress": _mac_plain(nic_mac(i)),
            "ipv4": {
                "ipAddress": [{"privateIpAddress": nic_ip(i), "publicIpAddress": ""}],
                "subnet": [{"address": f"10.0.{i}.0", "prefix": "24"}],
            },
            "ipv6": {"ipAddress": []},
        })
    disable = ovf.get("disable_ssh_password_auth")
    if disable is None:
        disable = not bool(ovf.get("password"))
    doc = {
        "compute": {
            "azEnvironment": "AzurePublicCloud",
            "location": "westeurope",
            "name": ovf.get("hostname") or "sim-vm-01",
            "offer": "", "osType": "Linux",
            "osProfile": {
                "adminUsername": username,
                "computerName": ovf.get("hostname") or "sim-vm-01",
                "disablePasswordAuthentication": str(bool(disable)).lower(),
            },
            "platformFaultDomain": "0",
            "platformUpdateDomain": "0",
            "provider": "Microsoft.Compute",
            "publicKeys": keys,
            "resourceGroupName": "sim-rg",
            "subscriptionId": "00000000-0000-0000-0000-000000000000",
            "tags": "",
            "userData": "",
            "vmId": DEFAULT_VM_ID,
            "vmSize": "Standard_D2s_v5",
            "zone": "1",
        },
        "network": {"interface": interfaces},
        "extended": {"compute": {"ppsType": "None",
                                 "hasCustomData": bool(ovf.get("custom_data"))}},
    }
    return doc


def imds_document(scenario: Mapping[str, Any]) -> dict[str, Any]:
    return deep_merge(default_imds(scenario), scenario.get("imds") or {})


def pps_documents(scenario: Mapping[str, Any]) -> dict[str, Any]:
    """What the platform serves a pool VM before and after its assignment.

    Before: the placeholder's IMDS document with ``ppsType`` set and a 404
    from reprovisiondata. After: the customer's ovf-env.xml (reprovisiondata,
    and the DVD of an OS-disk pool VM's next boot) and IMDS document, whose
    ``ppsType`` is "None" again; a Savable VM's new NIC has a new MAC.
    """
    pps = scenario["pps"]
    pool = imds_document(scenario)
    pool["extended"]["compute"]["ppsType"] = pps["ovf_type"]
    customer_ovf = (pps["ovf_xml"].encode() if "ovf_xml" in pps
                    else render_ovf(pps["ovf"]))
    customer = imds_document({**scenario, "ovf": pps["ovf"]})
    customer["extended"]["compute"]["ppsType"] = "None"
    mac = nic_mac(0)
    if pps["kind"] == "savable":
        mac = customer_nic_mac()
        customer["network"]["interface"][0]["macAddress"] = _mac_plain(mac)
    return {"pool_imds": pool, "customer_imds": customer, "customer_ovf": customer_ovf,
            "customer_mac": mac}


def imds_body(doc: Mapping[str, Any], api_version: str) -> bytes:
    """The JSON IMDS returns; the 2019-06-01 API has no ``extended`` section."""
    out = copy.deepcopy(dict(doc))
    if api_version < "2021":
        out.pop("extended", None)
    return json.dumps(out).encode()


def goal_state(incarnation: str, container_id: str, instance_id: str,
               certificates_url: str | None, extensions_url: str | None = None) -> bytes:
    certs = (f"<Certificates>{escape(certificates_url)}</Certificates>"
             if certificates_url else "")
    if extensions_url:  # the Azure Linux Agent's (azure_sim.waagent)
        certs += f"<ExtensionsConfig>{escape(extensions_url)}</ExtensionsConfig>"
    return f"""<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" \
xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2012-11-30</Version>
  <Incarnation>{escape(incarnation)}</Incarnation>
  <Machine>
    <ExpectedState>Started</ExpectedState>
    <StopRolesDeadlineHint>300000</StopRolesDeadlineHint>
    <LBProbePorts><Port>16001</Port></LBProbePorts>
    <ExpectHealthReport>TRUE</ExpectHealthReport>
  </Machine>
  <Container>
    <ContainerId>{escape(container_id)}</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>{escape(instance_id)}</InstanceId>
        <State>Started</State>
        <Configuration>
          <HostingEnvironmentConfig>http://168.63.129.16:80/machine/{container_id}/hec</HostingEnvironmentConfig>
          <SharedConfig>http://168.63.129.16:80/machine/{container_id}/sc</SharedConfig>
          {certs}
          <ConfigName>{escape(instance_id)}.1.xml</ConfigName>
        </Configuration>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>
""".encode()


VERSIONS_XML = b"""<?xml version="1.0" encoding="utf-8"?>
<Versions>
  <Preferred><Version>2015-04-05</Version></Preferred>
  <Supported><Version>2015-04-05</Version><Version>2012-11-30</Version>
  <Version>2012-09-15</Version><Version>2012-05-15</Version><Version>2011-12-31</Version>
  <Version>2011-10-15</Version><Version>2011-08-31</Version><Version>2011-04-07</Version>
  <Version>2010-12-15</Version><Version>2010-28-10</Version></Supported>
</Versions>
"""
