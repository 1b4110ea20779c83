"""Everything a report is rendered from, gathered once: findings, manifest, runs, directive, options."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from triage.case import ManifestRow
from triage.custody import load_json
from triage.finding import SEVERITIES, storable_value

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "artifact_id",
    "source_host",
    "kind",
    "outcome",
    "family",
    "source_path",
    "relpath",
    "size",
    "sha256",
    "md5",
    "sha1",
    "storage",
    "source_type",
    "collector",
    "collected_at",
    "source_mtime",
    "details",
]
STORED = ("success", "empty")
UNKNOWN_HOST = "(no host)"


@dataclass
class ReportOptions:
    """Limits and inputs of one report build (the limits keep the HTML and XLSX usable on huge cases)."""

    html_max_findings: int = 5000
    html_max_artifacts: int = 3000
    xlsx_max_rows: int = 10_000  # per area sheet; the most severe are kept
    stix_max_observed: int = 1000
    ledger_max_ids: int = 1000
    ledger_max_artifacts: int = 5000  # per ledger row; counts always cover all
    command_line: str | None = None
    rule_dirs: tuple[str, ...] = ()


def manifest_frame(rows: list[ManifestRow]) -> pd.DataFrame:
    """The manifest as a frame with fixed columns (empty cases included)."""
    df = pd.DataFrame.from_records([_storable_row(r) for r in rows], columns=[*MANIFEST_COLUMNS, "extra"])
    for col in MANIFEST_COLUMNS:
        if col != "size":
            # plain objects, not arrow strings: the ledger iterates and filters these rows a lot
            df[col] = df[col].astype(object).where(df[col].notna(), None)
    df["size"] = pd.to_numeric(df["size"], errors="coerce").astype("Int64")
    df["source_host"] = df["source_host"].fillna(UNKNOWN_HOST).replace("", UNKNOWN_HOST)
    return df


def _storable_row(row: ManifestRow) -> dict[str, Any]:
    """A manifest row with source names escaped for display, their raw bytes as hex in ``extra["raw_hex"]``."""
    raw: dict[str, str] = {}
    d = storable_value(row.as_dict(), raw)
    if raw:
        d["extra"] = {**(d.get("extra") or {}), "raw_hex": raw}
    return d


def parse_attributes(value: object) -> dict[str, Any]:
    """A finding's attributes as a dict; anything that is not a JSON object becomes ``{}``."""
    if not isinstance(value, str) or not value:
        return {}
    try:
        out = load_json(value)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


@dataclass
class ReportContext:
    """The inputs of every renderer; derived views are computed once and cached."""

    case_id: str
    case_info: dict[str, Any]
    findings: pd.DataFrame
    manifest: pd.DataFrame
    runs: pd.DataFrame
    directive: Any  # triage.report.directive.Directive
    generated: str
    options: ReportOptions = field(default_factory=ReportOptions)
    warnings: list[str] = field(default_factory=list)
    case_path: str = ""
    table: Any = None  # the findings as an Arrow table, in the frame's order (None: only the frame is known)

    @cached_property
    def host_column(self) -> pd.Series:
        """Each finding's host, with empty hosts under one placeholder name."""
        return self.findings["host"].fillna("").replace("", UNKNOWN_HOST).astype(str)

    @cached_property
    def hosts(self) -> list[str]:
        """Every host the case knows: from the manifest and from findings."""
        names = set(self.manifest["source_host"].dropna().astype(str)) | set(self.host_column.unique())
        return sorted(names, key=lambda h: (h == UNKNOWN_HOST, h.lower()))

    @cached_property
    def servers(self) -> list[str]:
        """The hosts the ledger and the CISA rows speak of (findings without a host are no server)."""
        real = [h for h in self.hosts if h != UNKNOWN_HOST]
        return real or self.hosts

    @cached_property
    def stored(self) -> pd.DataFrame:
        """Manifest rows whose bytes are in (or referenced by) the case."""
        m = self.manifest
        return m[m["outcome"].isin(STORED) & m["relpath"].notna()]

    @cached_property
    def kind_of(self) -> dict[str, str]:
        """artifact_id -> evidence kind."""
        m = self.manifest
        return dict(zip(m["artifact_id"].astype(str), m["kind"].astype(str), strict=False))

    @cached_property
    def severity_codes(self) -> np.ndarray:
        """Severity as 0 (info) .. 4 (critical), -1 where missing."""
        return self.findings["severity"].cat.codes.to_numpy()

    @cached_property
    def step_sets(self) -> pd.Series:
        from triage.report.directive import _split_sets

        return _split_sets(self.findings["ed2102_steps"])

    @cached_property
    def combos(self) -> tuple[pd.DataFrame, np.ndarray]:
        """Distinct (host, rule_id, tags, steps, analyzer) rows and each finding's index into them.

        Selectors are evaluated on the distinct combinations (few) and gathered back to findings
        (many), which keeps the ledger linear and cheap on million-finding cases.
        """
        cols = {
            "host": self.host_column,
            "rule_id": self.findings["rule_id"].fillna("").astype(str),
            "tags": self.findings["tags"].fillna("").astype(str),
            "ed2102_steps": self.findings["ed2102_steps"].fillna("").astype(str),
            "analyzer": self.findings["analyzer"].fillna("").astype(str),
        }
        frame = pd.DataFrame(cols)
        codes = frame.groupby(list(cols), sort=False).ngroup().to_numpy()
        uniq = frame.drop_duplicates().reset_index(drop=True)
        return uniq, codes

    def factorized(self, column: str) -> tuple[np.ndarray, list[Any]]:
        """(codes per finding, distinct values) of a column; -1 codes missing values.

        Codes keep memory flat on big cases, where a column of Python strings would not.
        """
        cache = self.__dict__.setdefault("_factorized", {})
        if column not in cache:
            col = self.host_column if column == "host" else self.findings[column]
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
            cache[column] = (np.asarray(codes), [None if pd.isna(u) else str(u) for u in uniques])
        return cache[column]

    def code_of(self, column: str, value: str) -> int:
        """The factorize code of ``value`` in ``column`` (-2 when absent, which matches nothing)."""
        lookup = self.__dict__.setdefault("_code_lookup", {})
        if column not in lookup:
            lookup[column] = {v: i for i, v in enumerate(self.factorized(column)[1])}
        return lookup[column].get(value, -2)

    def distinct(self, column: str, rows: np.ndarray) -> list[str]:
        """The distinct non-missing values of ``column`` among ``rows``."""
        codes, uniques = self.factorized(column)
        picked = np.unique(codes[rows]) if len(rows) else np.zeros(0, dtype=int)
        return [uniques[c] for c in picked if c >= 0 and uniques[c] is not None]

    def take(self, column: str, rows: np.ndarray | list[int]) -> list[Any]:
        """Python values of ``column`` at ``rows`` (for short row lists)."""
        if not len(rows):  # most ledger steps of most hosts: no pandas call for nothing
            return []
        s = self.findings[column].iloc[np.asarray(rows, dtype=np.int64)]
        return [None if pd.isna(v) else v for v in s.tolist()]

    def severity_name(self, code: int) -> str | None:
        return SEVERITIES[code] if 0 <= code < len(SEVERITIES) else None
