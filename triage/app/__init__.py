"""The application layer: collect, analyze, report, verify, run, seal and export over a case or a fleet folder.

Typed requests in, typed summaries out; no argument parsing and no printing. Progress and messages go
through a :class:`~triage.app.progress.Progress` the caller passes (the command line draws rich bars on
stderr; :class:`~triage.app.progress.NullProgress` shows nothing). Every summary carries the ``exit_code``
the command line exits with. Over a fleet folder, use the ``*_fleet`` functions (``is_fleet_folder`` tells).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below load with their module on first use: `triage --help` pays for none
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

# name -> module that defines it (loaded on first access, PEP 562)
_WHERE = {
    "AnalyzeRequest": "triage.app.analyze",
    "AnalyzeSummary": "triage.app.analyze",
    "ExecutorRequest": "triage.app.analyze",
    "analyze": "triage.app.analyze",
    "executor_for": "triage.app.analyze",
    "Catalog": "triage.app.catalog",
    "catalog": "triage.app.catalog",
    "CollectRequest": "triage.app.collect",
    "CollectSummary": "triage.app.collect",
    "NothingExaminable": "triage.app.collect",
    "collect": "triage.app.collect",
    "FleetAnalyzeSummary": "triage.app.fleet",
    "FleetReportSummary": "triage.app.fleet",
    "FleetRunSummary": "triage.app.fleet",
    "FleetVerifyResult": "triage.app.fleet",
    "analyze_fleet": "triage.app.fleet",
    "report_fleet": "triage.app.fleet",
    "verify_fleet": "triage.app.fleet",
    "RuleInputs": "triage.app.options",
    "analyzer_options": "triage.app.options",
    "LogProgress": "triage.app.progress",
    "NullProgress": "triage.app.progress",
    "Progress": "triage.app.progress",
    "ReportRequest": "triage.app.report",
    "ReportSummary": "triage.app.report",
    "report": "triage.app.report",
    "RunRequest": "triage.app.run",
    "RunSummary": "triage.app.run",
    "run": "triage.app.run",
    "VerifyRequest": "triage.app.verify",
    "VerifyResult": "triage.app.verify",
    "verify": "triage.app.verify",
    "AttestRequest": "triage.app.attest",
    "AttestSummary": "triage.app.attest",
    "attest": "triage.app.attest",
    "ExportRequest": "triage.app.export",
    "ExportSummary": "triage.app.export",
    "export": "triage.app.export",
    "SealRequest": "triage.app.seal",
    "SealSummary": "triage.app.seal",
    "seal": "triage.app.seal",
    "is_fleet_folder": "triage.fleet",
}

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


class _LazyPackage(types.ModuleType):
    """Keeps ``app.collect`` (etc.) the function when the submodule of the same name loads.

    Loading ``triage.app.collect`` would bind the submodule over the name; it stays reachable in ``sys.modules``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _WHERE.get(name) == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first use (pandas, pyarrow and engines load only when needed)."""
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from triage.lazyimport import settled_imports

    with settled_imports():
        value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


sys.modules[__name__].__class__ = _LazyPackage
