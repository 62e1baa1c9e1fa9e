"""ovf-env.xml (the provisioning media's payload) -> :class:`OvfEnvironment`.

Pure: bytes in, frozen dataclasses out, no I/O. The document comes from the
platform but is read as root before anything else runs, so it is parsed with
defusedxml (no DTD, no entities) and every structural problem is an
:class:`~cloudinit_azure.report.OvfError` with a reason the platform can show,
never a traceback. Elements are matched by namespace URI and local name,
because the prefix (``wa:``, ``ns1:``, default namespace) varies.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
import xml.etree.ElementTree as ET  # noqa: S405 - types and serialisation only
from dataclasses import dataclass, field
from typing import Optional

from cloudinit_azure import xmldoc
from cloudinit_azure.report import (
    CustomDataBase64Error,
    OvfBooleanError,
    OvfDuplicateElementError,
    OvfEmptyElementError,
    OvfEncodingError,
    OvfError,
    OvfForbiddenXmlError,
    OvfKeyPairFingerprintError,
    OvfMissingElementError,
    OvfNotWellFormedError,
    OvfPublicKeyError,
    OvfRootError,
)

WA_NS = "http://schemas.microsoft.com/windowsazure"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
# Text that stands in for the password in the cached copy of the document.
REDACTED = "REDACTED"

_SHA1_HEX = re.compile(r"[0-9A-Fa-f]{40}")
_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})
# xmldoc's three problems, each its own failure.
_XML_ERRORS = {xmldoc.NOT_WELL_FORMED: OvfNotWellFormedError,
               xmldoc.FORBIDDEN: OvfForbiddenXmlError, xmldoc.BAD_ENCODING: OvfEncodingError}


@dataclass(frozen=True)
class PublicKey:
    """An SSH public key: inline ``value`` and/or a certificate ``fingerprint``."""

    fingerprint: Optional[str]
    path: Optional[str]
    value: Optional[str] = None


@dataclass(frozen=True)
class KeyPair:
    """An SSH key pair delivered as a goal-state certificate, written to ``path``."""

    fingerprint: str
    path: str


@dataclass(frozen=True)
class OvfEnvironment:
    """What the platform asked for in ovf-env.xml."""

    hostname: str
    username: str
    password: Optional[str] = field(default=None, repr=False)
    disable_ssh_password_auth: Optional[bool] = None
    # User data may hold secrets too, and can be large: keep it out of logs.
    custom_data: Optional[bytes] = field(default=None, repr=False)
    public_keys: tuple[PublicKey, ...] = ()
    key_pairs: tuple[KeyPair, ...] = ()
    preprovisioned_vm: bool = False
    preprovisioned_vm_type: Optional[str] = None
    provision_guest_agent: Optional[bool] = None
    provision_guest_proxy_agent: Optional[bool] = None
    kms_server_hostname: Optional[str] = None


def _wa(name: str) -> str:
    return f"{{{WA_NS}}}{name}"


def _local(tag: object) -> str:
    if not isinstance(tag, str):  # comments / processing instructions
        return ""
    return tag.rsplit("}", 1)[-1]


def _path_of(parent_path: str, name: str) -> str:
    return f"{parent_path}/{name}" if parent_path else name


def _one(parent: ET.Element, name: str, parent_path: str,
         required: bool = False) -> Optional[ET.Element]:
    """The single ``wa:name`` child of ``parent``; a duplicate is an error."""
    found = parent.findall(_wa(name))
    where = _path_of(parent_path, name)
    if len(found) > 1:
        raise OvfDuplicateElementError(element=where, count=len(found))
    if not found:
        if required:
            raise OvfMissingElementError(element=where)
        return None
    return found[0]


def _is_nil(elem: ET.Element) -> bool:
    return (elem.get(f"{{{XSI_NS}}}nil") or "").strip().lower() in ("true", "1")


def _text(parent: ET.Element, name: str, parent_path: str, *,
          required: bool = False, strip: bool = True) -> Optional[str]:
    """Text of the unique child ``name``; absent, nil or empty -> None."""
    elem = _one(parent, name, parent_path, required=required)
    where = _path_of(parent_path, name)
    if elem is None or _is_nil(elem):
        if required:
            raise OvfMissingElementError(element=where)
        return None
    text = "".join(elem.itertext())
    if strip:
        text = text.strip()
    if text == "":
        if required:
            raise OvfEmptyElementError(element=where)
        return None
    return text


def _bool(parent: ET.Element, name: str, parent_path: str) -> Optional[bool]:
    text = _text(parent, name, parent_path)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise OvfBooleanError(element=_path_of(parent_path, name), value=text[:32])


def _flag(parent: ET.Element, name: str, parent_path: str) -> Optional[bool]:
    """A platform flag the plug-in never acts on: garbage reads as "not said".

    cloud-init and the Azure Linux Agent accept any text in these; failing a
    VM over a flag nobody reads would be worse than ignoring it.
    """
    try:
        return _bool(parent, name, parent_path)
    except OvfDuplicateElementError:
        raise
    except OvfError:
        return None


def _custom_data(parent: ET.Element, parent_path: str) -> Optional[bytes]:
    text = _text(parent, "CustomData", parent_path)
    if text is None:
        return None
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CustomDataBase64Error(element=_path_of(parent_path, "CustomData"),
                       length=len(compact)) from exc


def _ssh(config_set: ET.Element, parent_path: str
         ) -> tuple[tuple[PublicKey, ...], tuple[KeyPair, ...]]:
    ssh = _one(config_set, "SSH", parent_path)
    if ssh is None:
        return (), ()
    ssh_path = _path_of(parent_path, "SSH")
    keys: list[PublicKey] = []
    pairs: list[KeyPair] = []
    section = _one(ssh, "PublicKeys", ssh_path)
    if section is not None:
        section_path = _path_of(ssh_path, "PublicKeys")
        for index, elem in enumerate(section.findall(_wa("PublicKey"))):
            where = f"{section_path}/PublicKey[{index}]"
            fingerprint = _text(elem, "Fingerprint", where)
            value = _text(elem, "Value", where)
            if fingerprint is None and value is None:
                raise OvfPublicKeyError(element=where)
            keys.append(PublicKey(
                fingerprint=fingerprint.upper() if fingerprint else None,
                path=_text(elem, "Path", where),
                value=value,
            ))
    section = _one(ssh, "KeyPairs", ssh_path)
    if section is not None:
        section_path = _path_of(ssh_path, "KeyPairs")
        for index, elem in enumerate(section.findall(_wa("KeyPair"))):
            where = f"{section_path}/KeyPair[{index}]"
            fingerprint = _text(elem, "Fingerprint", where, required=True)
            path = _text(elem, "Path", where, required=True)
            assert fingerprint is not None and path is not None
            if not _SHA1_HEX.fullmatch(fingerprint):
                # It names a file in the key staging directory: never '..'.
                raise OvfKeyPairFingerprintError(element=f"{where}/Fingerprint",
                               problem="not 40 hex digits (SHA-1)", length=len(fingerprint))
            pairs.append(KeyPair(fingerprint=fingerprint.upper(), path=path))
    return tuple(keys), tuple(pairs)


def _parse_xml(data: bytes) -> ET.Element:
    """Parse with DTDs and entities forbidden (no XXE, no entity bomb)."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("parse_ovf takes bytes")
    return xmldoc.parse(data, lambda problem, details: _XML_ERRORS[problem](**details))


