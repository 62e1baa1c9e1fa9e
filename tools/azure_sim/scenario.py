"""Scenario files: what the simulated platform offers one VM.

A scenario is YAML. Unknown keys and wrong types are refused before anything
starts, naming the key. ``load_scenario`` returns a plain dict with every
default filled in; the rest of the simulator reads only that.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Optional

import yaml

DEFAULT_VM_ID = "6bd2a1c7-3f0e-4b8a-9c51-2d7e8f4a1b30"
DEFAULT_MAC = "00:0d:3a:12:34:56"
DEFAULT_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL8T2XkRHWuLWH8ZeEvdQNcpuUOskXzqOUzOPG02ufb0 "
    "azureuser@sim"
)

DEFAULT_SCENARIO_YAML = f"""\
# The default first boot: one user with an SSH key, a host name, customData.
ovf:
  hostname: sim-vm-01
  username: azureuser
  public_keys:
    - "{DEFAULT_KEY}"
  custom_data: |
    #cloud-config
    write_files:
      - path: /var/tmp/custom-data-applied
        content: "customData reached the VM\\n"
media: iso
boots: 1
expect: ready
"""

_STR = {"type": "string"}
# Where a power cut may land (docs/reliability.md): after a stage or after Ready
# was delivered, at the Nth request to an endpoint (it never reaches the
# platform), or in the middle of a step the plug-in runs.
POWER_CUT_STAGES = ("init-local", "os-network", "init", "modules-config", "modules-final")
POWER_CUT_STEPS = ("format", "useradd", "ssh-keygen", "fstab", "grub")
POWER_CUT_PATTERN = (
    "^(after:(" + "|".join(POWER_CUT_STAGES + ("ready",)) + ")"
    "|request:(imds|goalstate|health|certificates|reprovisiondata|versions):[1-9][0-9]*"
    "|during:(" + "|".join(POWER_CUT_STEPS) + "))$")
_BOOL = {"type": "boolean"}
_FAULT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["endpoint", "status"],
    "properties": {
        "endpoint": {"enum": ["imds", "goalstate", "health", "certificates",
                              "reprovisiondata", "versions"]},
        "status": {"oneOf": [{"type": "integer", "minimum": 100, "maximum": 599},
                             {"enum": ["reset", "timeout"]}]},
        "count": {"type": "integer", "minimum": 1, "default": 1},
        "delay_s": {"type": "number", "minimum": 0, "maximum": 60, "default": 0},
        "retry_after": {"type": "integer", "minimum": 0},
    },
}

_OVF = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "hostname": _STR,
        "username": _STR,
        "password": {"type": ["string", "null"]},
        "disable_ssh_password_auth": {"type": ["boolean", "null"]},
        "public_keys": {"type": "array", "items": _STR},
        "key_fingerprints": {"type": "array", "items": _STR},
        "key_pairs": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "required": ["fingerprint", "path"],
            "properties": {"fingerprint": _STR, "path": _STR}}},
        "custom_data": {"type": ["string", "null"]},
        "custom_data_raw": _STR,
        "preprovisioned_vm": _BOOL,
        "preprovisioned_vm_type": _STR,
        "namespace_prefix": _STR,
        "provision_guest_agent": _BOOL,
    },
}

# Preprovisioning: the top-level ovf is the pool's placeholder document, this
# block says what the customer who is assigned the VM asked for.
_PPS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type"],
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "assign_after_s": {"type": "number", "minimum": 0, "maximum": 600},
        "detach_after_s": {"type": "number", "minimum": 0, "maximum": 60},
        "nic_attach_after_s": {"type": "number", "minimum": 0, "maximum": 600},
        "shutdown_after_s": {"type": "number", "minimum": 0, "maximum": 60},
        "reboot_after_s": {"type": "number", "minimum": 0, "maximum": 600},
        "ovf": _OVF,
        "ovf_xml": _STR,
    },
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": _STR,
        "description": _STR,
        "ovf": _OVF,
        "ovf_xml": _STR,
        "media": {"enum": ["iso", "seed", "none"]},
        "mount_shim": _BOOL,
        "imds": {"type": "object"},
        "imds_raw": _STR,
        "faults": {"type": "array", "items": _FAULT},
        "resource_disk": {"oneOf": [
            {"const": False},
            {"type": "object", "additionalProperties": False, "properties": {
                "size_mib": {"type": "integer", "minimum": 16},
                "format": {"enum": ["ntfs", "gpt", "gpt_used_msr", "none", "ext4"]},
                "files": {"type": "array", "items": _STR},
                "redeploy_before_boot": {"type": "integer", "minimum": 2},
                # The user wipes the disk's signatures and writes data to it
                # as a raw block device (wipefs -a; data at 4 MiB).
                "raw_use_before_boot": {"type": "integer", "minimum": 2},
            }},
        ]},
        "dhcp": {"type": "object", "additionalProperties": False, "properties": {
            "option_245": {"type": "boolean"},
            # What option 245 names (default: the wireserver), e.g. "0.0.0.0".
            "option_245_address": {"type": "string",
                                   "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$"},
            "option_121": {"type": "boolean"},
        }},
        "dhcp_client": {"enum": ["dhclient", "dhcpcd", "udhcpc"]},
        "generation": {"enum": [1, 2]},
        "on_azure": {"type": "boolean"},
        "nics": {"type": "integer", "minimum": 1, "maximum": 4},
        "cloud_config": {"type": "object"},
        "image_files": {"type": "object", "additionalProperties": {"oneOf": [
            {"type": "string"},
            {"type": "null"},  # the image does not have this file
            {"type": "object", "additionalProperties": False,
             "required": ["symlink"], "properties": {"symlink": _STR}},
        ]}},
        "boots": {"type": "integer", "minimum": 1, "maximum": 10},
        "power_cut": {"type": "object", "additionalProperties": False,
                      "required": ["at"], "properties": {
                          "boot": {"type": "integer", "minimum": 1, "maximum": 9},
                          "at": {"type": "string", "pattern": POWER_CUT_PATTERN}}},
        "expect": {"enum": ["ready", "failure", "silence"]},
        "timeout_s": {"type": "number", "minimum": 5, "maximum": 3600},
        "pps": _PPS,
        # Debian's waagent package in the VM image, served by the platform (--vm)
        "waagent": _BOOL,
    },
}

DEFAULTS: dict[str, Any] = {
    "name": "default",
    "description": "",
    "media": "iso",
    "mount_shim": False,
    "imds": {},
    "faults": [],
    "resource_disk": {"size_mib": 64, "format": "ntfs",
                      "files": ["dataloss_warning_readme.txt"]},
    "dhcp": {"option_245": True, "option_121": True},
    "dhcp_client": "dhclient",
    "generation": 2,
    "on_azure": True,
    "nics": 1,
    "cloud_config": {},
    "image_files": {},
    "boots": 1,
    "expect": "ready",
    "timeout_s": 240,
    "waagent": False,
}

OVF_DEFAULTS: dict[str, Any] = {
    "hostname": "sim-vm-01",
    "username": "azureuser",
    "public_keys": [],
    "key_fingerprints": [],
    "key_pairs": [],
    "preprovisioned_vm": False,
    "namespace_prefix": "ns1",
}


PLACEHOLDER_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAmMvpcIu58EoFCe89JC8g47phBueGulgBm0PaxO71MY "
    "placeholder@pps-pool"
)
# The pool VM's own identity: nothing of it may survive the assignment.
PLACEHOLDER_OVF: dict[str, Any] = {
    "hostname": "pps-pool-vm",
    "username": "ppsplaceholder",
    "public_keys": [PLACEHOLDER_KEY],
    "custom_data": ("#cloud-config\nwrite_files:\n"
                    "  - path: /var/tmp/placeholder-custom-data-applied\n"
                    "    content: \"the placeholder's customData ran\\n\"\n"),
    "preprovisioned_vm": True,
}
# Scenario type -> PreprovisionedVMType; any other string is sent verbatim
# (an unknown type, which the platform plays like Running).
PPS_OVF_TYPES = {"running": "Running", "savable": "Savable",
                 "os_disk": "PreprovisionedOSDisk"}
PPS_DEFAULTS: dict[str, Any] = {
    "assign_after_s": 2.0,
    "detach_after_s": 0.2,
    "nic_attach_after_s": 0.0,
    "shutdown_after_s": 0.2,
    "reboot_after_s": None,
}


class ScenarioError(ValueError):
    """The scenario file is not valid; the message names the key."""


def deep_merge(base: Any, over: Any) -> Any:
    """Merge ``over`` into a copy of ``base``; dicts merge, anything else replaces."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in over.items():
            out[key] = deep_merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def validate(data: Any) -> None:
    """Raise ScenarioError naming the first offending key."""
    import jsonschema

    if not isinstance(data, Mapping):
        raise ScenarioError("scenario: the top level must be a mapping")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        if "ovf" in data and "ovf_xml" in data:
            raise ScenarioError("scenario: give either 'ovf' or 'ovf_xml', not both")
        if "pps" in data:
            _validate_pps(data)
        return
    err = errors[0]
    if err.validator in ("oneOf", "anyOf") and err.context:
        # Name the key inside the alternative that was meant (a mapping).
        err = next((c for c in err.context if c.validator == "additionalProperties"),
                   next((c for c in err.context if c.validator != "const"), err))
    path = ".".join(str(p) for p in err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        where = f"{path}." if err.absolute_path else ""
        raise ScenarioError(f"scenario: unknown key '{where}{extra[0]}'")
    raise ScenarioError(f"scenario: bad value for '{path}': {err.message}")


def _validate_pps(data: Mapping[str, Any]) -> None:
    """What the pool flows cannot combine with (a pool VM has one NIC and a DVD)."""
    pps = {**PPS_DEFAULTS, **data["pps"]}
    if "ovf" in pps and "ovf_xml" in pps:
        raise ScenarioError("scenario: give either 'pps.ovf' or 'pps.ovf_xml', not both")
    if data.get("nics", 1) != 1:
        raise ScenarioError("scenario: bad value for 'nics': a pool VM has one NIC")
    if data.get("media", "iso") != "iso":
        raise ScenarioError("scenario: bad value for 'media': a pool VM boots with a DVD (iso)")
    if data.get("boots", 1) != 1:
        raise ScenarioError("scenario: bad value for 'boots': the pool flow plays its own "
                            "power cycles (pps.reboot_after_s)")
    if pps["reboot_after_s"] is not None and pps["reboot_after_s"] >= pps["assign_after_s"]:
        raise ScenarioError("scenario: bad value for 'pps.reboot_after_s': must be before "
                            "pps.assign_after_s")
    if pps["type"] == "os_disk" and pps["shutdown_after_s"] >= pps["assign_after_s"]:
        raise ScenarioError("scenario: bad value for 'pps.shutdown_after_s': must be before "
                            "pps.assign_after_s")


def _complete_pps(raw: Mapping[str, Any], base_ovf: Mapping[str, Any],
                  out: dict[str, Any]) -> None:
    """The customer's document from ``pps.ovf``; the top-level one becomes the pool's."""
    pps = deep_merge(PPS_DEFAULTS, raw["pps"])
    pps["ovf_type"] = PPS_OVF_TYPES.get(pps["type"], pps["type"])
    pps["kind"] = pps["type"] if pps["type"] in PPS_OVF_TYPES else "unknown"
    # With ``pps.ovf_xml`` (a literal customer document) the default customer
    # still names the IMDS identity and what the report expects.
    pps["ovf"] = deep_merge(OVF_DEFAULTS, deep_merge(base_ovf, pps.get("ovf", {})))
    if "ovf_xml" not in raw:
        placeholder = dict(PLACEHOLDER_OVF, preprovisioned_vm_type=pps["ovf_type"])
        out["ovf"] = deep_merge(OVF_DEFAULTS, deep_merge(placeholder, raw.get("ovf", {})))
    out["pps"] = pps


def load_scenario(text: Optional[str] = None) -> dict[str, Any]:
    """Parse, validate and complete a scenario.

    A scenario file says only what differs from the embedded default scenario
    (its user, key, host name and customData); ``ovf_xml`` replaces the
    default's ``ovf`` entirely.
    """
    base = yaml.safe_load(DEFAULT_SCENARIO_YAML)
    raw = base if text is None else yaml.safe_load(text)
    if raw is None:
        raw = {}
    validate(raw)
    if "ovf_xml" in raw:
        base.pop("ovf")
    out = deep_merge(DEFAULTS, deep_merge(base, raw))
    if "ovf_xml" not in raw:
        out["ovf"] = deep_merge(OVF_DEFAULTS, out.get("ovf", {}))
    if "pps" in raw:
        _complete_pps(raw, yaml.safe_load(DEFAULT_SCENARIO_YAML)["ovf"], out)
    if out["waagent"] and "ovf_xml" not in raw:  # Azure's OVF when the VM has the agent
        out["ovf"].setdefault("provision_guest_agent", True)
    if raw.get("resource_disk") is not None and raw["resource_disk"] is not False:
        out["resource_disk"] = deep_merge(DEFAULTS["resource_disk"], raw["resource_disk"])
    for fault in out["faults"]:
        fault.setdefault("count", 1)
        fault.setdefault("delay_s", 0)
    if "power_cut" in out:
        # The cut boot is followed by (at least) the recovery boot.
        out["power_cut"].setdefault("boot", 1)
        out["boots"] = max(out["boots"], out["power_cut"]["boot"] + 1)
    return out
