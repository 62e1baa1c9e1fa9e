from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudinit_azure.ovf import (
    REDACTED,
    KeyPair,
    OvfEnvironment,
    PublicKey,
    parse_ovf,
    redact_ovf,
)
from cloudinit_azure.report import OvfError, ProvisioningError
from tests.fuzz import fuzz

OVF_NS = "http://schemas.dmtf.org/ovf/environment/1"
WA_NS = "http://schemas.microsoft.com/windowsazure"
FP1 = "3f1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c"
FP2 = "ABCDEF0123456789ABCDEF0123456789ABCDEF01"
ED_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq6vJc6N5l3f7c0YQ2n4mUu0c3m7XzY5pA8bq1d2e3f"
          " user@example")

MINIMAL = f"""<?xml version="1.0" encoding="utf-8"?>
<Environment xmlns="{OVF_NS}" xmlns:wa="{WA_NS}">
  <wa:ProvisioningSection>
    <wa:Version>1.0</wa:Version>
    <wa:LinuxProvisioningConfigurationSet>
      <wa:ConfigurationSetType>LinuxProvisioningConfiguration</wa:ConfigurationSetType>
      <wa:HostName>myhost</wa:HostName>
      <wa:UserName>azureuser</wa:UserName>
    </wa:LinuxProvisioningConfigurationSet>
  </wa:ProvisioningSection>
</Environment>
""".encode()


def full_doc(prefix: str = "wa", *, custom_data: bytes = b"#cloud-config\nruncmd: [ls]\n",
             password: str = "S3cret pass!<&>") -> bytes:
    """A full document with ``prefix`` for the Azure namespace ("" = default)."""
    p = f"{prefix}:" if prefix else ""
    if prefix:
        ns_decl = f'xmlns="{OVF_NS}" xmlns:{prefix}="{WA_NS}"'
        ovf = ""
    else:
        ns_decl = f'xmlns:oe="{OVF_NS}" xmlns="{WA_NS}"'
        ovf = "oe:"
    esc = password.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    b64 = base64.b64encode(custom_data).decode()
    # Wrapped base64, as some tools emit it.
    wrapped = "\n".join(b64[i:i + 20] for i in range(0, len(b64), 20))
    return f"""<?xml version="1.0" encoding="utf-8"?>
<{ovf}Environment {ns_decl} xmlns:i="http://www.w3.org/2001/XMLSchema-instance">
  <{p}ProvisioningSection>
    <{p}Version>1.0</{p}Version>
    <{p}LinuxProvisioningConfigurationSet>
      <{p}ConfigurationSetType>LinuxProvisioningConfiguration</{p}ConfigurationSetType>
      <{p}HostName>vm-full-01</{p}HostName>
      <{p}UserName>azureuser</{p}UserName>
      <{p}UserPassword>{esc}</{p}UserPassword>
      <{p}DisableSshPasswordAuthentication>False</{p}DisableSshPasswordAuthentication>
      <{p}SSH>
        <{p}PublicKeys>
          <{p}PublicKey>
            <{p}Fingerprint>{FP1}</{p}Fingerprint>
            <{p}Path>/home/azureuser/.ssh/authorized_keys</{p}Path>
            <{p}Value>{ED_KEY}</{p}Value>
          </{p}PublicKey>
          <{p}PublicKey>
            <{p}Fingerprint>{FP2}</{p}Fingerprint>
            <{p}Path>/home/azureuser/.ssh/authorized_keys</{p}Path>
          </{p}PublicKey>
        </{p}PublicKeys>
        <{p}KeyPairs>
          <{p}KeyPair>
            <{p}Fingerprint>{FP1}</{p}Fingerprint>
            <{p}Path>/home/azureuser/.ssh/id_rsa</{p}Path>
          </{p}KeyPair>
        </{p}KeyPairs>
      </{p}SSH>
      <{p}CustomData>{wrapped}</{p}CustomData>
    </{p}LinuxProvisioningConfigurationSet>
  </{p}ProvisioningSection>
  <{p}PlatformSettingsSection>
    <{p}Version>1.0</{p}Version>
    <{p}PlatformSettings>
      <{p}KmsServerHostname>kms.core.windows.net</{p}KmsServerHostname>
      <{p}ProvisionGuestAgent>true</{p}ProvisionGuestAgent>
      <{p}ProvisionGuestProxyAgent>false</{p}ProvisionGuestProxyAgent>
      <{p}GuestAgentPackageName i:nil="true" />
      <{p}PreprovisionedVm>True</{p}PreprovisionedVm>
      <{p}PreprovisionedVMType>Savable</{p}PreprovisionedVMType>
    </{p}PlatformSettings>
  </{p}PlatformSettingsSection>
</{ovf}Environment>
""".encode()


