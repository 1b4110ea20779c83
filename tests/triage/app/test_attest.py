"""``triage.app.attest``: attestations recorded through the case's evidence path, in the ledger, verified."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from triage import app
from triage.app.attest import AttestRequest, attest
from triage.case import Case
from triage.errors import ExitCode, UsageError
from triage.hashing import hash_file
from triage.report.attest import FILE_KIND, AttestationFileError, AttestationInput

HOST = "EX02"


def _case(tmp_path: Path) -> Path:
    """A small case: one server page collected as a loose file for host EX02."""
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "errorFF.aspx").write_text("<%@ Page %>")
    case = tmp_path / "case"
    app.collect(app.CollectRequest((str(tmp_path / "loose"),), case, host=HOST, as_type="files"), app.NullProgress())
    return case


def _state(case: Path) -> tuple[bytes, bytes, list[str]]:
    files = sorted(p.relative_to(case).as_posix() for p in (case / "evidence").rglob("*") if p.is_file())
    return (case / "custody.jsonl").read_bytes(), (case / "manifest.jsonl").read_bytes(), files


def _ledger(case: Path) -> dict:
    app.report(app.ReportRequest(case))
    return json.loads((case / "report" / "ledger.json").read_text())


@pytest.mark.slow  # two reports of a small case: about 8 s here
def test_attest_report_complete_and_verify(tmp_path: Path) -> None:
    case = _case(tmp_path)
    first = _ledger(case)
    open_steps = first["completeness"][HOST]["open_steps"]
    assert not first["completeness"][HOST]["complete"] and "2" in open_steps and "24" in open_steps
    fw = tmp_path / "sheet" / "fw-export.txt"
    fw.parent.mkdir()
    fw.write_bytes(b"deny ip any any\n" * 100)
    # the agency's sheet: every open step, the firewall step with its export, a later row superseding one
    rows = ["step,host,status,by,note,files,result"]
    for s in open_steps:
        status, files = ("not-applicable", "") if s == "17" else ("done", "fw-export.txt" if s == "24" else "")
        rows.append(f"{s},{HOST},{status},J. Doe (ISSO),reviewed {s},{files},")
    rows.append(f"2,{HOST},done,A. Smith (CIO),expertise confirmed again,,")
    sheet = tmp_path / "sheet" / "attestations.csv"
    sheet.write_text("\n".join(rows) + "\n")

    s = attest(AttestRequest(case, sheet=sheet))
    assert s.exit_code == ExitCode.OK and len(s.recorded) == len(open_steps) + 1 and s.files_stored == 1

    # the file went through the evidence path: hashed copy, read-only, manifest row, custody event
    c = Case.open(case)
    (row,) = [r for r in c.manifest() if r.kind == FILE_KIND]
    c.close()
    assert row.sha256 == hash_file(fw, ("sha256",))[1]["sha256"] and row.source_host == HOST
    assert row.relpath == f"evidence/{HOST}/{FILE_KIND}/step-24/fw-export.txt"
    assert not os.stat(case / row.relpath).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    events = [json.loads(x) for x in (case / "custody.jsonl").read_text().splitlines()]
    att24 = next(e for e in events if e["action"] == "attest" and e["details"]["step"] == "24")
    assert att24["details"]["files"][0]["sha256"] == row.sha256 and att24["details"]["by"] == "J. Doe (ISSO)"
    assert att24["details"]["source"].startswith("attestations.csv row ")
    assert any(e["action"] == "collect" and e["details"]["artifact_id"] == row.artifact_id for e in events)

    ledger = _ledger(case)
    done = ledger["completeness"][HOST]
    assert done["complete"] and done["text"] == "complete" and done["conflicts"] == []
    by_step = {e["step"]: e for e in ledger["entries"]}
    assert by_step["2"]["attestation"]["by"] == "A. Smith (CIO)" and len(by_step["2"]["superseded"]) == 1
    assert by_step["24"]["basis"] == "attestation" and by_step["24"]["machine_status"] == "needs manual attestation"
    assert by_step["17"]["status"] == "not applicable"
    assert by_step["22"]["cisa"] == ["SD v1 triage 2"]
    csv_text = (case / "report" / "ledger.csv").read_text()
    assert "fw-export.txt sha256 " + row.sha256 in csv_text and "SD v1 hardening 1a" in csv_text
    html = (case / "report" / "report.html").read_text()
    assert "A. Smith (CIO)" in html and "ledger <span" in html and "SD v1 triage 2" in html

    assert app.verify(app.VerifyRequest(case), app.NullProgress()).exit_code == ExitCode.OK
    # a changed attestation file is an integrity failure
    target = case / row.relpath
    os.chmod(target, 0o644)
    target.write_bytes(b"permit ip any any\n")
    v = app.verify(app.VerifyRequest(case), app.NullProgress())
    assert v.exit_code == ExitCode.INTEGRITY
    assert any(row.artifact_id in p["where"] and "sha256 changed" in p["problem"] for p in v.report.problems)


def test_bad_row_applies_nothing(tmp_path: Path) -> None:
    case = _case(tmp_path)
    before = _state(case)
    sheet = tmp_path / "att.yaml"
    sheet.write_text(
        "- {step: 24, status: done, by: J. Doe, note: ok}\n"
        "- {step: 24, status: finished, by: J. Doe, note: ok}\n"  # entry 2: bad status
    )
    with pytest.raises(UsageError, match=r"att.yaml entry 2: status 'finished'") as exc:
        attest(AttestRequest(case, sheet=sheet))
    assert exc.value.exit_code == ExitCode.USAGE and "entry 1" not in str(exc.value)
    assert _state(case) == before


def test_unreadable_file_applies_nothing(tmp_path: Path) -> None:
    case = _case(tmp_path)
    before = _state(case)
    good = tmp_path / "good.txt"
    good.write_text("x")
    single = AttestationInput("24", "done", "J. Doe", "ok", files=(str(good), str(tmp_path / "gone.txt")))
    with pytest.raises(AttestationFileError, match=r"gone\.txt") as exc:
        attest(AttestRequest(case, single=single))
    assert exc.value.exit_code == ExitCode.COLLECTION_FAILED
    assert _state(case) == before  # the readable file was not stored either


def test_fleet_sheet_rows_go_to_their_host_cases(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    for host in ("EX1", "EX2"):
        src = tmp_path / f"src-{host}"
        src.mkdir()
        (src / "errorFF.aspx").write_text(f"<%@ Page %> {host}")
        req = app.CollectRequest((str(src),), root / "hosts" / host, host=host, as_type="files")
        app.collect(req, app.NullProgress())
    assert app.is_fleet_folder(root)
    sheet = tmp_path / "att.csv"
    sheet.write_text("step,host,status,by,note\n2,*,done,A. Smith,expertise\n24,EX2,not-done,J. Doe,no firewall\n")
    s = attest(AttestRequest(root, sheet=sheet))
    assert sorted((a.host, a.step, a.status) for a in s.recorded) == [
        ("EX1", "2", "done"),
        ("EX2", "2", "done"),
        ("EX2", "24", "not done"),
    ]
    ex1 = (root / "hosts" / "EX1" / "custody.jsonl").read_text()
    assert ex1.count('"action": "attest"') == 1 and '"step": "24"' not in ex1
    bad = tmp_path / "bad.csv"
    bad.write_text("step,host,status,by,note\n2,EX3,done,A,b\n")
    before = [(root / "hosts" / h / "custody.jsonl").read_bytes() for h in ("EX1", "EX2")]
    with pytest.raises(UsageError, match=r"bad\.csv row 2: host .EX3. is not in this case"):
        attest(AttestRequest(root, sheet=bad))
    assert [(root / "hosts" / h / "custody.jsonl").read_bytes() for h in ("EX1", "EX2")] == before


def test_edited_attestation_event_fails_verify(tmp_path: Path) -> None:
    case = _case(tmp_path)
    s = attest(
        AttestRequest(case, single=AttestationInput("15", "not-done", "J. Doe", "not disconnected"), examiner="clerk7")
    )
    assert (s.recorded[0].by, s.recorded[0].recorded_by) == ("J. Doe", "clerk7")
    log = case / "custody.jsonl"
    text = log.read_text()
    assert text.count('"note": "not disconnected"') == 1
    log.write_text(text.replace('"note": "not disconnected"', '"note": "disconnected at 10:00"'))
    v = app.verify(app.VerifyRequest(case), app.NullProgress())
    assert v.exit_code == ExitCode.INTEGRITY  # the hash chain vouches for every attestation