def parse_ovf(data: bytes) -> OvfEnvironment:
    """Parse ovf-env.xml bytes; any problem raises :class:`OvfError`."""
    root = _parse_xml(data)
    if _local(root.tag) != "Environment":
        raise OvfRootError(root=_local(root.tag)[:40])

    section = _one(root, "ProvisioningSection", "", required=True)
    assert section is not None
    cs_path = "ProvisioningSection/LinuxProvisioningConfigurationSet"
    config_set = _one(section, "LinuxProvisioningConfigurationSet", "ProvisioningSection",
                      required=True)
    assert config_set is not None

    hostname = _text(config_set, "HostName", cs_path, required=True)
    username = _text(config_set, "UserName", cs_path, required=True)
    assert hostname is not None and username is not None
    # The password is taken verbatim: leading/trailing spaces may be meant.
    password = _text(config_set, "UserPassword", cs_path, strip=False)
    disable = _bool(config_set, "DisableSshPasswordAuthentication", cs_path)
    custom_data = _custom_data(config_set, cs_path)
    public_keys, key_pairs = _ssh(config_set, cs_path)

    platform: dict[str, object] = {}
    settings_section = _one(root, "PlatformSettingsSection", "")
    if settings_section is not None:
        ps_path = "PlatformSettingsSection/PlatformSettings"
        settings = _one(settings_section, "PlatformSettings", "PlatformSettingsSection")
        if settings is not None:
            platform = {
                "preprovisioned_vm": bool(_bool(settings, "PreprovisionedVm", ps_path)),
                "preprovisioned_vm_type": _text(settings, "PreprovisionedVMType", ps_path),
                "provision_guest_agent": _flag(settings, "ProvisionGuestAgent", ps_path),
                "provision_guest_proxy_agent": _flag(settings, "ProvisionGuestProxyAgent",
                                                     ps_path),
                "kms_server_hostname": _text(settings, "KmsServerHostname", ps_path),
            }

    return OvfEnvironment(
        hostname=hostname,
        username=username,
        password=password,
        disable_ssh_password_auth=disable,
        custom_data=custom_data,
        public_keys=public_keys,
        key_pairs=key_pairs,
        **platform,  # type: ignore[arg-type]
    )


