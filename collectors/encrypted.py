"""Encrypted Velociraptor offline collections: an outer zip holding ``metadata.json`` and ``data.zip``.

``data.zip`` (the collection itself) is an AES-encrypted member of the outer zip. Its password is either
the one the collector was built with (password scheme) or, in the X.509 scheme, a random one that the
collector encrypted with its certificate's RSA key (OAEP) and wrote, base64-encoded, into ``metadata.json``.
We take the password (``--password`` / ``TRIAGE_COLLECTION_PASSWORD``) or the certificate's private key
(``--key KEY.pem`` / ``TRIAGE_COLLECTION_KEY``, a path to an unencrypted PEM). Neither is ever logged,
stored in the case or printed; a missing or wrong one is a usage error that names the format and what
is needed.

The decrypted ``data.zip`` is streamed into an unnamed temporary file (``O_TMPFILE``-style: unlinked at
creation, gone when closed; ``TRIAGE_TMPDIR`` chooses its file system) because a zip needs random access
and an AES stream cannot seek; its size is bounded by the zip limits.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from collectors.vfs import ZipLimits
from triage.errors import UsageError

ENCRYPTED_PASS_KEYS = ("EncryptedPass", "encrypted_pass", "b64_enc_secret", "EncryptedPassword")
FORMAT = "encrypted Velociraptor offline collection (metadata.json + AES-encrypted data.zip)"


@dataclass
class Credentials:
    """What the analyst gave to open encrypted collections (never logged or stored)."""

    password: str | None = None
    key_path: str | None = None

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return f"Credentials(password={'set' if self.password else None}, key_path={self.key_path!r})"

    def resolved(self) -> Credentials:
        return Credentials(
            self.password or os.environ.get("TRIAGE_COLLECTION_PASSWORD") or None,
            self.key_path or os.environ.get("TRIAGE_COLLECTION_KEY") or None,
        )


CREDENTIALS = Credentials()


def set_credentials(password: str | None = None, key_path: str | None = None) -> None:
    """Set the command line's password or key for this process (the environment is read at use)."""
    CREDENTIALS.password = password
    CREDENTIALS.key_path = key_path


def read_metadata(zf: zipfile.ZipFile) -> dict[str, Any]:
    """``metadata.json`` of the outer zip (a dict, or the first dict of a list)."""
    try:
        with zf.open("metadata.json") as fh:
            doc = json.loads(fh.read(1 << 20).decode("utf-8", "replace"))
    except Exception:  # a damaged or odd metadata.json: the scheme is then unknown, the password still works
        return {}
    if isinstance(doc, list):
        doc = next((d for d in doc if isinstance(d, dict)), {})
    return doc if isinstance(doc, dict) else {}


def _decrypt_with_key(label: str, key_path: str, blob: str) -> str:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:  # pragma: no cover - a dependency
        raise UsageError(f"{label}: the 'cryptography' package is needed to use --key") from None
    try:
        with open(key_path, "rb") as fh:
            pem = fh.read(1 << 20)
    except OSError as exc:
        raise UsageError(f"--key {key_path}: cannot read the private key: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        why = "it is encrypted; decrypt it first" if "encrypted" in str(exc).lower() else "not a PEM private key"
        raise UsageError(f"--key {key_path}: cannot load the private key ({why})") from None
    try:
        secret = base64.b64decode(blob, validate=False)
    except ValueError:
        raise UsageError(f"{label}: metadata.json holds an encrypted password that is not base64") from None
    # only an RSA key decrypts: any other kind fails every attempt, as its missing decrypt() did
    if isinstance(key, rsa.RSAPrivateKey):
        for algo in (hashes.SHA512(), hashes.SHA256(), hashes.SHA1()):
            try:
                plain = key.decrypt(secret, padding.OAEP(mgf=padding.MGF1(algorithm=algo), algorithm=algo, label=None))
            except (ValueError, TypeError, AttributeError):
                continue
            return plain.decode("utf-8", "surrogateescape")
    raise UsageError(
        f"{label}: the private key {key_path} does not decrypt this collection's password (another collector's "
        "certificate?)"
    )


def open_data_zip(path: str, fh: BinaryIO, label: str, limits: ZipLimits) -> BinaryIO:
    """Decrypt the outer zip's ``data.zip`` into an unnamed temporary file, returned open at offset 0."""
    try:
        import pyzipper
    except ImportError:  # pragma: no cover - a dependency
        raise UsageError(f"{label}: the 'pyzipper' package is needed to open an {FORMAT}") from None
    damaged = (zipfile.BadZipFile, pyzipper.BadZipFile, OSError, EOFError, ValueError, zlib.error, struct.error)
    fh.seek(0)
    try:
        outer = pyzipper.AESZipFile(fh)
    except damaged as exc:
        raise UsageError(f"{label}: the {FORMAT} cannot be read: {type(exc).__name__}: {str(exc)[:160]}") from None
    meta = read_metadata(outer)
    creds = CREDENTIALS.resolved()
    blob = next((meta[k] for k in ENCRYPTED_PASS_KEYS if isinstance(meta.get(k), str) and meta[k]), None)
    password = creds.password
    if not password:
        if blob and creds.key_path:
            password = _decrypt_with_key(label, creds.key_path, blob)
        elif blob:
            raise UsageError(
                f"{label}: an {FORMAT}, X.509 scheme (the password of data.zip is encrypted with the collector's "
                "certificate); give the certificate's private key (--key KEY.pem or TRIAGE_COLLECTION_KEY) or the "
                "password (--password or TRIAGE_COLLECTION_PASSWORD)"
            )
        else:
            raise UsageError(
                f"{label}: an {FORMAT}, password scheme; give the collector's password (--password or "
                "TRIAGE_COLLECTION_PASSWORD)"
            )
    try:
        info = outer.getinfo("data.zip")
    except KeyError:
        raise UsageError(f"{label}: no data.zip member") from None
    if info.file_size > limits.expanded:
        raise UsageError(
            f"{label}: data.zip declares {info.file_size:,} bytes, over the limit of {limits.expanded:,} "
            "(TRIAGE_ZIP_MAX_BYTES raises it)"
        )
    outer.setpassword(password.encode("utf-8", "surrogateescape"))
    tmp = tempfile.TemporaryFile(dir=os.environ.get("TRIAGE_TMPDIR") or None)  # noqa: SIM115 - returned open
    try:
        with outer.open(info) as src:
            copied = 0
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > limits.expanded:
                    raise UsageError(f"{label}: data.zip expands beyond {limits.expanded:,} bytes")
                tmp.write(chunk)
    except RuntimeError as exc:
        tmp.close()
        if "password" in str(exc).lower():
            raise UsageError(f"{label}: the password does not open data.zip of this {FORMAT}") from None
        raise UsageError(f"{label}: data.zip cannot be decrypted: {str(exc)[:160]}") from None
    except (*damaged, NotImplementedError) as exc:
        tmp.close()
        raise UsageError(f"{label}: data.zip is damaged: {type(exc).__name__}: {str(exc)[:160]}") from None
    except BaseException:
        tmp.close()
        raise
    tmp.seek(0)
    return tmp
