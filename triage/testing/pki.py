"""Keys and certificates for tests: a self-made CA, an examiner's certificate it issues, a bare Ed25519 key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class Issued:
    """A key and its files: the key PEM (maybe encrypted), the certificate PEM (None for a bare key)."""

    key: PrivateKey
    key_path: Path
    cert: x509.Certificate | None = None
    cert_path: Path | None = None


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Triage Test Agency"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def write_key(key: PrivateKey, path: Path, passphrase: bytes | None = None) -> Path:
    """The key as PKCS#8 PEM, encrypted with ``passphrase`` when given."""
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return path


def make_ca(folder: Path, cn: str = "Test Forensics CA") -> Issued:
    """A self-signed CA (EC P-256) valid from yesterday for ten years."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = folder / "ca.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(key=key, key_path=write_key(key, folder / "ca.key"), cert=cert, cert_path=cert_path)


def issue(ca: Issued, folder: Path, cn: str, algorithm: str = "ec", passphrase: bytes | None = None) -> Issued:
    """An examiner's signing certificate from ``ca``, with an RSA (2048) or EC (P-256) key."""
    key: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    assert ca.cert is not None and not isinstance(ca.key, ed25519.Ed25519PrivateKey)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert_path = folder / f"{cn.replace(' ', '_')}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = write_key(key, folder / f"{cn.replace(' ', '_')}.key", passphrase)
    return Issued(key=key, key_path=key_path, cert=cert, cert_path=cert_path)


def ed25519_key(folder: Path, name: str = "examiner-ed25519.key", passphrase: bytes | None = None) -> Issued:
    """A bare Ed25519 key."""
    key = ed25519.Ed25519PrivateKey.generate()
    return Issued(key=key, key_path=write_key(key, folder / name, passphrase))