def linux_set(inner: str, platform: str = "") -> bytes:
    """A wa:-prefixed document with ``inner`` as the configuration set body."""
    plat = ""
    if platform:
        plat = (f"<wa:PlatformSettingsSection><wa:PlatformSettings>{platform}"
                "</wa:PlatformSettings></wa:PlatformSettingsSection>")
    return (f'<Environment xmlns="{OVF_NS}" xmlns:wa="{WA_NS}" '
            'xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
            "<wa:ProvisioningSection><wa:LinuxProvisioningConfigurationSet>"
            f"{inner}</wa:LinuxProvisioningConfigurationSet></wa:ProvisioningSection>"
            f"{plat}</Environment>").encode()


BASE = "<wa:HostName>h1</wa:HostName><wa:UserName>u1</wa:UserName>"


# ------------------------------------------------------------------ success


def test_minimal_document():
    env = parse_ovf(MINIMAL)
    assert env == OvfEnvironment(hostname="myhost", username="azureuser")
    assert env.password is None
    assert env.disable_ssh_password_auth is None
    assert env.custom_data is None
    assert env.public_keys == () and env.key_pairs == ()
    assert env.preprovisioned_vm is False
    assert env.preprovisioned_vm_type is None
    assert env.provision_guest_agent is None
    assert env.provision_guest_proxy_agent is None
    assert env.kms_server_hostname is None


@pytest.mark.parametrize("prefix", ["wa", "", "ns1"])
def test_full_document_any_prefix(prefix):
    env = parse_ovf(full_doc(prefix))
    assert env.hostname == "vm-full-01"
    assert env.username == "azureuser"
    assert env.password == "S3cret pass!<&>"
    assert env.disable_ssh_password_auth is False
    assert env.custom_data == b"#cloud-config\nruncmd: [ls]\n"
    assert env.public_keys == (
        PublicKey(FP1.upper(), "/home/azureuser/.ssh/authorized_keys", ED_KEY),
        PublicKey(FP2, "/home/azureuser/.ssh/authorized_keys", None),
    )
    assert env.key_pairs == (KeyPair(FP1.upper(), "/home/azureuser/.ssh/id_rsa"),)
    assert env.preprovisioned_vm is True
    assert env.preprovisioned_vm_type == "Savable"
    assert env.provision_guest_agent is True
    assert env.provision_guest_proxy_agent is False
    assert env.kms_server_hostname == "kms.core.windows.net"


def test_all_prefixes_give_same_result():
    assert parse_ovf(full_doc("wa")) == parse_ovf(full_doc("")) == parse_ovf(full_doc("ns1"))


def test_crlf_line_endings():
    doc = full_doc("wa").replace(b"\n", b"\r\n")
    assert b"\r\n" in doc
    env = parse_ovf(doc)
    assert env == parse_ovf(full_doc("wa"))


def test_utf8_bom():
    env = parse_ovf(b"\xef\xbb\xbf" + full_doc("wa"))
    assert env.hostname == "vm-full-01"


def test_bom_and_crlf_without_declaration():
    doc = b"\xef\xbb\xbf" + MINIMAL.split(b"\n", 1)[1].replace(b"\n", b"\r\n")
    assert parse_ovf(doc).username == "azureuser"


def test_non_ascii_password_and_custom_data():
    env = parse_ovf(full_doc("wa", password="pässwörd€", custom_data=b"\x00\xff binary"))
    assert env.password == "pässwörd€"
    assert env.custom_data == b"\x00\xff binary"


