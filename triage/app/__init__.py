"""The application layer: collect, analyze, report, verify, run, seal and export over a case or a fleet folder.

Typed requests in, typed summaries out; no argument parsing and no printing. Progress and messages go
through a :class:`~triage.app.progress.Progress` the caller passes (the command line draws rich bars on
stderr; :class:`~triage.app.progress.NullProgress` shows nothing). Every summary carries the ``exit_code``
the command line exits with. Over a fleet folder, use the ``*_fleet`` functions (``is_fleet_folder`` tells).
"""

from __future__ import annotations

from triage.app.analyze import AnalyzeRequest, AnalyzeSummary, ExecutorRequest, analyze, executor_for
from triage.app.attest import AttestRequest, AttestSummary, attest
from triage.app.catalog import Catalog, catalog
from triage.app.collect import CollectRequest, CollectSummary, NothingExaminable, collect
from triage.app.export import ExportRequest, ExportSummary, export
from triage.app.fleet import (
    FleetAnalyzeSummary,
    FleetReportSummary,
    FleetRunSummary,
    FleetVerifyResult,
    analyze_fleet,
    report_fleet,
    verify_fleet,
)
from triage.app.options import RuleInputs, analyzer_options
from triage.app.progress import LogProgress, NullProgress, Progress
from triage.app.report import ReportRequest, ReportSummary, report
from triage.app.run import RunRequest, RunSummary, run
from triage.app.seal import SealRequest, SealSummary, seal
from triage.app.verify import VerifyRequest, VerifyResult, verify
from triage.fleet import is_fleet_folder

__all__ = [
    "AnalyzeRequest",
    "AnalyzeSummary",
    "AttestRequest",
    "AttestSummary",
    "Catalog",
    "CollectRequest",
    "CollectSummary",
    "ExecutorRequest",
    "ExportRequest",
    "ExportSummary",
    "FleetAnalyzeSummary",
    "FleetReportSummary",
    "FleetRunSummary",
    "FleetVerifyResult",
    "LogProgress",
    "NothingExaminable",
    "NullProgress",
    "Progress",
    "ReportRequest",
    "ReportSummary",
    "RuleInputs",
    "RunRequest",
    "RunSummary",
    "SealRequest",
    "SealSummary",
    "VerifyRequest",
    "VerifyResult",
    "analyze",
    "analyze_fleet",
    "analyzer_options",
    "attest",
    "catalog",
    "collect",
    "executor_for",
    "export",
    "is_fleet_folder",
    "report",
    "report_fleet",
    "run",
    "seal",
    "verify",
    "verify_fleet",
]
