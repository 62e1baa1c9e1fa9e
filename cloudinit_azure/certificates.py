"""Goal-state certificates: the keys an ovf-env.xml names only by fingerprint.

The wireserver returns a PKCS#7 (CMS) envelope, encrypted to a transient
certificate we send, around a PKCS#12 bundle. We decrypt it, key every
certificate by the upper-case SHA-1 hex of its DER (the ``Fingerprint`` in
ovf-env.xml) and turn public keys into OpenSSH lines.

Two steps go through ``openssl`` (via the injected runner) because the
``cryptography`` package cannot do them:

* CMS decryption of DES-EDE3-CBC content (the cipher the wireserver is asked
  for): ``pkcs7_decrypt_der`` only decrypts AES-CBC. Where it exists
  (cryptography 44+) it is tried first, so an AES envelope needs no
  subprocess; Debian's python3-cryptography (38 in Debian 12, 43 in Debian 13)
  has none, so there every envelope goes to ``openssl cms -decrypt``.
* Every private key in a bundle: ``load_pkcs12`` returns one key only, while
  ``openssl pkcs12 -nodes`` prints them all. Public keys need no subprocess.

The transport private key reaches ``openssl`` as a 0600 file in a private
(0700) temporary directory that is removed afterwards; it is never on argv.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Optional

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from cloudinit_azure import xmldoc
from cloudinit_azure.report import CertificateError
from cloudinit_azure.runner import Result, Runner

if TYPE_CHECKING:
    from cloudinit_azure.wireserver import GoalState, WireserverClient

LOG = logging.getLogger(__name__)

OPENSSL = "openssl"
_PEM_BEGIN = re.compile(r"-----BEGIN (?P<label>[A-Z0-9 ]{1,64})-----")


@dataclass(frozen=True)
class TransportPair:
    """The transient key pair the wireserver encrypts the certificates to."""

    private_key: rsa.RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate

    @property
    def cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())


def make_transport_pair(now: Optional[datetime] = None) -> TransportPair:
    """A fresh RSA 2048 key and a short-lived self-signed certificate for it."""
    now = now or datetime.now(timezone.utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudinit-azure transport")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return TransportPair(key, cert)


def transport_cert_header(pair: TransportPair) -> str:
    """``x-ms-guest-agent-public-x509-cert``: base64 DER, no armour, no newlines."""
    return base64.b64encode(pair.cert_der).decode("ascii")


def parse_certificates_xml(xml: bytes) -> bytes:
    """The decoded ``Data`` element of the wireserver's CertificateFile."""
    root = xmldoc.parse(xml, lambda problem, details: CertificateError(
        detail=f"certificates XML {problem}", **details))
    data = next((e for e in root.iter()
                 if isinstance(e.tag, str) and e.tag.rsplit("}", 1)[-1] == "Data"), None)
    text = "".join((data.text or "").split()) if data is not None else ""
    if not text:
        raise CertificateError(detail="certificates XML has no Data")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError(detail="certificates Data is not valid base64") from None


class _PrivateDir:
    """A 0700 temporary directory whose files are created 0600 and removed after."""

    def __init__(self, parent: Optional[str]) -> None:
        self.path = tempfile.mkdtemp(prefix="cloudinit-azure-", dir=parent)

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.path, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return path

    def __enter__(self) -> _PrivateDir:
        return self

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _openssl_failed(what: str, result: Result) -> CertificateError:
    stderr = (result.stderr or "").strip().splitlines()
    return CertificateError(detail=f"openssl {what} failed", returncode=result.returncode,
                            stderr=stderr[-1][:200] if stderr else "")


def decrypt_pkcs7(data: bytes, pair: TransportPair, runner: Runner,
                  tmp_dir: Optional[str] = None) -> bytes:
    """Decrypt the CMS envelope to ``pair``; returns the PKCS#12 bytes."""
    decrypt_der = getattr(pkcs7, "pkcs7_decrypt_der", None)  # absent before 44
    if decrypt_der is not None:
        try:
            return decrypt_der(data, pair.certificate, pair.private_key, [])
        except UnsupportedAlgorithm:
            LOG.debug("cryptography cannot decrypt this envelope; using openssl cms")
        except ValueError as exc:
            raise CertificateError(detail="cannot decrypt certificates envelope",
                                   exception=str(exc)[:200]) from None
    with _PrivateDir(tmp_dir) as tmp:
        key = tmp.write("transport.key", pair.key_pem)
        cert = tmp.write("transport.crt", pair.cert_pem)
        envelope = tmp.write("certificates.p7m", data)
        out = os.path.join(tmp.path, "certificates.p12")
        result = runner([OPENSSL, "cms", "-decrypt", "-binary", "-inform", "DER",
                         "-in", envelope, "-recip", cert, "-inkey", key, "-out", out],
                        check=False, timeout=60)
        if result.returncode != 0 or not os.path.exists(out):
            raise _openssl_failed("cms -decrypt", result)
        with open(out, "rb") as handle:
            return handle.read()


