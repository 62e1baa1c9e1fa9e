"""Certificates round trip: PKCS#12 in a CMS envelope to our transport cert.

Test material is generated here; the envelope is made with ``openssl cms
-encrypt -des3`` exactly as the wireserver is asked to (DES_EDE3_CBC), and
with cryptography's AES envelope for the no-subprocess path.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from cloudinit_azure import certificates as certs
from cloudinit_azure.certificates import (
    decrypt_pkcs7,
    fetch_certificate_keys,
    fingerprint,
    keys_by_fingerprint,
    make_transport_pair,
    parse_certificates_xml,
    pem_blocks,
    private_keys_by_fingerprint,
    transport_cert_header,
)
from cloudinit_azure.report import CertificateError
from cloudinit_azure.runner import Result, run
from cloudinit_azure.wireserver import GoalState, WireserverClient
from tests.fakes import FakeRunner
from tests.unit.test_http import FakeClock, Reply, ScriptedServer

OPENSSL = "/usr/bin/openssl"
needs_openssl = pytest.mark.skipif(not os.path.exists(OPENSSL), reason="no openssl")


def self_signed(key, cn: str, signer=None) -> x509.Certificate:
    now = datetime.now(timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(days=1))
               .not_valid_after(now + timedelta(days=1)))
    return builder.sign(signer or key, hashes.SHA256())


def pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """A user RSA key pair with its cert, an Ed25519 cert without key, a PFX."""
    d = tmp_path_factory.mktemp("material")
    user_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    user_cert = self_signed(user_key, "user")
    other_key = ed25519.Ed25519PrivateKey.generate()
    other_cert = self_signed(other_key, "other", signer=user_key)
    (d / "user.crt").write_bytes(pem(user_cert))
    (d / "user.key").write_bytes(pem(user_key))
    (d / "other.crt").write_bytes(pem(other_cert))
    pfx = d / "bundle.p12"
    subprocess.run([OPENSSL, "pkcs12", "-export", "-passout", "pass:", "-in", d / "user.crt",
                    "-inkey", d / "user.key", "-certfile", d / "other.crt", "-out", pfx],
                   check=True, capture_output=True)
    return {
        "dir": d, "user_key": user_key, "user_cert": user_cert, "other_key": other_key,
        "other_cert": other_cert, "pfx": pfx.read_bytes(),
    }


@pytest.fixture(scope="module")
def pair():
    return make_transport_pair()


def envelope_des3(data: bytes, pair, d) -> bytes:
    (d / "in.bin").write_bytes(data)
    (d / "transport.crt").write_bytes(pair.cert_pem)
    subprocess.run([OPENSSL, "cms", "-encrypt", "-des3", "-binary", "-outform", "DER",
                    "-in", d / "in.bin", "-out", d / "env.der", d / "transport.crt"],
                   check=True, capture_output=True)
    return (d / "env.der").read_bytes()


def certificates_xml(envelope: bytes) -> bytes:
    data = base64.encodebytes(envelope).decode()  # line-wrapped, as seen in the wild
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<CertificateFile>'
            f"<Version>1</Version><Incarnation>1</Incarnation>"
            f"<Format>Pkcs7BlobWithPfxContents</Format><Data>{data}</Data>"
            f"</CertificateFile>").encode()


def openssh(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()


no_runner = FakeRunner(default=AssertionError("openssl must not be run"))


# --- transport pair ------------------------------------------------------------

def test_transport_pair_and_header(pair):
    assert pair.private_key.key_size == 2048
    assert pair.certificate.public_key().public_numbers() == \
        pair.private_key.public_key().public_numbers()
    header = transport_cert_header(pair)
    assert "\n" not in header and "BEGIN" not in header
    assert x509.load_der_x509_certificate(base64.b64decode(header)) == pair.certificate
    assert "private_key" not in repr(pair)


# --- Certificates XML ----------------------------------------------------------

def test_parse_certificates_xml_decodes_wrapped_data():
    blob = os.urandom(300)
    assert parse_certificates_xml(certificates_xml(blob)) == blob


@pytest.mark.parametrize("xml,detail", [
    (b"<CertificateFile>", "not well-formed"),
    (b"<CertificateFile><Version>1</Version></CertificateFile>", "no Data"),
    (b"<CertificateFile><Data>  </Data></CertificateFile>", "no Data"),
    (b"<CertificateFile><Data>!!!notbase64</Data></CertificateFile>", "not valid base64"),
    (b'<?xml version="1.0" encoding="bogus"?><CertificateFile/>', "declares an encoding"),
    (b'<?xml version="1.0" encoding="UTF-32"?><CertificateFile/>', "declares an encoding"),
    (b'<!DOCTYPE x [<!ENTITY a "b">]><CertificateFile>&a;</CertificateFile>',
     "declares a DTD"),
])
def test_parse_certificates_xml_errors(xml, detail):
    with pytest.raises(CertificateError) as info:
        parse_certificates_xml(xml)
    assert detail in info.value.supporting_data["detail"]


# --- decrypt -------------------------------------------------------------------

@needs_openssl
def test_des3_envelope_decrypts_through_openssl(material, pair, tmp_path):
    env = envelope_des3(material["pfx"], pair, tmp_path)
    calls = []

    def recording_runner(cmd, **kwargs):
        calls.append(list(map(str, cmd)))
        # The key file is private while openssl runs.
        key = cmd[cmd.index("-inkey") + 1]
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(key)).st_mode) == 0o700
        return run(cmd, **kwargs)

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert decrypt_pkcs7(env, pair, recording_runner, tmp_dir=str(scratch)) == material["pfx"]
    (cmd,) = calls
    assert cmd[:3] == ["openssl", "cms", "-decrypt"]
    key_text = pair.key_pem.decode()
    assert not any("PRIVATE KEY" in a or a in key_text for a in cmd if len(a) > 20)
    assert list(scratch.iterdir()) == []  # key file and the rest removed


def test_aes_envelope_decrypts_without_a_subprocess(material, pair):
    env = (pkcs7.PKCS7EnvelopeBuilder().set_data(material["pfx"])
           .add_recipient(pair.certificate)
           .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    assert decrypt_pkcs7(env, pair, no_runner) == material["pfx"]


@needs_openssl
@pytest.mark.parametrize("cipher", ["des3", "aes"])
def test_without_pkcs7_decrypt_der_every_envelope_goes_to_openssl(material, pair, tmp_path,
                                                                   monkeypatch, cipher):
    # Debian's python3-cryptography (38 in Debian 12, 43 in Debian 13) has no
    # pkcs7_decrypt_der: the real boots crashed with AttributeError there.
    if cipher == "des3":
        env = envelope_des3(material["pfx"], pair, tmp_path)
    else:
        env = (pkcs7.PKCS7EnvelopeBuilder().set_data(material["pfx"])
               .add_recipient(pair.certificate)
               .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    monkeypatch.delattr(pkcs7, "pkcs7_decrypt_der", raising=False)
    calls = []

    def recording_runner(cmd, **kwargs):
        calls.append(list(map(str, cmd)))
        return run(cmd, **kwargs)

    assert decrypt_pkcs7(env, pair, recording_runner, tmp_dir=str(tmp_path)) == material["pfx"]
    assert [c[:3] for c in calls] == [["openssl", "cms", "-decrypt"]]


@needs_openssl
def test_envelope_for_another_recipient_fails_cleanly(material, pair, tmp_path):
    stranger = make_transport_pair()
    env = envelope_des3(material["pfx"], stranger, tmp_path)
    with pytest.raises(CertificateError) as info:
        decrypt_pkcs7(env, pair, run, tmp_dir=str(tmp_path))
    assert info.value.reason == "error obtaining certificates"


def test_not_cms_at_all_fails_cleanly(pair):
    with pytest.raises(CertificateError) as info:
        decrypt_pkcs7(b"\x30\x03\x02\x01\x00", pair, no_runner)
    assert info.value.supporting_data["detail"] == "cannot decrypt certificates envelope"


@needs_openssl
def test_openssl_failure_reported_from_fake_runner(material, pair, tmp_path):
    env = envelope_des3(material["pfx"], pair, tmp_path)

    def failing(cmd, **kwargs):
        return Result(4, "", "line one\nError decrypting CMS structure\n")

    with pytest.raises(CertificateError) as info:
        decrypt_pkcs7(env, pair, failing)
    data = info.value.supporting_data
    assert data["detail"] == "openssl cms -decrypt failed" and data["returncode"] == 4
    assert data["stderr"] == "Error decrypting CMS structure"


# --- PKCS#12 -------------------------------------------------------------------

def test_keys_by_fingerprint_covers_every_certificate(material):
    keys = keys_by_fingerprint(material["pfx"])
    user_fp = material["user_cert"].fingerprint(hashes.SHA1()).hex().upper()
    other_fp = fingerprint(material["other_cert"])
    assert keys == {user_fp: openssh(material["user_key"]),
                    other_fp: openssh(material["other_key"])}
    assert keys[user_fp].startswith("ssh-rsa ") and keys[other_fp].startswith("ssh-ed25519 ")
    assert len(user_fp) == 40 and user_fp == user_fp.upper()


def test_keys_from_an_unencrypted_cryptography_bundle(material):
    pfx = pkcs12.serialize_key_and_certificates(
        None, None, None, [material["other_cert"]], serialization.NoEncryption())
    assert keys_by_fingerprint(pfx) == {
        fingerprint(material["other_cert"]): openssh(material["other_key"])}


def test_bad_pkcs12_is_a_certificate_error():
    with pytest.raises(CertificateError):
        keys_by_fingerprint(b"not a pfx")


@needs_openssl
def test_private_keys_by_fingerprint(material, tmp_path):
    keys = private_keys_by_fingerprint(material["pfx"], run, tmp_dir=str(tmp_path))
    user_fp = fingerprint(material["user_cert"])
    assert list(keys) == [user_fp]  # the Ed25519 cert came without a key
    loaded = serialization.load_ssh_private_key(keys[user_fp], None)
    assert loaded.private_numbers() == material["user_key"].private_numbers()
    assert keys[user_fp].startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")


def test_private_keys_retry_with_legacy_provider(material):
    user_cert = material["user_cert"]
    pem_out = (b"Bag Attributes\n    localKeyID: 01\n" + pem(material["user_key"])
               + b"subject=CN = user\n" + pem(user_cert)).decode()
    calls = []

    def runner(cmd, **kwargs):
        calls.append(cmd)
        if "-legacy" not in cmd:
            return Result(1, "", "unsupported:Global default library context\n")
        return Result(0, pem_out, "")

    keys = private_keys_by_fingerprint(b"pfx", runner)
    assert list(keys) == [fingerprint(user_cert)] and len(calls) == 2


def test_private_keys_openssl_failure(material):
    with pytest.raises(CertificateError) as info:
        private_keys_by_fingerprint(b"pfx", lambda cmd, **kw: Result(1, "", "bad\n"))
    assert info.value.supporting_data["stderr"] == "bad"


# --- end to end through the wireserver client ----------------------------------

@needs_openssl
def test_fetch_certificate_keys_end_to_end(material, pair, tmp_path):
    env = envelope_des3(material["pfx"], pair, tmp_path)
    clock = FakeClock()
    gs = GoalState("1", "c", "i", "http://168.63.129.16:80/machine/c?comp=certificates")
    with ScriptedServer([Reply(200, certificates_xml(env))]) as srv:
        client = WireserverClient(srv.url, clock=clock, sleep=clock.sleep)
        got = fetch_certificate_keys(client, gs, pair=pair, private=True, runner=run,
                                     tmp_dir=str(tmp_path))
    assert srv.seen[0].headers["x-ms-guest-agent-public-x509-cert"] == \
        transport_cert_header(pair)
    assert srv.seen[0].path == "/machine/c?comp=certificates"
    user_fp = fingerprint(material["user_cert"])
    assert got.public_keys[user_fp] == openssh(material["user_key"])
    assert got.public_keys[fingerprint(material["other_cert"])] == openssh(material["other_key"])
    assert list(got.private_keys) == [user_fp]
    assert "PRIVATE" not in repr(got)


def test_fetch_without_private_keys_runs_no_pkcs12_command(material, pair):
    env = (pkcs7.PKCS7EnvelopeBuilder().set_data(material["pfx"])
           .add_recipient(pair.certificate)
           .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    clock = FakeClock()
    gs = GoalState("1", "c", "i", "/machine/c?comp=certificates")
    with ScriptedServer([Reply(200, certificates_xml(env))]) as srv:
        client = WireserverClient(srv.url, clock=clock, sleep=clock.sleep)
        got = fetch_certificate_keys(client, gs, pair=pair, runner=no_runner)
    assert len(got.public_keys) == 2 and got.private_keys == {}


def test_module_runs_openssl_by_name_not_path():
    assert certs.OPENSSL == "openssl"


def test_pem_blocks_keep_complete_blocks_and_drop_stray_begins():
    pem = make_transport_pair().cert_pem.decode()
    noise = "-----BEGIN CERTIFICATE-----\n" * 50_000  # once a quadratic scan
    text = ("Bag Attributes\r\n" + noise + pem.replace("\n", "\r\n")
            + "-----BEGIN PRIVATE KEY-----\nAAAA\n")
    blocks = pem_blocks(text)
    assert [label for label, _ in blocks] == ["CERTIFICATE"]
    assert x509.load_pem_x509_certificate(blocks[0][1].encode()).subject
    assert pem_blocks("-----END CERTIFICATE-----\n") == []
