"""Honest verdicts end to end: unread evidence is never clean; exit codes 4 and 1 and their precedence."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from triage.cli import main
from triage.errors import ExitCode
from triage.report.build import outcome
from triage.testing.volume import VolumeSpec, build_volume


def test_exit_code_precedence() -> None:
    lacking = {"max_severity": "high", "hosts": {"EX1": {"verdict": "insufficient evidence", "missing": ["m"]}}}
    clean = {"max_severity": "info", "hosts": {"EX2": {"verdict": "no indications found", "missing": []}}}
    assert outcome([clean], None) == (ExitCode.OK, "")
    assert outcome([clean], "info") == (ExitCode.FINDINGS, "findings at or above info (worst: info)")
    assert outcome([clean, lacking], None) == (ExitCode.INSUFFICIENT, "insufficient evidence for a verdict on EX1: m")
    # findings first: the evidence that was read already answers the question --fail-on asks
    assert outcome([clean, lacking], "high") == (ExitCode.FINDINGS, "findings at or above high (worst: high)")
    assert outcome([lacking], "critical")[0] == ExitCode.INSUFFICIENT


def _ledger(case: Path) -> dict[str, dict[str, str]]:
    data = json.loads((case / "report" / "ledger.json").read_text(encoding="utf-8"))
    return {e["step"]: e for e in data["entries"]}


@pytest.mark.slow
def test_junk_source_is_insufficient_evidence_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "junk"
    src.mkdir()
    (src / "blob.dat").write_bytes(os.urandom(4096))
    (src / "notes.txt").write_text("collected by hand\n")
    case = tmp_path / "case"
    # nothing examinable at all: refused before a case is made, exit 4 with the reason, never a verdict
    code = main(["run", str(src), "--as", "files", "--host", "EXJUNK", "--case", str(case), "--json", "-q"])
    assert code == ExitCode.INSUFFICIENT == 4
    assert capsys.readouterr().out == "" and not (case / "case.json").exists()
    # one examinable file (a plain page) beside the junk: a case and a report, whose verdict says what is missing
    (src / "default.aspx").write_text('<%@ Page Language="C#" %>\n<html><body>Hello</body></html>\n')
    code = main(["run", str(src), "--as", "files", "--host", "EXJUNK", "--case", str(case), "--json", "-q"])
    assert code == ExitCode.INSUFFICIENT == 4
    out = json.loads(capsys.readouterr().out)
    host = out["report"]["hosts"]["EXJUNK"]
    assert host["verdict"] == "insufficient evidence"
    assert host["missing"] == [
        "Windows event logs: absent (none collected)",
        "registry hives: absent (none collected)",
        "IIS web logs: absent (none collected)",
        "Exchange logs (HttpProxy, ECP, OAB generator): absent (none collected)",
    ]
    assert out["report"]["exit_reason"].startswith("insufficient evidence for a verdict on EXJUNK: Windows event logs")
    steps = _ledger(case)
    assert [steps[s]["status"] for s in ("8", "9", "10", "11", "22")] == [
        "not done",
        "not done",
        "not done",
        "not applicable",
        "not done",
    ]
    assert "no indications found" not in (case / "report" / "report.html").read_text(encoding="utf-8")
    html = (case / "report" / "report.html").read_text(encoding="utf-8")
    assert "insufficient evidence" in html and "Evidence examined" in html
    cisa = (case / "report" / "cisa_template.csv").read_text(encoding="utf-8")
    assert "not run: no script output in the evidence and no Exchange logs parsed" in cisa
    # the report alone says the same
    assert main(["report", str(case), "-q"]) == 4
    # --fail-on first: with findings at or above it the exit is 1; here there are none, so still 4
    assert main(["report", str(case), "-q", "--fail-on", "info"]) == 4


@pytest.mark.slow
def test_junk_memory_image_is_not_examined_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Random bytes taken for a memory image: only the raw byte scan ran, so memory is not examined (step 9)."""
    src = tmp_path / "EXJUNK-memory.raw"
    src.write_bytes(os.urandom(2 << 20))
    case = tmp_path / "case"
    code = main(["run", str(src), "--as", "memory", "--host", "EXJUNK", "--case", str(case), "--json", "-q"])
    assert code == ExitCode.INSUFFICIENT
    host = json.loads(capsys.readouterr().out)["report"]["hosts"]["EXJUNK"]
    assert host["verdict"] == "insufficient evidence"
    steps = _ledger(case)
    assert [steps[s]["status"] for s in ("8", "9", "10", "11")] == ["not done"] * 4
    assert host["coverage"]["memory"] == "not examined"
    assert any(m.startswith("memory") and "not examined" in m for m in host["missing"]), host["missing"]


@pytest.fixture(scope="module")
def no_event_logs_case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("noevt")
    vol = build_volume(root / "vol", VolumeSpec(hostname="EXCH09", compromised=False, event_logs=False))
    case = root / "case"
    assert main(["run", str(vol), "--case", str(case), "-q"]) == 4
    return case


@pytest.mark.slow
def test_volume_without_event_logs_has_no_clean_verdict(no_event_logs_case: Path) -> None:
    case = no_event_logs_case
    data = json.loads((case / "report" / "ledger.json").read_text(encoding="utf-8"))
    assert data["verdicts"]["EXCH09"]["verdict"] == "insufficient evidence"
    steps = _ledger(case)
    assert steps["8"]["status"] == "not done" and "not parsed: Windows event logs (absent)" in steps["8"]["result"]
    assert steps["10"]["status"] == "not done"
    # the Exchange logs were parsed, so the offline Test-ProxyLogon checks ran (not the script)
    assert steps["22"]["status"] == "done"
    cisa = (case / "report" / "cisa_template.csv").read_text(encoding="utf-8")
    assert "offline equivalent checks: the script's checks over" in cisa
    assert "Yes (no indications of compromise found)" not in cisa


@pytest.mark.slow
def test_fail_on_findings_takes_precedence(no_event_logs_case: Path) -> None:
    # the synthetic build verdict and coverage findings are info: --fail-on info sees them first
    assert main(["report", str(no_event_logs_case), "-q", "--fail-on", "info"]) == ExitCode.FINDINGS
    assert main(["report", str(no_event_logs_case), "-q", "--fail-on", "critical"]) == ExitCode.INSUFFICIENT
