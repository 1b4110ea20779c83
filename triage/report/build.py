"""The minimal report: ``findings.parquet`` (canonical), ``findings.csv`` and a summary."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from triage.case import Case
from triage.finding import FINDING_COLUMNS, SEVERITIES, coerce_findings, findings_frame
from triage.hashing import hash_file

log = logging.getLogger(__name__)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


@dataclass
class ReportResult:
    """Where the report went and what it holds."""

    outputs: dict[str, str] = field(default_factory=dict)
    findings: int = 0
    by_severity: dict[str, int] = field(default_factory=dict)
    by_analyzer: dict[str, int] = field(default_factory=dict)
    runs: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    max_severity: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def neutralise_formulas(value: object) -> object:
    """Make a cell that a spreadsheet would evaluate (=, +, -, @ ...) read as text."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def load_runs(case: Case) -> pd.DataFrame:
    """All unit run records of the case as a frame."""
    recs = []
    for path in sorted((case.path / "results").glob("*/*.run.json")):
        try:
            recs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            log.warning("unreadable run record %s: %s", path, exc)
    cols = [
        "analyzer",
        "analyzer_version",
        "evidence_id",
        "host",
        "status",
        "findings",
        "duration_s",
        "message",
    ]
    return pd.DataFrame.from_records(recs, columns=[*cols, *(k for k in (recs[0] if recs else {}) if k not in cols)])


def load_findings(case: Case, warnings: list[str] | None = None) -> pd.DataFrame:
    """Every unit's findings, one typed frame, deduplicated by finding_id."""
    frames = []
    for path in sorted((case.path / "results").glob("*/*.parquet")):
        try:
            frames.append(coerce_findings(pd.read_parquet(path)))
        except Exception as exc:  # a damaged result file must not hide the others
            msg = f"unreadable result file {path.relative_to(case.path)}: {exc}"
            log.warning(msg)
            if warnings is not None:
                warnings.append(msg)
    frames = [f for f in frames if len(f)]
    df = pd.concat(frames, ignore_index=True) if frames else findings_frame([])
    df = coerce_findings(df)
    df = df.drop_duplicates("finding_id", keep="first")
    df = df.sort_values(
        ["severity", "ts", "analyzer", "rule_id", "location"],
        ascending=[False, True, True, True, True],
        na_position="last",
        kind="stable",
    )
    return df.reset_index(drop=True)


def build_report(case: Case) -> ReportResult:
    """Write the report files and record them in the custody log."""
    result = ReportResult()
    out = case.path / "report"
    out.mkdir(exist_ok=True)
    df = load_findings(case, result.warnings)
    parquet = out / "findings.parquet"
    df.to_parquet(parquet, index=False)
    csv = out / "findings.csv"
    text_cols = [c for c in FINDING_COLUMNS if c not in ("ts", "severity")]
    safe = df.copy()
    for col in text_cols:
        safe[col] = safe[col].map(neutralise_formulas, na_action="ignore")
    safe.to_csv(csv, index=False)
    result.outputs = {"findings.parquet": str(parquet), "findings.csv": str(csv)}
    result.findings = len(df)
    counts = df["severity"].value_counts()
    result.by_severity = {s: int(counts.get(s, 0)) for s in reversed(SEVERITIES)}
    result.by_analyzer = {str(k): int(v) for k, v in df["analyzer"].value_counts().sort_index().items()}
    present = [s for s in SEVERITIES if result.by_severity.get(s)]
    result.max_severity = present[-1] if present else None
    runs = load_runs(case)
    if len(runs):
        table = runs.groupby(["analyzer", "status"]).size().unstack(fill_value=0)
        result.runs = {str(a): {str(s): int(n) for s, n in row.items() if n} for a, row in table.iterrows()}
    case.custody.append(
        "report",
        findings=result.findings,
        by_severity=result.by_severity,
        outputs={Path(p).name: hash_file(p, ("sha256",))[1]["sha256"] for p in result.outputs.values()},
    )
    return result
