"""The one finding schema, its dtype map, and the run record of an analysis unit."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import pandas as pd

SEVERITIES = ("info", "low", "medium", "high", "critical")
SEVERITY_DTYPE = pd.CategoricalDtype(list(SEVERITIES), ordered=True)
RUN_STATUSES = ("success", "no_findings", "skipped", "error")


def finding_id(analyzer: str, rule_id: str, evidence_sha256: str, location: str) -> str:
    """The dedupe key: the same rule on the same bytes at the same place is the same finding."""
    raw = "\x1f".join((analyzer, rule_id, evidence_sha256, location)).encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:32]


def _utc(ts: datetime | str | None) -> datetime | None:
    if ts is None or ts == "":
        return None
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A flat, typed record of something an analyzer found. Scalars only; details go in ``attributes``."""

    analyzer: str
    analyzer_version: str
    rule_id: str
    rule_title: str
    severity: str
    title: str
    message: str
    evidence_id: str
    evidence_path: str
    evidence_sha256: str
    location: str = ""
    host: str = ""
    case_id: str = ""
    confidence: str = "medium"  # low | medium | high
    ts: datetime | None = None
    ts_desc: str = ""
    mitre: str = ""  # comma separated technique ids, e.g. "T1505.003"
    cve: str = ""  # comma separated
    ed2102_steps: str = ""  # comma separated checklist step numbers
    tags: str = ""
    references: str = ""
    attributes: str = "{}"  # JSON object with the per-source details
    finding_id: str = field(default="")

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")
        object.__setattr__(self, "ts", _utc(self.ts))
        if not isinstance(self.attributes, str):
            object.__setattr__(
                self,
                "attributes",
                json.dumps(self.attributes, sort_keys=True, default=str, ensure_ascii=False),
            )
        for name in ("mitre", "cve", "ed2102_steps", "tags", "references"):
            value = getattr(self, name)
            if isinstance(value, list | tuple | set):
                object.__setattr__(self, name, ",".join(str(v) for v in value))
        if not self.finding_id:
            object.__setattr__(
                self,
                "finding_id",
                finding_id(self.analyzer, self.rule_id, self.evidence_sha256, self.location),
            )


FINDING_COLUMNS = [f.name for f in fields(Finding)]
# One dtype map builds every frame, empty ones included, so concatenation never changes types.
FINDING_DTYPES: dict[str, Any] = {name: "string" for name in FINDING_COLUMNS}
FINDING_DTYPES.update({"severity": SEVERITY_DTYPE, "ts": "datetime64[us, UTC]"})


def findings_frame(findings: Iterable[Finding | dict[str, Any]]) -> pd.DataFrame:
    """Build the canonical findings DataFrame (typed, ordered columns) from records."""
    rows = [asdict(f) if isinstance(f, Finding) else f for f in findings]
    if not rows:  # most units find nothing: a cached typed frame saves ~13 ms of dtype casts per unit
        global _EMPTY
        if _EMPTY is None:
            _EMPTY = coerce_findings(pd.DataFrame(columns=FINDING_COLUMNS))
        return _EMPTY.copy()
    df = pd.DataFrame.from_records(rows, columns=FINDING_COLUMNS)
    return coerce_findings(df)


_EMPTY: pd.DataFrame | None = None


def coerce_findings(df: pd.DataFrame) -> pd.DataFrame:
    """Give any frame of findings the canonical columns and dtypes."""
    for col in FINDING_COLUMNS:
        if col not in df.columns:
            df[col] = None
    df = df[FINDING_COLUMNS].copy()
    df["ts"] = pd.to_datetime(df["ts"], utc=True, errors="coerce").astype("datetime64[us, UTC]")
    for col, dtype in FINDING_DTYPES.items():
        if col != "ts":
            df[col] = df[col].astype(dtype)
    return df


@dataclass
class RunRecord:
    """What happened when one analyzer ran over one evidence item."""

    analyzer: str
    analyzer_version: str
    evidence_id: str
    evidence_sha256: str
    host: str
    status: str
    started: str
    finished: str
    duration_s: float
    findings: int = 0
    warnings: list[str] = field(default_factory=list)
    message: str = ""
    traceback: str = ""
    result_path: str = ""
    result_sha256: str = ""
    fingerprint: str = ""  # analyzer version + rules + options (see Analyzer.fingerprint)
    worker: str = ""  # host:pid of the process that ran the unit ("" in records of older versions)
    run_id: str = ""  # the analyze run that wrote this record (runs/<run_id>.json)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