def fingerprint(cert: x509.Certificate) -> str:
    """Upper-case SHA-1 hex of the DER certificate, as ovf-env.xml spells it."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - an identifier


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _pkcs12_certificates(pkcs12_bytes: bytes) -> list[x509.Certificate]:
    try:
        bundle = pkcs12.load_pkcs12(pkcs12_bytes, None)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(detail="cannot read PKCS#12 bundle",
                               exception=type(exc).__name__) from None
    certs = [bundle.cert] if bundle.cert is not None else []
    certs.extend(bundle.additional_certs)
    return [c.certificate for c in certs]


def keys_by_fingerprint(pkcs12_bytes: bytes) -> dict[str, str]:
    """Each certificate's public key as an OpenSSH line, keyed by fingerprint."""
    out: dict[str, str] = {}
    for cert in _pkcs12_certificates(pkcs12_bytes):
        try:
            line = cert.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            # A bundle can hold certificates that are not SSH keys at all.
            LOG.debug("certificate %s has no OpenSSH form; skipped", fingerprint(cert))
            continue
        out[fingerprint(cert)] = line.decode("ascii")
    return out


def _pkcs12_pem(pkcs12_bytes: bytes, runner: Runner, tmp_dir: Optional[str]) -> str:
    with _PrivateDir(tmp_dir) as tmp:
        bundle = tmp.write("certificates.p12", pkcs12_bytes)
        cmd = [OPENSSL, "pkcs12", "-in", bundle, "-nodes", "-passin", "pass:"]
        result = runner(cmd, check=False, timeout=60)
        if result.returncode != 0:
            # OpenSSL 3 keeps old PKCS#12 ciphers (RC2, 40-bit) in its legacy provider.
            legacy = runner([*cmd, "-legacy"], check=False, timeout=60)
            if legacy.returncode != 0:
                raise _openssl_failed("pkcs12", result)
            result = legacy
        return result.stdout


def pem_blocks(text: str) -> list[tuple[str, str]]:
    """``(label, block)`` for each PEM block, line by line (one linear pass).

    A BEGIN line without its END is dropped; a BEGIN inside a block ends the
    unterminated one (so a thousand stray BEGIN lines cost one pass, not a
    thousand).
    """
    out: list[tuple[str, str]] = []
    label: Optional[str] = None
    lines: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        begin = _PEM_BEGIN.fullmatch(line)
        if begin is not None:
            label, lines = begin.group("label"), [line]
        elif label is not None:
            lines.append(line)
            if line == f"-----END {label}-----":
                out.append((label, "\n".join(lines) + "\n"))
                label, lines = None, []
    return out


def private_keys_by_fingerprint(pkcs12_bytes: bytes, runner: Runner,
                                tmp_dir: Optional[str] = None) -> dict[str, bytes]:
    """Every private key in the bundle (OpenSSH private format), keyed by the
    fingerprint of the certificate that carries its public half."""
    certs: list[x509.Certificate] = []
    keys = []
    for label, text in pem_blocks(_pkcs12_pem(pkcs12_bytes, runner, tmp_dir)):
        block = text.encode("ascii", "replace")
        try:
            if label == "CERTIFICATE":
                certs.append(x509.load_pem_x509_certificate(block))
            elif label.endswith("PRIVATE KEY"):
                keys.append(serialization.load_pem_private_key(block, None))
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise CertificateError(detail=f"cannot read {label.lower()} from PKCS#12",
                                   exception=type(exc).__name__) from None
    by_spki = {_spki(key.public_key()): key for key in keys}
    out: dict[str, bytes] = {}
    for cert in certs:
        key = by_spki.get(_spki(cert.public_key()))
        if key is None:
            continue
        try:
            out[fingerprint(cert)] = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            LOG.debug("private key of %s has no OpenSSH form; skipped", fingerprint(cert))
    return out


@dataclass(frozen=True)
class CertificateKeys:
    """Public keys (OpenSSH lines) and private keys, by certificate fingerprint."""

    public_keys: Mapping[str, str] = field(default_factory=dict)
    private_keys: Mapping[str, bytes] = field(default_factory=dict, repr=False)


def fetch_certificate_keys(
    client: WireserverClient,
    goal_state: GoalState,
    *,
    runner: Runner,
    pair: Optional[TransportPair] = None,
    private: bool = False,
    tmp_dir: Optional[str] = None,
) -> CertificateKeys:
    """Fetch, decrypt and unpack the goal state's certificates in one call.

    Private keys (for ovf-env.xml KeyPairs) are extracted only when
    ``private`` is set, since they cost an extra ``openssl`` run.
    """
    pair = pair or make_transport_pair()
    xml = client.certificates(goal_state, transport_cert_header(pair))
    bundle = decrypt_pkcs7(parse_certificates_xml(xml), pair, runner, tmp_dir)
    return CertificateKeys(
        public_keys=keys_by_fingerprint(bundle),
        private_keys=private_keys_by_fingerprint(bundle, runner, tmp_dir) if private else {},
    )
