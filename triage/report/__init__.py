"""Assembling analyzer results into the findings table and its exports."""

from triage.report.build import ReportResult, build_report, load_findings, load_runs, neutralise_formulas

__all__ = ["ReportResult", "build_report", "load_findings", "load_runs", "neutralise_formulas"]