def test_password_not_in_repr():
    env = parse_ovf(full_doc("wa"))
    assert "S3cret" not in repr(env)
    assert "runcmd" not in repr(env)
    assert "vm-full-01" in repr(env)


def test_password_kept_verbatim():
    env = parse_ovf(linux_set(BASE + "<wa:UserPassword>  spaced  </wa:UserPassword>"))
    assert env.password == "  spaced  "


def test_password_in_cdata():
    env = parse_ovf(linux_set(BASE + "<wa:UserPassword><![CDATA[a<b&c]]></wa:UserPassword>"))
    assert env.password == "a<b&c"


def test_empty_password_is_none():
    assert parse_ovf(linux_set(BASE + "<wa:UserPassword></wa:UserPassword>")).password is None
    assert parse_ovf(linux_set(BASE + "<wa:UserPassword/>")).password is None


def test_names_are_stripped():
    env = parse_ovf(linux_set("<wa:HostName>\n  h1\n</wa:HostName>"
                              "<wa:UserName> u1 </wa:UserName>"))
    assert (env.hostname, env.username) == ("h1", "u1")


@pytest.mark.parametrize("text,expected", [
    ("true", True), ("TRUE", True), ("True", True), ("1", True), ("on", True),
    ("Yes", True), (" yes\n", True),
    ("false", False), ("FALSE", False), ("0", False), ("off", False), ("No", False),
])
def test_disable_ssh_password_auth_values(text, expected):
    doc = linux_set(BASE + f"<wa:DisableSshPasswordAuthentication>{text}"
                    "</wa:DisableSshPasswordAuthentication>")
    assert parse_ovf(doc).disable_ssh_password_auth is expected


@pytest.mark.parametrize("text", ["maybe", "2", "truee", "y"])
def test_disable_ssh_password_auth_invalid(text):
    doc = linux_set(BASE + f"<wa:DisableSshPasswordAuthentication>{text}"
                    "</wa:DisableSshPasswordAuthentication>")
    with pytest.raises(OvfError) as info:
        parse_ovf(doc)
    assert info.value.reason == "invalid boolean in ovf-env.xml"
    assert info.value.supporting_data["element"].endswith("/DisableSshPasswordAuthentication")
    assert info.value.supporting_data["value"] == text


def test_custom_data_with_whitespace_inside():
    b64 = base64.b64encode(b"hello world, this is user data").decode()
    spaced = "\r\n  ".join(b64[i:i + 7] for i in range(0, len(b64), 7))
    env = parse_ovf(linux_set(BASE + f"<wa:CustomData>\n{spaced}\n</wa:CustomData>"))
    assert env.custom_data == b"hello world, this is user data"


def test_empty_custom_data_is_none():
    assert parse_ovf(linux_set(BASE + "<wa:CustomData></wa:CustomData>")).custom_data is None


@pytest.mark.parametrize("bad", ["not base64!!", "QUJDR", "QUJ", "QU*D", "=QUJD"])
def test_invalid_custom_data(bad):
    with pytest.raises(OvfError) as info:
        parse_ovf(linux_set(BASE + f"<wa:CustomData>{bad}</wa:CustomData>"))
    assert info.value.reason == "invalid base64 in CustomData"
    assert bad not in str(info.value)


def test_nil_platform_settings_are_none():
    doc = linux_set(BASE, '<wa:PreprovisionedVMType i:nil="true" />'
                          '<wa:KmsServerHostname i:nil="true"></wa:KmsServerHostname>'
                          '<wa:ProvisionGuestAgent i:nil="true"/>'
                          "<wa:PreprovisionedVm>false</wa:PreprovisionedVm>")
    env = parse_ovf(doc)
    assert env.preprovisioned_vm_type is None
    assert env.kms_server_hostname is None
    assert env.provision_guest_agent is None
    assert env.preprovisioned_vm is False


def test_platform_section_without_settings_uses_defaults():
    doc = linux_set(BASE).replace(
        b"</Environment>",
        b"<wa:PlatformSettingsSection><wa:Version>1.0</wa:Version>"
        b"</wa:PlatformSettingsSection></Environment>")
    env = parse_ovf(doc)
    assert env.preprovisioned_vm is False and env.kms_server_hostname is None