# Every UserPassword start or end tag, with its namespace prefix. The
# attribute part stops at the next '<' or '>', so one pass over the document
# is linear however many tags (or look-alikes in comments) it holds.
_PASSWORD_TAG_RE = re.compile(
    rb"<(?P<end>/)?(?P<prefix>[A-Za-z_][\w.-]*:)?UserPassword(?P<attrs>\s[^<>]*)?>")


def _substitute_passwords(data: bytes) -> bytes:
    """Replace the text between each UserPassword start tag and the first end
    tag of the same prefix after it by ``REDACTED`` (raw bytes, one pass)."""
    starts: list[re.Match[bytes]] = []
    ends: dict[bytes, list[int]] = {}
    end_tags: dict[int, re.Match[bytes]] = {}
    for match in _PASSWORD_TAG_RE.finditer(data):
        if match.group("end"):
            ends.setdefault(match.group("prefix") or b"", []).append(match.start())
            end_tags[match.start()] = match
        elif not (match.group("attrs") or b"").rstrip().endswith(b"/"):
            starts.append(match)
    out: list[bytes] = []
    pos = 0
    for start in starts:
        if start.start() < pos:
            continue  # inside the element just redacted
        candidates = ends.get(start.group("prefix") or b"", [])
        index = bisect.bisect_left(candidates, start.end())
        if index == len(candidates):
            continue
        end = end_tags[candidates[index]]
        out += [data[pos:start.end()], REDACTED.encode()]
        pos = end.start()
    out.append(data[pos:])
    return b"".join(out)


def _passwords(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter() if _local(e.tag) == "UserPassword"]


def redact_ovf(data: bytes) -> bytes:
    """The document with every UserPassword's text replaced by ``REDACTED``.

    Substitutes on the raw bytes so the cached copy is otherwise identical,
    then re-parses to prove no password survived; if the raw substitution
    cannot be proven (odd encoding, CDATA tricks), falls back to
    re-serialising the tree, which loses formatting but never the secret.
    A document that does not parse at all gets the raw substitution only.
    """
    data = bytes(data)
    redacted = _substitute_passwords(data)
    try:
        original = _parse_xml(data)
    except OvfError:
        return redacted
    if not any(_passwords(original)):
        return data
    try:
        check = _parse_xml(redacted)
        if all(p in ("", REDACTED) for p in _passwords(check)):
            return redacted
    except OvfError:
        pass
    for elem in original.iter():
        if _local(elem.tag) == "UserPassword":
            for child in list(elem):
                elem.remove(child)
            elem.text = REDACTED
    return ET.tostring(original, encoding="utf-8", xml_declaration=True)
