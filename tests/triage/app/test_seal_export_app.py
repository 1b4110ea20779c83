"""The application layer of seal and export: typed requests in, typed summaries out, progress through the caller."""

from __future__ import annotations

import json
from pathlib import Path

from triage import app
from triage.case import Case
from triage.errors import ExitCode
from triage.testing.pki import ed25519_key


def test_seal_then_export_through_the_app_layer(case: Case, tmp_path: Path, progress) -> None:
    case.close()
    signer = ed25519_key(tmp_path, passphrase=b"s3cret")
    asked: list[int] = []

    def passphrase() -> bytes:
        asked.append(1)
        return b"s3cret"

    s = app.seal(app.SealRequest(case=case.path, key=signer.key_path, by="Dana", passphrase=passphrase), progress)
    assert asked == [1] and s.exit_code == ExitCode.OK
    d = s.as_dict()
    assert d["case_id"] == "CASE-TEST" and d["sealed_by"] == "Dana" and d["sealed_files"] == 0
    assert set(d["seal_files"]) == {"seal/seal.json", "seal/seal.json.sig", "seal/seal.pub.pem"}
    assert ("bytes", "verifying before the seal") in progress.bars
    assert progress.advanced["verifying before the seal"] > 0  # the evidence was re-hashed before signing

    e = app.export(app.ExportRequest(case=case.path, to=tmp_path / "pkg.zip"), progress)
    out = e.as_dict()
    assert out["format"] == "zip" and out["to"] == str(tmp_path / "pkg.zip") and e.exit_code == ExitCode.OK
    assert out["state"]["sealed"] is True and out["state"]["seal"]["sealed_by"] == "Dana"
    assert out["state"]["changes_after_seal"] == {"events": 0, "by_action": {}, "first": None, "last": None}
    assert out["recorded"].startswith("export event ")
    last = json.loads(case.custody.path.read_text().splitlines()[-1])
    assert last["action"] == "export" and last["details"]["sha256"] == out["sha256"]