def test_fingerprint_uppercased_and_key_without_value():
    doc = linux_set(BASE + "<wa:SSH><wa:PublicKeys><wa:PublicKey>"
                    "<wa:Fingerprint> abcdef </wa:Fingerprint><wa:Path>/p</wa:Path>"
                    "</wa:PublicKey></wa:PublicKeys></wa:SSH>")
    assert parse_ovf(doc).public_keys == (PublicKey("ABCDEF", "/p", None),)


def test_public_key_value_only():
    doc = linux_set(BASE + "<wa:SSH><wa:PublicKeys><wa:PublicKey>"
                    f"<wa:Value>{ED_KEY}</wa:Value></wa:PublicKey></wa:PublicKeys></wa:SSH>")
    assert parse_ovf(doc).public_keys == (PublicKey(None, None, ED_KEY),)


def test_elements_in_other_namespace_ignored():
    doc = linux_set(BASE + '<x:UserPassword xmlns:x="urn:other">nope</x:UserPassword>')
    assert parse_ovf(doc).password is None


# ------------------------------------------------------------------- errors


def _error(doc: bytes) -> OvfError:
    with pytest.raises(OvfError) as info:
        parse_ovf(doc)
    err = info.value
    assert isinstance(err, ProvisioningError)
    assert err.reason
    return err


@pytest.mark.parametrize("doc", [
    b"", b"not xml at all", b"<Environment>", b"<Environment></Other>",
    MINIMAL.replace(b"</wa:HostName>", b""),
])
def test_malformed_xml(doc):
    err = _error(doc)
    assert err.reason == "ovf-env.xml is not well-formed XML"
    assert "line" in err.supporting_data and "column" in err.supporting_data


def test_malformed_xml_position():
    err = _error(b'<?xml version="1.0"?>\n<Environment>\n  <a>\n</Environment>')
    assert err.supporting_data["line"] == 4


def test_wrong_root():
    err = _error(b"<Other/>")
    assert err.reason == "ovf-env.xml root is not Environment"
    assert err.supporting_data["root"] == "Other"


def test_missing_provisioning_section():
    doc = f'<Environment xmlns:wa="{WA_NS}"><wa:PlatformSettingsSection/></Environment>'
    err = _error(doc.encode())
    assert err.reason == "missing element in ovf-env.xml"
    assert err.supporting_data["element"] == "ProvisioningSection"


def test_provisioning_section_in_wrong_namespace():
    doc = MINIMAL.replace(WA_NS.encode(), b"http://example.com/other")
    assert _error(doc).supporting_data["element"] == "ProvisioningSection"


def test_missing_linux_configuration_set():
    doc = f'<Environment xmlns:wa="{WA_NS}"><wa:ProvisioningSection/></Environment>'
    err = _error(doc.encode())
    assert err.reason == "missing element in ovf-env.xml"
    assert err.supporting_data["element"] == (
        "ProvisioningSection/LinuxProvisioningConfigurationSet")


@pytest.mark.parametrize("name", ["HostName", "UserName"])
def test_missing_required(name):
    inner = BASE.replace(f"<wa:{name}>", "<wa:Other>").replace(f"</wa:{name}>", "</wa:Other>")
    err = _error(linux_set(inner))
    assert err.reason == "missing element in ovf-env.xml"
    assert err.supporting_data["element"].endswith(name)


@pytest.mark.parametrize("name", ["HostName", "UserName"])
@pytest.mark.parametrize("body", ["", "   ", "\n"])
def test_empty_required(name, body):
    inner = BASE.replace(f">{'h1' if name == 'HostName' else 'u1'}<", f">{body}<")
    err = _error(linux_set(inner))
    assert err.reason == "empty element in ovf-env.xml"
    assert err.supporting_data["element"].endswith(f"/{name}")


def test_nil_required_is_missing():
    inner = '<wa:HostName i:nil="true"/><wa:UserName>u1</wa:UserName>'
    err = _error(linux_set(inner))
    assert err.reason == "missing element in ovf-env.xml"
    assert err.supporting_data["element"].endswith("/HostName")


