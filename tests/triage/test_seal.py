"""Sealing a case (``triage seal``), checking the seal (``triage verify``) and the submission package
(``triage export``): a self-made CA and examiner certificate, the real openssl binary, byte-identical exports."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.app.report import ReportRequest, report
from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode
from triage.seal import CMS_SIGNATURE, PASSPHRASE_ENV, PUBLIC_KEY, RAW_SIGNATURE, SEAL_JSON, verify_cms
from triage.testing.pki import Issued, ed25519_key, issue, make_ca
from triage.testing.volume import VolumeSpec, build_volume

OPENSSL = shutil.which("openssl")
SHA256SUM = shutil.which("sha256sum")


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collected and reported case, built once (the report takes seconds); tests work on copies."""
    root = tmp_path_factory.mktemp("sealed")
    volume = build_volume(root / "vol", VolumeSpec())
    case = Case.create_or_open(root / "case", examiner="tester", case_id="CASE-SEAL-1")
    collect_volume(case, open_source_path(str(volume)), host=None)
    case.close()
    report(ReportRequest(case=root / "case"))
    return root / "case"


@pytest.fixture
def case_dir(reported: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "case"
    shutil.copytree(reported, dest, symlinks=True)
    return dest


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Issued]:
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder)
    return {
        "ca": ca,
        "ec": issue(ca, folder, "Examiner EC"),
        "rsa": issue(ca, folder, "Examiner RSA", algorithm="rsa"),
        "ed": ed25519_key(folder),
        "other_ca": make_ca(_sub(folder, "other"), cn="Another CA"),
    }


def _sub(folder: Path, name: str) -> Path:
    (folder / name).mkdir(exist_ok=True)
    return folder / name


def _seal(case: Path, who: Issued, *extra: str) -> int:
    args = ["seal", str(case), "--key", str(who.key_path), "--by", "Dana Examiner", "-q"]
    if who.cert_path is not None:
        args += ["--cert", str(who.cert_path)]
    return main([*args, *extra])


def _verify_json(case: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["verify", str(case), "--json", "-q", *extra])
    return code, json.loads(capsys.readouterr().out)


