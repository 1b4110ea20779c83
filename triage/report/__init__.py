"""Assembling analyzer results into the findings table, the ED 21-02 ledger and the report files."""

from triage.report.build import (
    ReportOptions,
    ReportResult,
    build_report,
    load_findings,
    load_runs,
    neutralise_formulas,
    report_context,
)

__all__ = [
    "ReportOptions",
    "ReportResult",
    "build_report",
    "load_findings",
    "load_runs",
    "neutralise_formulas",
    "report_context",
]