@pytest.mark.parametrize("extra", [
    "<wa:HostName>h2</wa:HostName>",
    "<wa:UserName>u2</wa:UserName>",
    "<wa:UserPassword>a</wa:UserPassword><wa:UserPassword>b</wa:UserPassword>",
    "<wa:CustomData>QQ==</wa:CustomData><wa:CustomData>Qg==</wa:CustomData>",
    "<wa:DisableSshPasswordAuthentication>true</wa:DisableSshPasswordAuthentication>"
    "<wa:DisableSshPasswordAuthentication>true</wa:DisableSshPasswordAuthentication>",
    "<wa:SSH/><wa:SSH/>",
])
def test_duplicate_in_configuration_set(extra):
    err = _error(linux_set(BASE + extra))
    assert err.reason == "duplicate element in ovf-env.xml"
    assert err.supporting_data["count"] == 2
    # never the password text
    assert "a" not in err.supporting_data.get("value", "")


@pytest.mark.parametrize("setting,value", [
    ("PreprovisionedVm", "true"), ("PreprovisionedVMType", "Running"),
    ("ProvisionGuestAgent", "true"), ("ProvisionGuestProxyAgent", "false"),
    ("KmsServerHostname", "kms"),
])
def test_duplicate_platform_setting(setting, value):
    one = f"<wa:{setting}>{value}</wa:{setting}>"
    err = _error(linux_set(BASE, one + one))
    assert err.reason == "duplicate element in ovf-env.xml"
    assert err.supporting_data["element"] == f"PlatformSettingsSection/PlatformSettings/{setting}"


def test_duplicate_sections():
    doc = MINIMAL.replace(b"</Environment>",
                          b"<wa:ProvisioningSection/></Environment>")
    err = _error(doc)
    assert err.reason == "duplicate element in ovf-env.xml"
    assert err.supporting_data["element"] == "ProvisioningSection"


def test_invalid_platform_bool():
    err = _error(linux_set(BASE, "<wa:PreprovisionedVm>sometimes</wa:PreprovisionedVm>"))
    assert err.reason == "invalid boolean in ovf-env.xml"
    assert err.supporting_data["element"].endswith("/PreprovisionedVm")


@pytest.mark.parametrize("setting", ["ProvisionGuestAgent", "ProvisionGuestProxyAgent"])
@pytest.mark.parametrize("text", ["sometimes", "\u00e9t\u00e9", "2", "x" * 5000])
def test_garbage_in_a_flag_nobody_acts_on_reads_as_unset(setting, text):
    """cloud-init and the Azure Linux Agent accept it; failing the VM would be worse."""
    env = parse_ovf(linux_set(BASE, f"<wa:{setting}>{text}</wa:{setting}>"))
    assert env.provision_guest_agent is None and env.provision_guest_proxy_agent is None
    env = parse_ovf(linux_set(BASE, f"<wa:{setting}>true</wa:{setting}>"))
    assert True in (env.provision_guest_agent, env.provision_guest_proxy_agent)


def _key_pair(fingerprint: str) -> bytes:
    return linux_set(BASE + "<wa:SSH><wa:KeyPairs><wa:KeyPair>"
                     f"<wa:Fingerprint>{fingerprint}</wa:Fingerprint>"
                     "<wa:Path>/home/u1/.ssh/id_rsa</wa:Path>"
                     "</wa:KeyPair></wa:KeyPairs></wa:SSH>")


@pytest.mark.parametrize("fingerprint", ["..", "../..", "/etc", "A" * 39, "A" * 41,
                                         "G" * 40, "a/" * 20, "\u0661" * 40, ""])
def test_a_key_pair_fingerprint_must_be_40_hex_digits(fingerprint):
    err = _error(_key_pair(fingerprint))
    if fingerprint:
        assert err.reason == "invalid KeyPair Fingerprint in ovf-env.xml"
        assert err.supporting_data["problem"] == "not 40 hex digits (SHA-1)"


