"""The platform's certificates: SSH keys the user gave only as fingerprints.

Azure delivers such keys as X.509 certificates inside a PKCS#12 bundle,
enveloped (CMS, 3DES) to a transport certificate the agent sends. The
simulator makes one self-signed certificate per requested key and envelopes
the bundle with ``openssl cms`` like the wireserver does.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tempfile
from datetime import datetime, timedelta, timezone
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


def _cert(name: str, key: rsa.RSAPrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .sign(key, hashes.SHA256()))


def make_bundle(names: Sequence[str]) -> tuple[bytes, dict[str, dict[str, str]]]:
    """A PKCS#12 of one certificate per name -> (bundle, {name: fingerprint, openssh})."""
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in names]
    certs = [_cert(name, key) for name, key in zip(names, keys)]
    info = {}
    for name, key, cert in zip(names, keys, certs):
        der = cert.public_bytes(serialization.Encoding.DER)
        openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                serialization.PublicFormat.OpenSSH)
        info[name] = {"fingerprint": hashlib.sha1(der).hexdigest().upper(),  # noqa: S324
                      "openssh": openssh.decode()}
    bundle = pkcs12.serialize_key_and_certificates(
        b"azure", keys[0], certs[0], certs[1:], serialization.NoEncryption())
    return bundle, info


def envelope(bundle: bytes, transport_cert_b64: str) -> bytes:
    """CMS-envelope ``bundle`` to the agent's transport certificate (DER, 3DES)."""
    der = base64.b64decode(transport_cert_b64)
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    with tempfile.TemporaryDirectory() as tmp:
        recip = os.path.join(tmp, "recip.pem")
        with open(recip, "wb") as fh:
            fh.write(pem)
        proc = subprocess.run(["openssl", "cms", "-encrypt", "-des3", "-binary",
                               "-outform", "DER", recip], input=bundle,
                              capture_output=True, check=True)
    return proc.stdout


def certificates_xml(enveloped: bytes) -> bytes:
    # Azure wraps Data at 64 characters (WALinuxAgent's own test data shows it);
    # the agent hands it to openssl's S/MIME reader, which rejects one long line.
    raw = base64.b64encode(enveloped).decode()
    data = "\n".join(raw[i:i + 64] for i in range(0, len(raw), 64))
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<CertificatesFile>'
        "<Version>2012-11-30</Version><Incarnation>1</Incarnation>"
        "<Format>Pkcs7BlobWithPfxContents</Format>"
        f"<Data>{data}</Data></CertificatesFile>\n"
    ).encode()
