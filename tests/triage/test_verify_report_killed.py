"""A report killed mid-way verifies as incomplete (6) until rerun; report files nobody started stay tampering (3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from triage.case import Case
from triage.errors import ExitCode
from triage.report import build_report
from triage.verify import verify_case


class _Killed(Exception):
    """Stands for the SIGKILL: the process stops before the report's end event is written."""


def _case(tmp_path: Path) -> Case:
    case = Case.create_or_open(tmp_path / "case", examiner="tester")
    case.custody.append("collect_begin", collect_id="c1", sources=["/src"])
    case.custody.append("collect_end", collect_id="c1", write_failures=0)
    return case


def _report(case: Case, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
    """Build the report; with ``monkeypatch``, die right before its end event, after every file was written."""
    if monkeypatch is not None:
        real = case.custody.append

        def append(action: str, **details):
            if action == "report":
                raise _Killed
            return real(action, **details)

        monkeypatch.setattr(case.custody, "append", append)
        with pytest.raises(_Killed):
            build_report(case, html=False, stix=False, xlsx=False)
        monkeypatch.undo()
    else:
        build_report(case, html=False, stix=False, xlsx=False)


def test_report_records_begin_and_end_with_one_id(tmp_path: Path) -> None:
    case = _case(tmp_path)
    _report(case)
    events = list(case.custody.events())
    begin, end = events[-2], events[-1]
    assert (begin["action"], end["action"]) == ("report_begin", "report")
    assert begin["details"]["report_id"] == end["details"]["report_id"]
    assert verify_case(case, record=False).exit_code == ExitCode.OK


def test_first_report_killed_is_incomplete_then_rerun_verifies(tmp_path: Path, monkeypatch) -> None:
    case = _case(tmp_path)
    _report(case, monkeypatch)
    written = sorted(p.name for p in (case.path / "report").iterdir())
    assert "findings.parquet" in written and "ledger.json" in written
    rep = verify_case(case, record=False)
    assert rep.exit_code == ExitCode.INCOMPLETE, rep.problems
    assert not rep.problems
    assert sorted(p["where"] for p in rep.incomplete) == [f"report/{n}" for n in written]
    assert all("report that never finished" in p["problem"] for p in rep.incomplete)
    _report(case)  # the rerun redoes the report and accounts for its files
    assert verify_case(case, record=False).exit_code == ExitCode.OK


def test_second_report_killed_over_a_finished_one_is_incomplete(tmp_path: Path, monkeypatch) -> None:
    case = _case(tmp_path)
    _report(case)
    # the killed report rewrites the files the finished one recorded (new generation time, new bytes)
    _report(case, monkeypatch)
    rep = verify_case(case, record=False)
    assert rep.exit_code == ExitCode.INCOMPLETE and not rep.problems, rep.problems
    assert any(p["where"] == "report/ledger.json" and "rewritten" in p["problem"] for p in rep.incomplete)
    # a report never deletes a file: a missing one is still a problem, even while a report is unfinished
    os.unlink(case.path / "report" / "findings.csv")
    rep = verify_case(case, record=False)
    assert rep.exit_code == ExitCode.INTEGRITY
    assert [p["where"] for p in rep.problems] == ["report/findings.csv"]
    _report(case)
    assert verify_case(case, record=False).exit_code == ExitCode.OK


def test_report_file_nobody_started_stays_integrity(tmp_path: Path) -> None:
    case = _case(tmp_path)
    (case.path / "report").mkdir(exist_ok=True)
    (case.path / "report" / "findings.csv").write_text("planted\n")
    rep = verify_case(case, record=False)
    assert rep.exit_code == ExitCode.INTEGRITY
    assert rep.problems[0]["where"] == "report/findings.csv"
    # after a finished report, a planted file or a changed one is tampering too
    _report(case)
    (case.path / "report" / "extra.html").write_text("<p>planted</p>")
    path = case.path / "report" / "ledger.json"
    path.write_text(path.read_text() + " ")
    rep = verify_case(case, record=False)
    assert rep.exit_code == ExitCode.INTEGRITY and not rep.incomplete
    assert sorted(p["where"] for p in rep.problems) == ["report/extra.html", "report/ledger.json"]
