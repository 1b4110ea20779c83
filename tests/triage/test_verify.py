from __future__ import annotations

import json
import os
import stat

from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode
from triage.verify import verify_case


def _first(case: Case, kind: str):
    return next(r for r in case.evidence() if r.kind == kind)


def test_clean_case_verifies_and_records_it(case: Case) -> None:
    rep = verify_case(case)
    assert rep.ok, rep.problems
    assert rep.artifacts_checked == len(case.evidence()) == 18
    last = list(case.custody.events())[-1]
    assert last["action"] == "verify" and last["details"]["ok"] is True


def test_changed_artifact_is_named(case: Case) -> None:
    row = _first(case, "suspicious_file")
    path = case.path / row.relpath
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    rep = verify_case(case)
    assert not rep.ok
    assert [p["where"] for p in rep.problems] == [f"{row.artifact_id} {row.relpath}"] * 2
    assert rep.problems[0]["problem"].startswith(f"sha256 changed: manifest {row.sha256}, now ")
    # writable evidence is a failure in itself, not a warning
    assert rep.problems[1]["problem"] == "artifact is writable (evidence copies are read-only)"
    assert rep.exit_code == ExitCode.INTEGRITY


def test_missing_and_extra_files(case: Case) -> None:
    row = _first(case, "web_file")
    (case.path / row.relpath).unlink()
    extra = case.path / "evidence" / "EXCH01" / "web_file" / "planted.aspx"
    extra.write_text("x")
    problems = {p["where"]: p["problem"] for p in verify_case(case).problems}
    assert problems[f"{row.artifact_id} {row.relpath}"] == "artifact is missing"
    assert problems["evidence/EXCH01/web_file/planted.aspx"].startswith("file in evidence/ that no manifest row")


def test_edited_manifest_row_is_caught(case: Case) -> None:
    lines = case.manifest_path.read_text().splitlines()
    row = json.loads(lines[0])
    row["source_path"] = "/somewhere/else"
    lines[0] = json.dumps(row)
    case.manifest_path.write_text("\n".join(lines) + "\n")
    problems = verify_case(case).problems
    assert problems == [
        {
            "where": f"manifest.jsonl line 1 ({row['artifact_id']})",
            "problem": "manifest row differs from the custody record",
        }
    ]


def test_cli_verify_exit_codes(case: Case, capsys) -> None:
    assert main(["verify", str(case.path), "-q"]) == ExitCode.OK
    lines = case.custody.path.read_text().splitlines()
    ev = json.loads(lines[2])
    ev["actor"] = "someone-else"
    lines[2] = json.dumps(ev)
    case.custody.path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["verify", str(case.path), "--json", "-q"]) == ExitCode.INTEGRITY
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert out["problems"][0] == {
        "where": "custody.jsonl line 3",
        "problem": "event was edited: its hash does not match its content",
    }
