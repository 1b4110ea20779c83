"""Assembling analyzer results into the findings table, the ED 21-02 ledger and the report files."""

from __future__ import annotations

from typing import Any

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
    # loaded on first use: the text-export worker processes import a submodule of this package without
    # the pandas-backed builder
    if name in __all__:
        from triage.report import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
