"""The seal of a case: what it held when an examiner signed it, and the check ``triage verify`` runs on it.

``CASE/seal/seal.json`` lists the custody head, the manifest's and ``case.json``'s hashes and the hash of every
report, result and run file, with who sealed it, when, the tool version and the case id. Beside it lies a
detached signature: with an X.509 certificate a DER CMS (PKCS#7) signature ``seal.json.p7s`` that
``openssl cms -verify -binary -inform DER -content seal.json`` accepts; with a bare Ed25519 key a raw signature
``seal.json.sig`` and the public key ``seal.pub.pem`` (its SHA-256 fingerprint is in ``seal.json``). Sealing is a
custody event holding the hashes of those files. Private keys and passphrases are only ever held in memory.

:func:`check_seal` is verify's part: the seal's files against their custody event, the signature, the sealed
hashes against the case now. A sealed file edited since is an integrity problem; what later commands added or
rewrote (a new analyze, an attestation, a new report, an export) is listed as "after the seal".
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from triage import TOOL_NAME, __version__
from triage.custody import load_json, utcnow
from triage.errors import UsageError
from triage.hashing import hash_file, sha256_bytes
from triage.seal_names import PASSPHRASE_ENV  # re-exported: the CLI reads it without importing cryptography

SEAL_DIR = "seal"
SEAL_JSON = "seal/seal.json"
CMS_SIGNATURE = "seal/seal.json.p7s"
RAW_SIGNATURE = "seal/seal.json.sig"
PUBLIC_KEY = "seal/seal.pub.pem"
SEAL_FILES = (SEAL_JSON, CMS_SIGNATURE, RAW_SIGNATURE, PUBLIC_KEY)
SEAL_FORMAT = "triage-seal/1"
SEALED_DIRS = ("report", "results", "runs")  # files written after collection, hashed one by one in the seal
# events that only read the case: never "after the seal", and left out of the tail of an exported custody log
READ_ONLY_ACTIONS = frozenset({"verify", "export"})
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# -- signer -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signer:
    """A private key (and its certificate, for a CMS signature), held in memory only."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    cert: x509.Certificate | None

    @property
    def kind(self) -> str:
        """``cms`` (with a certificate) or ``ed25519`` (a raw signature)."""
        return "cms" if self.cert is not None else "ed25519"

    def describe(self) -> dict[str, Any]:
        """What seal.json says about the signer: public facts only."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "key_type": _key_type(self.key),
            "public_key_sha256": public_key_fingerprint(self.key.public_key()),
        }
        if self.cert is not None:
            out |= {
                "subject": self.cert.subject.rfc4514_string(),
                "issuer": self.cert.issuer.rfc4514_string(),
                "serial": format(self.cert.serial_number, "x"),
                "cert_sha256": self.cert.fingerprint(hashes.SHA256()).hex(),
            }
        return out

    def sign(self, data: bytes) -> bytes:
        """The detached signature of ``data``: DER CMS with a certificate, raw Ed25519 without."""
        if self.cert is None:
            assert isinstance(self.key, ed25519.Ed25519PrivateKey)
            return self.key.sign(data)
        assert isinstance(self.key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
        return (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(data)
            .add_signer(self.cert, self.key, hashes.SHA256())
            .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
        )


def _key_type(key: object) -> str:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC-{key.curve.name}"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


def public_key_fingerprint(public_key: Any) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo (``openssl pkey -pubin -outform DER | sha256sum``)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256_bytes(der)


def load_signer(key_path: Path, cert_path: Path | None, passphrase: Callable[[], bytes | None]) -> Signer:
    """Read the private key (asking ``passphrase`` only when it is encrypted) and the certificate.

    Errors name the file and what is wrong, never the key's bytes.
    """
    try:
        raw = key_path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--key {key_path}: cannot read it ({exc.strerror or exc})") from None
    key = _load_key(raw, None, key_path)
    if key is None:
        secret = passphrase()
        if not secret:
            raise UsageError(f"--key {key_path} is encrypted: set ${PASSPHRASE_ENV} or run from a terminal to be asked")
        key = _load_key(raw, secret, key_path)
        if key is None:
            raise UsageError(f"--key {key_path}: the passphrase does not open it")
    del raw
    cert: x509.Certificate | None = None
    if cert_path is not None:
        try:
            data = cert_path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--cert {cert_path}: cannot read it ({exc.strerror or exc})") from None
        try:
            pem = b"-----BEGIN" in data
            cert = x509.load_pem_x509_certificate(data) if pem else x509.load_der_x509_certificate(data)
        except ValueError:
            raise UsageError(f"--cert {cert_path}: not an X.509 certificate (PEM or DER)") from None
        if public_key_fingerprint(cert.public_key()) != public_key_fingerprint(key.public_key()):
            why = "their public keys differ"
            raise UsageError(f"--cert {cert_path} is not the certificate of --key {key_path} ({why})")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        if cert is not None:
            raise UsageError("an Ed25519 key signs raw (seal.json.sig) without a certificate: leave out --cert")
    elif isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        if cert is None:
            raise UsageError(f"--key {key_path} is an {_key_type(key)} key: give its X.509 certificate with --cert")
    else:
        raise UsageError(
            f"--key {key_path}: {_key_type(key)} keys are not supported (RSA or EC with a certificate, or Ed25519)"
        )
    return Signer(key=key, cert=cert)


def _load_key(raw: bytes, secret: bytes | None, where: Path) -> Any:
    """The private key, or None when it is encrypted and ``secret`` is missing or wrong."""
    loader = serialization.load_pem_private_key if b"-----BEGIN" in raw else serialization.load_der_private_key
    try:
        return loader(raw, password=secret)
    except TypeError:  # encrypted and no passphrase given (or one given to an unencrypted key)
        if secret is None:
            return None
        return loader(raw, password=None)
    except ValueError:
        if secret is not None:
            return None
        raise UsageError(f"--key {where}: not a private key (PEM or DER), or its passphrase is needed") from None
    except UnsupportedAlgorithm:
        raise UsageError(f"--key {where}: unsupported key algorithm") from None


# -- writing the seal ---------------------------------------------------------------------------------------
def sealed_files(case_path: Path) -> dict[str, str]:
    """sha256 of every report, result and run file (temporary files and links left out), by case-relative path."""
    out: dict[str, str] = {}
    for sub in SEALED_DIRS:
        for dirpath, _dirs, files in os.walk(case_path / sub):
            for name in files:
                full = Path(dirpath, name)
                if name.startswith(".") or full.is_symlink():
                    continue
                out[full.relative_to(case_path).as_posix()] = hash_file(full, ("sha256",))[1]["sha256"]
    return dict(sorted(out.items()))


def seal_document(
    case_path: Path, case_id: str, head: tuple[int, str], signer: Signer, by: str, sealed_at: str | None = None
) -> dict[str, Any]:
    """The content of seal.json for the case as it is now (the caller holds the case lock)."""
    manifest = case_path / "manifest.jsonl"
    size, digest = 0, sha256_bytes(b"")
    if manifest.exists():
        size, d = hash_file(manifest, ("sha256",))
        digest = d["sha256"]
    rows = 0
    if size:
        with open(manifest, "rb") as fh:
            rows = sum(1 for _ in fh)
    return {
        "format": SEAL_FORMAT,
        "case_id": case_id,
        "sealed_by": by,
        "sealed_at": sealed_at or utcnow(),
        "tool": f"{TOOL_NAME} {__version__}",
        "custody_head": {"seq": head[0], "hash": head[1]},
        "case_json_sha256": hash_file(case_path / "case.json", ("sha256",))[1]["sha256"],
        "manifest": {"path": "manifest.jsonl", "size": size, "rows": rows, "sha256": digest},
        "files": sealed_files(case_path),
        "signer": signer.describe(),
    }


def _write_readonly(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)


def write_seal_files(case_path: Path, document: dict[str, Any], signer: Signer) -> dict[str, str]:
    """Sign ``document`` and write the seal's files (replacing an earlier seal's); their sha256 by relpath."""
    data = (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    signature = signer.sign(data)
    folder = case_path / SEAL_DIR
    folder.mkdir(exist_ok=True)
    for rel in SEAL_FILES:  # an earlier seal's files: its hashes stay in the custody log
        with contextlib.suppress(FileNotFoundError):
            (case_path / rel).unlink()
    out = {SEAL_JSON: data}
    if signer.kind == "cms":
        out[CMS_SIGNATURE] = signature
    else:
        out[RAW_SIGNATURE] = signature
        out[PUBLIC_KEY] = signer.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    for rel, blob in out.items():
        _write_readonly(case_path / rel, blob)
    return {rel: sha256_bytes(blob) for rel, blob in out.items()}


# -- a small DER reader for the CMS signature (only what a SignedData needs) ---------------------------------
class _DerError(ValueError):
    pass


@dataclass(frozen=True)
class _Tlv:
    tag: int
    start: int  # header start
    body: int  # content start
    end: int  # content end

    def raw(self, buf: bytes) -> bytes:
        return buf[self.start : self.end]

    def content(self, buf: bytes) -> bytes:
        return buf[self.body : self.end]


def _read_tlv(buf: bytes, pos: int, limit: int) -> _Tlv:
    start = pos
    if pos + 2 > limit:
        raise _DerError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise _DerError("multi-byte tags are not used in CMS")
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > limit:
            raise _DerError("bad length")
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > limit:
        raise _DerError("length runs past its container")
    return _Tlv(tag, start, pos, pos + length)


def _children(buf: bytes, parent: _Tlv) -> list[_Tlv]:
    out: list[_Tlv] = []
    pos = parent.body
    while pos < parent.end:
        child = _read_tlv(buf, pos, parent.end)
        out.append(child)
        pos = child.end
        if len(out) > 10_000:
            raise _DerError("too many elements")
    return out


def _oid(data: bytes) -> str:
    if not data:
        raise _DerError("empty OID")
    parts = [data[0] // 40, data[0] % 40] if data[0] < 80 else [2, data[0] - 80]
    value = 0
    for byte in data[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
_OID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_OID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_OID_SIGNING_TIME = "1.2.840.113549.1.9.5"
_OID_RSA_PSS = "1.2.840.113549.1.1.10"


@dataclass(frozen=True)
class CmsCheck:
    """A CMS signature that verified: the signing certificate, the others it carries, its signing time."""

    cert: x509.Certificate
    others: list[x509.Certificate]
    signing_time: str | None


def verify_cms(signature: bytes, content: bytes) -> CmsCheck:
    """Check a detached DER CMS SignedData over ``content`` (one signer, RSA PKCS#1 v1.5 or ECDSA).

    Raises ValueError saying what does not hold. The certificate's trust is :func:`check_chain`'s.
    """
    try:
        return _verify_cms(signature, content)
    except (_DerError, IndexError) as exc:
        raise ValueError(f"not a CMS signature this tool reads ({exc or 'malformed'})") from None


def _verify_cms(buf: bytes, content: bytes) -> CmsCheck:
    top = _read_tlv(buf, 0, len(buf))
    info = _children(buf, top)
    if _oid(info[0].content(buf)) != _OID_SIGNED_DATA or info[1].tag != 0xA0:
        raise _DerError("not a SignedData")
    signed = _children(buf, _children(buf, info[1])[0])
    certs_el = next((c for c in signed if c.tag == 0xA0), None)
    signer_infos = _children(buf, signed[-1])
    if len(signer_infos) != 1:
        raise _DerError(f"{len(signer_infos)} signers, one expected")
    certs = [x509.load_der_x509_certificate(c.raw(buf)) for c in _children(buf, certs_el)] if certs_el else []
    si = _children(buf, signer_infos[0])
    sid, digest_alg = si[1], _oid(_children(buf, si[2])[0].content(buf))
    idx = 3
    attrs = si[idx] if si[idx].tag == 0xA0 else None
    idx += attrs is not None
    sig_alg = _oid(_children(buf, si[idx])[0].content(buf))
    sig = si[idx + 1].content(buf)
    if digest_alg not in _HASHES:
        raise _DerError(f"digest algorithm {digest_alg} not supported")
    algo = _HASHES[digest_alg]()
    if sid.tag != 0x30:
        raise _DerError("signer named by key identifier; issuer and serial expected")
    issuer, serial = _children(buf, sid)
    serial_no = int.from_bytes(serial.content(buf), "big", signed=True)
    cert = next((c for c in certs if c.serial_number == serial_no and c.issuer.public_bytes() == issuer.raw(buf)), None)
    if cert is None:
        raise ValueError("the signature does not carry its signer's certificate")
    signing_time = None
    if attrs is not None:
        digest: bytes | None = None
        for attr in _children(buf, attrs):
            kids = _children(buf, attr)
            oid, values = _oid(kids[0].content(buf)), _children(buf, kids[1])
            if oid == _OID_MESSAGE_DIGEST:
                digest = values[0].content(buf)
            elif oid == _OID_SIGNING_TIME:
                signing_time = values[0].content(buf).decode("ascii", "replace")
        h = hashes.Hash(algo)
        h.update(content)
        if digest != h.finalize():
            raise ValueError("the signed message digest is not the digest of the content (the content changed)")
        signed_bytes = b"\x31" + attrs.raw(buf)[1:]  # signed attributes are signed as a SET OF
    else:
        signed_bytes = content
    if sig_alg == _OID_RSA_PSS:
        raise ValueError("RSASSA-PSS signatures are not read by this tool")
    public = cert.public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(sig, signed_bytes, padding.PKCS1v15(), algo)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(sig, signed_bytes, ec.ECDSA(algo))
        else:
            raise ValueError(f"signer key type {_key_type(public)} not supported")
    except InvalidSignature:
        raise ValueError("the signature does not match (signed by another key, or the signed data changed)") from None
    return CmsCheck(cert=cert, others=[c for c in certs if c is not cert], signing_time=signing_time)


def check_chain(cert: x509.Certificate, others: list[x509.Certificate], bundle: Path, at: datetime) -> None:
    """The certificate chains to a CA in ``bundle`` at time ``at``; raises ValueError saying why not."""
    from cryptography.x509.verification import ExtensionPolicy, PolicyBuilder, Store, VerificationError

    try:
        roots = x509.load_pem_x509_certificates(bundle.read_bytes())
    except OSError as exc:
        raise UsageError(f"--ca {bundle}: cannot read it ({exc.strerror or exc})") from None
    except ValueError:
        raise UsageError(f"--ca {bundle}: not a PEM bundle of certificates") from None
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(at)
        # a signing certificate, not a TLS one: the CA side keeps the Web PKI rules, the leaf is not held to them
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verifier.verify(cert, others)
    except VerificationError as exc:
        raise ValueError(str(exc)) from None


# -- verify's check ---------------------------------------------------------------------------------------
@dataclass
class SealCheck:
    """What the seal check found; merged into verify's report."""

    status: dict[str, Any] | None = None  # None: the case was never sealed
    problems: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    files: set[str] = field(default_factory=set)  # seal files its custody event accounts for

    def problem(self, where: str, what: str) -> None:
        self.problems.append({"where": where, "problem": what})

    def after(self, where: str, what: str) -> None:
        self.warnings.append({"where": where, "warning": f"after the seal: {what}"})


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else (hostile seal files are read, never trusted)."""
    return value if isinstance(value, dict) else {}


def _details(ev: dict[str, Any]) -> dict[str, Any]:
    return _obj(ev.get("details"))


def _hashes_in(value: Any) -> Iterator[str]:
    """Every sha256-looking string in a custody event's details."""
    if isinstance(value, str):
        if _HEX64.match(value):
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _hashes_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _hashes_in(v)


def _inside(rel: object, tops: tuple[str, ...]) -> bool:
    """A case-relative path under one of ``tops`` that climbs nowhere (hostile seal files name anything)."""
    if not isinstance(rel, str) or rel.startswith("/") or "\\" in rel or "\0" in rel:
        return False
    parts = rel.split("/")
    return len(parts) > 1 and parts[0] in tops and all(p not in ("", ".", "..") for p in parts)


def _current(path: Path) -> str | None:
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            return None
        return hash_file(path, ("sha256",))[1]["sha256"]
    except OSError:
        return None


def _runs(events: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive events of one action, grouped (a collect after the seal writes one per file); exports apart."""
    run: list[dict[str, Any]] = []
    for ev in events:
        if run and (ev.get("action") != run[0].get("action") or ev.get("action") == "export"):
            yield run
            run = []
        run.append(ev)
    if run:
        yield run


def _describe(ev: dict[str, Any]) -> str:
    d = _details(ev)
    what = str(ev.get("action"))
    if what == "export":
        return f"export recorded (to {d.get('to')})"
    return f"{what} by {ev.get('actor')} at {ev.get('ts')}"


def latest_seal(events: Callable[[], Iterable[dict[str, Any]]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The latest ``seal`` event and the events after it, in two streaming passes over the custody log
    (a collection writes an event per file: the log is never held whole)."""
    at = None
    for i, ev in enumerate(events()):
        if ev.get("action") == "seal":
            at = i
    if at is None:
        return None, []
    it = iter(events())
    for _ in range(at):
        next(it, None)
    seal = next(it, None)
    return seal, list(it)


def check_seal(
    case_path: Path, case_id: str, events: Callable[[], Iterable[dict[str, Any]]], ca: Path | None = None
) -> SealCheck:
    """Check the latest seal of a case against its custody event, its signature and the case now.

    ``events``: returns a fresh iterator over the custody events each time it is called.
    """
    check = SealCheck()
    ev, later = latest_seal(events)
    if ev is None:
        if ca is not None:
            check.warnings.append({"where": SEAL_DIR, "warning": "--ca given but the case was never sealed"})
        return check
    d = _details(ev)
    recorded = {rel: v for rel, v in _obj(d.get("files")).items() if _inside(rel, (SEAL_DIR,))}
    check.files = set(recorded)
    for rel, digest in sorted(recorded.items()):
        now = _current(case_path / rel)
        if now is None:
            check.problem(rel, "seal file recorded by the seal event is missing")
        elif now != digest:
            check.problem(rel, f"seal file changed since sealing: the seal event recorded sha256 {digest}, now {now}")
    status: dict[str, Any] = {"sealed": True, "seal_event": ev.get("seq"), "signature_ok": False}
    check.status = status
    try:
        data = (case_path / SEAL_JSON).read_bytes()
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, RecursionError) as exc:
        check.problem(SEAL_JSON, f"cannot read the seal ({exc})")
        return check
    status |= {
        "sealed_by": doc.get("sealed_by"),
        "sealed_at": doc.get("sealed_at"),
        "custody_head": doc.get("custody_head"),
        "files": len(_obj(doc.get("files"))),
        "signer": doc.get("signer"),
    }
    _check_signature(case_path, data, doc, check, ca)
    if doc.get("case_id") != case_id:
        check.problem(SEAL_JSON, f"sealed case id {doc.get('case_id')!r} is not this case's ({case_id!r})")
    head = _obj(doc.get("custody_head"))
    seq = ev.get("seq")
    if head.get("hash") != ev.get("prev") or not isinstance(seq, int) or head.get("seq") != seq - 1:
        check.problem(SEAL_JSON, "the custody head in the seal is not the event before the seal event")
    _check_sealed_state(case_path, doc, later, check)
    return check


def _check_signature(case_path: Path, data: bytes, doc: dict[str, Any], check: SealCheck, ca: Path | None) -> None:
    status = check.status
    assert status is not None
    signer = _obj(doc.get("signer"))
    if signer.get("kind") == "cms":
        try:
            cms = verify_cms((case_path / CMS_SIGNATURE).read_bytes(), data)
        except OSError as exc:
            check.problem(CMS_SIGNATURE, f"cannot read the signature ({exc.strerror or exc})")
            return
        except ValueError as exc:
            check.problem(CMS_SIGNATURE, f"signature does not verify: {exc}")
            return
        subject = cms.cert.subject.rfc4514_string()
        if cms.cert.fingerprint(hashes.SHA256()).hex() != signer.get("cert_sha256"):
            check.problem(CMS_SIGNATURE, "the signing certificate is not the one seal.json names")
            return
        status |= {"signature_ok": True, "signed_by": subject}
        if ca is None:
            status["trust"] = f"signed by {subject}, not checked against a CA"
            return
        try:
            when = datetime.strptime(str(doc.get("sealed_at")), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except ValueError:
            when = datetime.now(UTC)
        try:
            check_chain(cms.cert, cms.others, ca, when)
        except ValueError as exc:
            status["trust"] = f"signed by {subject}, NOT trusted by {ca}: {exc}"
            check.problem(CMS_SIGNATURE, f"the signer's certificate does not chain to a CA in {ca}: {exc}")
            return
        status["trust"] = f"signed by {subject}, certificate chains to a CA in {ca} (at the seal time)"
    elif signer.get("kind") == "ed25519":
        try:
            public = serialization.load_pem_public_key((case_path / PUBLIC_KEY).read_bytes())
            sig = (case_path / RAW_SIGNATURE).read_bytes()
        except (OSError, ValueError) as exc:
            check.problem(PUBLIC_KEY, f"cannot read the public key or the signature ({exc})")
            return
        fingerprint = public_key_fingerprint(public)
        if not isinstance(public, ed25519.Ed25519PublicKey) or fingerprint != signer.get("public_key_sha256"):
            check.problem(PUBLIC_KEY, "the public key is not the one whose fingerprint seal.json gives")
            return
        try:
            public.verify(sig, data)
        except InvalidSignature:
            check.problem(RAW_SIGNATURE, "signature does not verify (signed by another key, or seal.json changed)")
            return
        status |= {"signature_ok": True, "signed_by": f"Ed25519 key SHA256 {fingerprint}"}
        status["trust"] = (
            f"signed by Ed25519 key SHA256 {fingerprint}, not checked against a known key (compare the fingerprint)"
        )
    else:
        check.problem(SEAL_JSON, f"unknown signature kind {signer.get('kind')!r}")


def _check_sealed_state(case_path: Path, doc: dict[str, Any], later: list[dict[str, Any]], check: SealCheck) -> None:
    """The sealed hashes against the case now: what later commands account for is "after the seal"."""
    writes = [ev for ev in later if ev.get("action") not in READ_ONLY_ACTIONS]
    for run in _runs(ev for ev in later if ev.get("action") != "verify"):
        first, last = run[0], run[-1]
        if len(run) == 1:
            check.after(f"custody.jsonl event {first.get('seq')}", _describe(first))
        else:
            where = f"custody.jsonl events {first.get('seq')}-{last.get('seq')}"
            check.after(where, f"{len(run)} {first.get('action')} events from {first.get('ts')} to {last.get('ts')}")
    accounted: set[str] = set()
    for ev in writes:
        if ev.get("action") in ("collect", "collect_start", "collect_end"):
            continue  # evidence events: they account for manifest rows, never for sealed report or result files
        d = _details(ev)
        accounted.update(_hashes_in(d))
        if ev.get("action") == "analyze" and isinstance(d.get("run_record"), str):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                body = load_json((case_path / d["run_record"]).read_text(encoding="utf-8"))
                accounted.update(_hashes_in(body.get("results")))
    sealed = {rel: v for rel, v in _obj(doc.get("files")).items() if _inside(rel, SEALED_DIRS)}
    if len(sealed) != len(_obj(doc.get("files"))):
        check.problem(SEAL_JSON, "the seal lists files outside report/, results/ and runs/")
    notes: dict[tuple[str, str], list[str]] = {}  # (folder, what) -> files: a new analyze rewrites thousands
    for rel, digest in sorted(sealed.items()):
        now = _current(case_path / rel)
        if now == digest:
            continue
        if now is None:
            if writes:
                gone = "no longer in the case (replaced by a later command)"
                notes.setdefault((rel.split("/", 1)[0], gone), []).append(rel)
            else:
                check.problem(rel, "sealed file is missing and no later command accounts for it")
        elif now in accounted:
            notes.setdefault((rel.split("/", 1)[0], "rewritten by a later command"), []).append(rel)
        else:
            check.problem(rel, f"sealed file edited after the seal: sealed sha256 {digest}, now {now}")
    for rel in sealed_files(case_path):
        if rel not in sealed:
            notes.setdefault((rel.split("/", 1)[0], "new since the seal"), []).append(rel)
    for (top, what), rels in sorted(notes.items()):
        names = ", ".join(rels[:5]) + (f" and {len(rels) - 5} more" if len(rels) > 5 else "")
        check.after(f"{top}/", f"{len(rels)} {'file' if len(rels) == 1 else 'files'} {what}: {names}")
    _check_manifest(case_path, doc, writes, check)
    if _current(case_path / "case.json") != doc.get("case_json_sha256"):
        check.problem("case.json", "case.json differs from the sealed one")


def _check_manifest(case_path: Path, doc: dict[str, Any], writes: list[dict[str, Any]], check: SealCheck) -> None:
    """manifest.jsonl is append-only: the sealed prefix must hash as sealed; rows after it are later collects."""
    m = _obj(doc.get("manifest"))
    size = m.get("size")
    if not isinstance(size, int) or size < 0:
        check.problem(SEAL_JSON, "the seal gives no manifest size")
        return
    path = case_path / "manifest.jsonl"
    h = hashlib.sha256()
    try:
        total = path.stat().st_size if path.exists() else 0
        if total < size:
            check.problem("manifest.jsonl", f"shorter than when sealed ({total} bytes, sealed {size})")
            return
        if size:
            with open(path, "rb") as fh:
                left = size
                while left:
                    chunk = fh.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    h.update(chunk)
                    left -= len(chunk)
    except OSError as exc:
        check.problem("manifest.jsonl", f"cannot read it ({exc.strerror or exc})")
        return
    if h.hexdigest() != m.get("sha256"):
        check.problem("manifest.jsonl", "the sealed manifest rows were changed after the seal")
    elif total > size:
        check.after("manifest.jsonl", f"{total - size} bytes of manifest rows added (a later collect)")
