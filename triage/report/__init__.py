"""Assembling analyzer results into the findings table, the ED 21-02 ledger and the report files."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # loaded on first use (PEP 562): the pandas-free parts (triage.report.result) load alone
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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("triage.report.build"), name)
    globals()[name] = value
    return value