# -- seal and verify ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["ec", "rsa"])
def test_cms_seal_round_trip_and_openssl_accepts_it(
    algorithm: str, case_dir: Path, pki: dict[str, Issued], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _seal(case_dir, pki[algorithm]) == ExitCode.OK
    doc = json.loads((case_dir / SEAL_JSON).read_text())
    assert doc["sealed_by"] == "Dana Examiner" and doc["case_id"] == "CASE-SEAL-1"
    assert set(doc["files"]) >= {"report/report.html", "report/findings.parquet", "report/ledger.json"}
    assert doc["signer"]["subject"].startswith(f"CN=Examiner {algorithm.upper()},")
    events = [json.loads(line) for line in (case_dir / "custody.jsonl").read_text().splitlines()]
    seal_ev = events[-1]
    assert seal_ev["action"] == "seal"
    assert doc["custody_head"] == {"seq": events[-2]["seq"], "hash": events[-2]["hash"]}
    from triage.hashing import sha256_bytes

    assert seal_ev["details"]["seal_sha256"] == sha256_bytes((case_dir / SEAL_JSON).read_bytes())
    assert stat.S_IMODE(os.stat(case_dir / SEAL_JSON).st_mode) == 0o444

    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.OK, out["problems"]
    assert out["seal"]["sealed_by"] == "Dana Examiner" and out["seal"]["signature_ok"] is True
    assert out["seal"]["trust"] == f"signed by {doc['signer']['subject']}, not checked against a CA"
    code, out = _verify_json(case_dir, capsys, "--ca", str(pki["ca"].cert_path))
    assert code == ExitCode.OK and "chains to a CA" in out["seal"]["trust"]
    assert out["warnings"] == []  # the verify events in between are not changes
    code, out = _verify_json(case_dir, capsys, "--ca", str(pki["other_ca"].cert_path))
    assert code == ExitCode.INTEGRITY
    assert out["problems"][0]["where"] == CMS_SIGNATURE and "does not chain" in out["problems"][0]["problem"]

    if OPENSSL is None:
        pytest.skip("openssl is not installed: the third-party check of the CMS signature did not run")
    cmd = [OPENSSL, "cms", "-verify", "-binary", "-inform", "DER", "-in", str(case_dir / CMS_SIGNATURE)]
    cmd += ["-content", str(case_dir / SEAL_JSON), "-out", os.devnull]
    ok = subprocess.run([*cmd, "-CAfile", str(pki["ca"].cert_path)], capture_output=True, text=True)
    assert ok.returncode == 0 and "Verification successful" in ok.stderr, ok.stderr
    assert subprocess.run([*cmd, "-noverify"], capture_output=True).returncode == 0
    tampered = case_dir.parent / "seal-edited.json"
    tampered.write_bytes((case_dir / SEAL_JSON).read_bytes().replace(b"Dana", b"Mara"))
    bad = [*cmd[:-4], "-content", str(tampered), "-out", os.devnull, "-CAfile", str(pki["ca"].cert_path)]
    assert subprocess.run(bad, capture_output=True).returncode != 0


def test_ed25519_seal_round_trip(case_dir: Path, pki: dict[str, Issued], capsys: pytest.CaptureFixture[str]) -> None:
    assert _seal(case_dir, pki["ed"]) == ExitCode.OK
    doc = json.loads((case_dir / SEAL_JSON).read_text())
    pub = (
        pki["ed"]
        .key.public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    from triage.hashing import sha256_bytes

    assert doc["signer"]["public_key_sha256"] == sha256_bytes(pub)
    assert (case_dir / RAW_SIGNATURE).stat().st_size == 64 and (case_dir / PUBLIC_KEY).is_file()
    assert not (case_dir / CMS_SIGNATURE).exists()
    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.OK, out["problems"]
    assert out["seal"]["signed_by"] == f"Ed25519 key SHA256 {sha256_bytes(pub)}"
    if OPENSSL:  # the raw signature is checkable without triage too
        r = subprocess.run(
            [OPENSSL, "pkeyutl", "-verify", "-pubin", "-inkey", str(case_dir / PUBLIC_KEY), "-rawin",
             "-in", str(case_dir / SEAL_JSON), "-sigfile", str(case_dir / RAW_SIGNATURE)],
            capture_output=True, text=True,
        )  # fmt: skip
        assert r.returncode == 0 and "Signature Verified Successfully" in r.stdout, r.stderr


def test_edited_report_file_after_the_seal_is_an_integrity_failure(
    case_dir: Path, pki: dict[str, Issued], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _seal(case_dir, pki["ec"]) == ExitCode.OK
    target = case_dir / "report" / "ledger.csv"
    os.chmod(target, 0o644)
    target.write_bytes(target.read_bytes().replace(b"not done", b"done", 1))
    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.INTEGRITY
    sealed = [p for p in out["problems"] if p["problem"].startswith("sealed file edited after the seal")]
    assert [p["where"] for p in sealed] == ["report/ledger.csv"]


def test_analyze_after_the_seal_is_a_warning(
    case_dir: Path, pki: dict[str, Issued], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _seal(case_dir, pki["ed"]) == ExitCode.OK
    assert main(["analyze", str(case_dir), "--only", "webshell_locations", "-j", "1", "-q"]) == ExitCode.OK
    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.OK, out["problems"]
    texts = [w["warning"] for w in out["warnings"]]
    assert any(t.startswith("after the seal: analyze by ") for t in texts), texts
    new = "new since the seal: results/webshell_locations/"
    assert any(t.startswith("after the seal: ") and new in t for t in texts), texts
    assert out["seal"]["signature_ok"] is True


def test_edited_seal_or_signature_is_caught(
    case_dir: Path, pki: dict[str, Issued], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _seal(case_dir, pki["rsa"]) == ExitCode.OK
    sig = case_dir / CMS_SIGNATURE
    os.chmod(sig, 0o644)
    data = bytearray(sig.read_bytes())
    data[-5] ^= 0x01  # inside the signature value
    sig.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="signature does not match"):
        verify_cms(bytes(data), (case_dir / SEAL_JSON).read_bytes())
    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.INTEGRITY
    wheres = {p["where"]: p["problem"] for p in out["problems"]}
    assert wheres[CMS_SIGNATURE].startswith("signature does not verify")
    # hostile signature bytes cost only the check
    for junk in (b"", b"\x30\x84\xff\xff\xff\xff", b"\x30\x03\x06\x01\x00", os.urandom(200)):
        with pytest.raises(ValueError):
            verify_cms(junk, b"x")


def test_keys_never_enter_the_case(
    case_dir: Path,
    pki: dict[str, Issued],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ca = pki["ca"]
    signer = issue(ca, tmp_path, "Examiner Locked", passphrase=b"correct horse battery")
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO())  # not a terminal: nobody to ask
    assert _seal(case_dir, signer) == ExitCode.USAGE
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    assert _seal(case_dir, signer) == ExitCode.USAGE
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery")
    assert _seal(case_dir, signer) == ExitCode.OK
    loud = ["seal", str(case_dir), "--key", str(pki["ed"].key_path), "--by", "Dana Examiner", "-v", "-v"]
    assert main(loud) == ExitCode.OK  # a reseal replaces the files
    assert main([*loud, "--json"]) == ExitCode.OK
    printed = capsys.readouterr()
    assert "PRIVATE KEY" not in printed.out + printed.err and "correct horse" not in printed.out + printed.err
    secrets = [
        signer.key_path.read_bytes(),
        signer.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
        pki["ed"].key_path.read_bytes(),
        pki["ed"].key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption()),
        b"correct horse battery",
        b"PRIVATE KEY",
    ]  # fmt: skip
    for path in case_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for secret in secrets:
                assert secret not in blob, f"key material in {path}"


def test_seal_refuses_a_case_that_does_not_verify(case_dir: Path, pki: dict[str, Issued]) -> None:
    target = case_dir / "report" / "findings.csv"
    os.chmod(target, 0o644)
    target.write_text("edited")
    assert _seal(case_dir, pki["ec"]) == ExitCode.INTEGRITY
    assert not (case_dir / "seal").exists()
    assert main(["seal", str(case_dir), "--key", str(pki["rsa"].key_path), "--by", "X", "-q"]) == ExitCode.USAGE
    mismatch = ["--key", str(pki["ec"].key_path), "--cert", str(pki["rsa"].cert_path), "--by", "X", "-q"]
    assert main(["seal", str(case_dir), *mismatch]) == ExitCode.USAGE
    no_key = ["--key", str(case_dir / "nope.pem"), "--by", "X", "-q"]
    assert main(["seal", str(case_dir), *no_key]) == ExitCode.USAGE
    not_a_key = ["--key", str(case_dir / "case.json"), "--by", "X", "-q"]
    assert main(["seal", str(case_dir), *not_a_key]) == ExitCode.USAGE


# -- export ------------------------------------------------------------------------------------------------
def test_export_is_byte_identical_and_checks_with_sha256sum(
    case_dir: Path, pki: dict[str, Issued], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _seal(case_dir, pki["ec"]) == ExitCode.OK
    first, second = tmp_path / "one.zip", tmp_path / "two.zip"
    assert main(["export", str(case_dir), "--to", str(first), "-q"]) == ExitCode.OK
    assert main(["verify", str(case_dir), "-q"]) == ExitCode.OK
    assert main(["export", str(case_dir), "--to", str(second), "-q"]) == ExitCode.OK
    assert first.read_bytes() == second.read_bytes()
    assert main(["export", str(case_dir), "--to", str(first), "-q"]) == ExitCode.USAGE  # never overwrites

    with zipfile.ZipFile(first) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) and i.external_attr >> 16 == 0o100444 for i in zf.infolist())
        root = names[0].split("/")[0]
        assert root == "CASE-SEAL-1"
        inner = {n.split("/", 1)[1] for n in names}
        assert {"MANIFEST.json", "SHA256SUMS", "custody.jsonl", "manifest.jsonl", "case.json", SEAL_JSON,
                CMS_SIGNATURE, "report/report.html", "report/ledger.csv", "report/cisa_template.csv",
                "report/findings.stix.json"} <= inner  # fmt: skip
        manifest = json.loads(zf.read(f"{root}/MANIFEST.json"))
        zf.extractall(tmp_path / "unzipped")
    assert manifest["state"]["verify"] == "OK" and manifest["state"]["seal"]["sealed_by"] == "Dana Examiner"
    # the exported custody log ends at the seal: later verify/export events only read the case
    last = json.loads((tmp_path / "unzipped" / root / "custody.jsonl").read_text().splitlines()[-1])
    assert last["action"] == "seal" and manifest["custody_through"]["hash"] == last["hash"]

    # the export is recorded, and the sealed verdict changes only by that note
    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.OK
    notes = [w["warning"] for w in out["warnings"]]
    assert notes == [f"after the seal: export recorded (to {first})", f"after the seal: export recorded (to {second})"]

    if SHA256SUM is None:
        pytest.skip("sha256sum is not installed")
    r = subprocess.run([SHA256SUM, "-c", "SHA256SUMS"], cwd=tmp_path / "unzipped" / root, capture_output=True)
    assert r.returncode == 0, r.stdout
    assert r.stdout.decode().count(": OK") == len(names) - 1


def test_export_to_a_folder_and_refusals(case_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "package"
    assert main(["export", str(case_dir), "--to", str(out), "-q"]) == ExitCode.OK
    sums = (out / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == sum(1 for p in out.rglob("*") if p.is_file()) - 1
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in out.rglob("*") if p.is_file())
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["state"] == {"verify": "OK", "sealed": False}
    assert main(["export", str(case_dir), "--to", str(case_dir / "report" / "x.zip"), "-q"]) == ExitCode.USAGE
    assert main(["verify", str(case_dir), "-q"]) == ExitCode.OK  # nothing stray was left in the case


def test_collect_after_the_seal_is_listed_and_manifest_growth_noted(
    case_dir: Path, pki: dict[str, Issued], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _seal(case_dir, pki["ec"]) == ExitCode.OK
    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "late.aspx").write_text('<%@ Page Language="C#" %><script runat="server">void P(){}</script>')
    assert main(["collect", str(loose), "--case", str(case_dir), "--host", "EXCH01", "-q"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["verify", str(case_dir)]) == ExitCode.OK
    text = capsys.readouterr().out
    assert "sealed by Dana Examiner at " in text
    assert "not checked against a CA" in text
    assert "after the seal: " in text and " collect" in text
    assert "bytes of manifest rows added (a later collect)" in text


def test_an_interrupted_seal_is_cleaned_up_by_the_next(
    case_dir: Path, pki: dict[str, Issued], capsys: pytest.CaptureFixture[str]
) -> None:
    from triage.seal import load_signer, seal_document, write_seal_files

    signer = load_signer(pki["ed"].key_path, None, lambda: None)
    doc = seal_document(case_dir, "CASE-SEAL-1", (1, "0" * 64), signer, "Killed Before Event")
    write_seal_files(case_dir, doc, signer)  # files written, the custody event never was
    (case_dir / "seal" / ".seal.json.tmp-999999").write_text("partial")
    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.INTEGRITY and out["seal"] is None
    assert {p["where"] for p in out["problems"]} == {SEAL_JSON, RAW_SIGNATURE, PUBLIC_KEY}
    assert _seal(case_dir, pki["ec"]) == ExitCode.OK
    recovered = [
        json.loads(line)["details"]["file"]
        for line in (case_dir / "custody.jsonl").read_text().splitlines()
        if json.loads(line)["action"] == "recover"
    ]
    assert sorted(recovered) == sorted(["seal/.seal.json.tmp-999999", SEAL_JSON, RAW_SIGNATURE, PUBLIC_KEY])
    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.OK and out["seal"]["sealed_by"] == "Dana Examiner"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xff\xfe not json",
        b"[" * 100_000,
        b'"a string"',
        b'{"files": 5, "signer": [], "manifest": "x", "custody_head": 3, "case_id": null}',
        b'{"files": {"/etc/passwd": "x", "report/../../x": "y"}, "signer": {"kind": "cms"}, "manifest": {"size": -1}}',
        b'{"signer": {"kind": "ed25519", "public_key_sha256": 7}, "manifest": {"size": 99999999999}}',
    ],
)
def test_a_hostile_seal_file_is_reported_never_raised(
    body: bytes, case_dir: Path, pki: dict[str, Issued], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _seal(case_dir, pki["ed"]) == ExitCode.OK
    target = case_dir / SEAL_JSON
    os.chmod(target, 0o644)
    target.write_bytes(body)
    code, out = _verify_json(case_dir, capsys)
    assert code == ExitCode.INTEGRITY
    assert out["problems"][0]["where"] == SEAL_JSON
    assert out["problems"][0]["problem"].startswith("seal file changed since sealing")
    assert "passwd" not in json.dumps(out["seal"])
