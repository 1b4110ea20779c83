"""Report a case: the findings report, the ED 21-02 ledger and the exports, and the exit code they decide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.errors import ExitCode

if TYPE_CHECKING:  # pandas and the report modules load with the first report, not with the request types
    from triage.case import Case
    from triage.report import ReportOptions
    from triage.report.build import ReportResult


@dataclass(frozen=True)
class ReportRequest:
    """What ``triage report`` is asked."""

    case: Path
    fail_on: str | None = None  # exit 1 for a finding at or above this severity
    command_line: str | None = None  # recorded in the report's provenance (passwords already hidden)
    rule_dirs: tuple[str, ...] = ()  # the extra rule folders the analysis used, as named
    jobs: int = 1  # processes for the host reports of a fleet folder


@dataclass
class ReportSummary:
    """What the report holds and where it went, and the exit code of the command."""

    case: Path
    case_id: str
    result: ReportResult
    exit_code: ExitCode = ExitCode.OK
    exit_reason: str = ""  # why the exit code is not 0

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        return self.result.as_dict() | ({"exit_reason": self.exit_reason} if self.exit_reason else {})


def report(request: ReportRequest) -> ReportSummary:
    """Build the report of the request's case."""
    from triage.case import Case

    case = Case.open(request.case)
    with case.writer():  # one writer at a time
        summary = report_into(case, request)
    case.close()
    return summary


def report_options(request: ReportRequest) -> ReportOptions:
    from triage.report import ReportOptions

    return ReportOptions(command_line=request.command_line, rule_dirs=request.rule_dirs)


def report_into(case: Case, request: ReportRequest) -> ReportSummary:
    """Report an open case whose writer lock the caller holds."""
    from triage.report import build_report
    from triage.report.build import outcome

    res = build_report(case, report_options(request))
    code, reason = outcome([res.as_dict()], request.fail_on)
    return ReportSummary(case=case.path, case_id=case.case_id, result=res, exit_code=code, exit_reason=reason)
