"""`triage report` on the terminal: the HTML path and a short ledger summary."""

from __future__ import annotations

from triage.case import Case
from triage.cli import main
from triage.errors import ExitCode
from triage.report.summary import main as summary_main
from triage.runner import analyze_case


def test_report_prints_html_path_and_ledger(case: Case, capsys) -> None:
    analyze_case(case, only=("webshell_locations",))
    case.close()
    assert main(["report", str(case.path)]) == ExitCode.OK
    out = capsys.readouterr().out
    html = case.path / "report" / "report.html"
    assert out.rstrip().splitlines()[-1] == f"report: {html}"
    assert "ED 21-02 ledger: 37 steps per host" in out
    assert "  EXCH01: compromised (CVE-2021-26858, CVE-2021-27065);" in out
    assert "not done:" in out and "3 memory acquired" in out
    assert summary_main([str(case.path)]) == 0
    again = capsys.readouterr().out
    assert again.splitlines()[0].startswith("ED 21-02 ledger") and "EXCH01: compromised" in again
    assert summary_main([str(case.path / "nope")]) == 1