def test_a_40_hex_digit_key_pair_fingerprint_is_upper_cased():
    env = parse_ovf(_key_pair("ab" * 20))
    assert env.key_pairs[0].fingerprint == "AB" * 20


@pytest.mark.parametrize("encoding", ["bogus", "UTF-32", "utf-7", "x-mac-japanese"])
def test_an_unreadable_encoding_declaration_is_an_ovf_error(encoding):
    doc = full_doc().replace(b'encoding="utf-8"', f'encoding="{encoding}"'.encode(), 1)
    assert _error(doc).reason == "ovf-env.xml declares an encoding that cannot be read"
    assert b"S3cret" not in redact_ovf(doc)  # redaction never raises, never keeps it


def test_redaction_of_a_comment_full_of_password_tags():
    """Once quadratic (64 KiB took 3.5 s; this 1.1 MB document took minutes).

    The tag scan stops each match at the next '<', so the cost is one pass.
    """
    doc = full_doc().replace(b"<wa:ProvisioningSection>",
                             b"<!-- " + b"<UserPassword>" * 80_000 + b" -->"
                             b"<wa:ProvisioningSection>", 1)
    redacted = redact_ovf(doc)
    assert b"S3cret" not in redacted and parse_ovf(redacted).password == REDACTED
    assert redacted.count(b"<UserPassword>") == 80_000  # the comment is kept as it was


@fuzz
@given(st.binary(max_size=400), st.text(max_size=40))
def test_any_bytes_are_an_environment_or_an_ovf_error(junk, text):
    for doc in (junk, full_doc().replace(b"vm-full-01", text.encode("utf-8", "replace"))):
        try:
            parse_ovf(doc)
        except OvfError as err:
            assert err.reason
        assert isinstance(redact_ovf(doc), bytes)


def test_keypair_requires_fingerprint_and_path():
    doc = linux_set(BASE + "<wa:SSH><wa:KeyPairs><wa:KeyPair><wa:Path>/p</wa:Path>"
                    "</wa:KeyPair></wa:KeyPairs></wa:SSH>")
    err = _error(doc)
    assert err.reason == "missing element in ovf-env.xml"
    assert err.supporting_data["element"].endswith("KeyPair[0]/Fingerprint")


def test_public_key_needs_fingerprint_or_value():
    doc = linux_set(BASE + "<wa:SSH><wa:PublicKeys><wa:PublicKey><wa:Path>/p</wa:Path>"
                    "</wa:PublicKey></wa:PublicKeys></wa:SSH>")
    assert _error(doc).reason == "PublicKey has neither Fingerprint nor Value"


def test_duplicate_fingerprint_in_public_key():
    doc = linux_set(BASE + "<wa:SSH><wa:PublicKeys><wa:PublicKey>"
                    "<wa:Fingerprint>A</wa:Fingerprint><wa:Fingerprint>B</wa:Fingerprint>"
                    "</wa:PublicKey></wa:PublicKeys></wa:SSH>")
    err = _error(doc)
    assert err.reason == "duplicate element in ovf-env.xml"
    assert err.supporting_data["element"].endswith("PublicKey[0]/Fingerprint")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Environment xmlns:wa="http://schemas.microsoft.com/windowsazure"><wa:ProvisioningSection>
<wa:LinuxProvisioningConfigurationSet><wa:HostName>&lol9;</wa:HostName>
<wa:UserName>u</wa:UserName></wa:LinuxProvisioningConfigurationSet>
</wa:ProvisioningSection></Environment>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Environment [ <!ENTITY xxe SYSTEM "file:///etc/shadow"> ]>
<Environment xmlns:wa="http://schemas.microsoft.com/windowsazure"><wa:ProvisioningSection>
<wa:LinuxProvisioningConfigurationSet><wa:HostName>&xxe;</wa:HostName>
<wa:UserName>u</wa:UserName></wa:LinuxProvisioningConfigurationSet>
</wa:ProvisioningSection></Environment>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Environment SYSTEM "http://attacker.invalid/x.dtd">
<Environment/>
"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Environment [ <!ENTITY % p SYSTEM "file:///etc/passwd"> %p; ]>
<Environment/>
"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD,
                                 PARAMETER_ENTITY])
def test_dtd_and_entities_rejected_quickly(doc):
    start = time.monotonic()
    err = _error(doc)
    assert time.monotonic() - start < 0.5
    assert err.reason == "ovf-env.xml declares a DTD or entity (forbidden)"


def test_undeclared_entity_reference_is_parse_error():
    doc = linux_set("<wa:HostName>&xxe;</wa:HostName><wa:UserName>u</wa:UserName>")
    assert _error(doc).reason == "ovf-env.xml is not well-formed XML"


def test_str_input_rejected():
    with pytest.raises(TypeError):
        parse_ovf(MINIMAL.decode())  # type: ignore[arg-type]


# ----------------------------------------------------------------- redaction


@pytest.mark.parametrize("prefix", ["wa", "", "ns1"])
def test_redact_replaces_only_password(prefix):
    doc = full_doc(prefix)
    out = redact_ovf(doc)
    assert b"S3cret" not in out
    assert parse_ovf(out).password == REDACTED
    p = f"{prefix}:".encode() if prefix else b""
    # Everything else byte-for-byte.
    start = doc.index(b"<" + p + b"UserPassword>")
    end = doc.index(b"</" + p + b"UserPassword>")
    expected = doc[:start] + b"<" + p + b"UserPassword>REDACTED" + doc[end:]
    assert out == expected


def test_redact_keeps_crlf_and_bom():
    doc = b"\xef\xbb\xbf" + full_doc("wa").replace(b"\n", b"\r\n")
    out = redact_ovf(doc)
    assert out.startswith(b"\xef\xbb\xbf")
    assert out.count(b"\r\n") == doc.count(b"\r\n")
    assert b"S3cret" not in out
    assert parse_ovf(out).custom_data == parse_ovf(doc).custom_data


def test_redact_without_password_unchanged():
    assert redact_ovf(MINIMAL) == MINIMAL
    empty = linux_set(BASE + "<wa:UserPassword></wa:UserPassword>")
    assert redact_ovf(empty) == empty
    selfclosed = linux_set(BASE + "<wa:UserPassword />")
    assert redact_ovf(selfclosed) == selfclosed


def test_redact_multiline_password_with_attributes():
    doc = linux_set(BASE + '<wa:UserPassword a="1">line1\nline2</wa:UserPassword>')
    out = redact_ovf(doc)
    assert b"line1" not in out and b"line2" not in out
    assert b'<wa:UserPassword a="1">REDACTED</wa:UserPassword>' in out


def test_redact_cdata_password():
    doc = linux_set(BASE + "<wa:UserPassword><![CDATA[x</wa:UserPassword>y]]></wa:UserPassword>")
    out = redact_ovf(doc)
    assert parse_ovf(out).password == REDACTED
    assert b"CDATA[x" not in out
    assert b"y]]>" not in out


def test_redact_is_idempotent():
    once = redact_ovf(full_doc("wa"))
    assert redact_ovf(once) == once


def test_redact_utf16_falls_back_to_reserialisation():
    doc = full_doc("wa").replace(b'encoding="utf-8"', b'encoding="utf-16"')
    doc16 = doc.decode().encode("utf-16")
    assert parse_ovf(doc16).password == "S3cret pass!<&>"
    out = redact_ovf(doc16)
    assert "S3cret".encode("utf-16-le") not in out and b"S3cret" not in out
    env = parse_ovf(out)
    assert env.password == REDACTED
    assert env.hostname == "vm-full-01"


def test_redact_unparseable_best_effort():
    doc = b"<Environment><wa:UserPassword>secret</wa:UserPassword>"
    out = redact_ovf(doc)
    assert b"secret" not in out
    assert out == b"<Environment><wa:UserPassword>REDACTED</wa:UserPassword>"


def test_redact_does_not_touch_similar_names():
    doc = linux_set(BASE + "<wa:UserPassword>pw</wa:UserPassword>"
                    "<wa:OldUserPassword>keep</wa:OldUserPassword>")
    out = redact_ovf(doc)
    assert b"<wa:OldUserPassword>keep</wa:OldUserPassword>" in out
    assert b">pw<" not in out
