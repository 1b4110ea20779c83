"""What the Exchange analyzers share: the log files of a unit, time formatting, limits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from analyzers.exchange.logs import UNKNOWN, ParseStats, log_type, sniff_log_type
from triage.case import ManifestRow
from triage.lazyimport import lazy_module
from triage.registry import Unit, logical_path

if TYPE_CHECKING:
    import pandas as pd
else:  # loaded on first use: a host whose evidence gives this module no work skips without them
    pd = lazy_module("pandas")

# a datetime, not a pandas Timestamp (which importing this module would load pandas for); both compare alike
ED_WINDOW_START = datetime(2021, 1, 1, tzinfo=UTC)
MAX_PER_CHECK = 500  # individual findings per check (or rule) and unit; the rest go into one overflow finding
MAX_UNIT_WARNINGS = 300
TPL_REFERENCE = "https://github.com/microsoft/CSS-Exchange/blob/main/Security/src/Test-ProxyLogon.ps1"
AA21_062A = "https://www.cisa.gov/news-events/cybersecurity-advisories/aa21-062a"


@dataclass(frozen=True)
class LogFile:
    """One collected log: where its bytes are, where it was on the host, and what kind of log it is."""

    path: Path
    logical: str
    logtype: str
    kind: str = ""
    row: ManifestRow | None = None

    @property
    def name(self) -> str:
        """The file name on the source host."""
        return PurePosixPath(self.logical).name

    @classmethod
    def of(cls, unit: Unit, row: ManifestRow) -> LogFile:
        """The log file of a unit's evidence row (its type from the path, else from its header)."""
        logical = logical_path(row)
        path = unit.member_path(row)
        kind = log_type(logical, row.kind)
        if kind == UNKNOWN and row.kind in ("exchange_log", "iis_log"):
            kind = sniff_log_type(path)  # e.g. logs collected as loose files, without their folders
        return cls(path, logical, kind, row.kind, row)


def unit_files(unit: Unit) -> list[LogFile]:
    """The unit's artifacts as log files (a host unit's members, or the single evidence item)."""
    rows = unit.members or [unit.evidence]
    return sorted((LogFile.of(unit, r) for r in rows), key=lambda f: f.logical.lower())


def iso(ts: Any) -> str:
    """A UTC timestamp as ISO 8601 with milliseconds and Z (empty for missing)."""
    if ts is None or ts is pd.NaT or (isinstance(ts, float) and pd.isna(ts)):
        return ""
    t = pd.Timestamp(ts)
    if pd.isna(t):
        return ""
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def report_parse_problems(unit: Unit, stats: Iterable[tuple[str, ParseStats]], limit: int = 20) -> None:
    """Copy what went wrong while reading logs into the unit's warnings.

    One summary line per damaged file, then up to ``limit`` line-level details per file while the unit
    holds fewer than ``MAX_UNIT_WARNINGS`` (a run record must stay readable on thousands of files).
    """
    for logical, st in stats:
        if st.malformed_lines or st.replaced_chars or st.header_source in ("first line", "assumed default"):
            unit.warn(
                f"{logical}: {st.malformed_lines} malformed lines ({st.ragged_rows} kept with a wrong field "
                f"count, {st.dropped_lines} dropped), {st.replaced_chars} undecodable bytes replaced, "
                f"header from {st.header_source or 'nowhere'}"
            )
            if len(unit.warnings) < MAX_UNIT_WARNINGS:
                for w in st.warnings[:limit]:
                    unit.warn(f"{logical}: {w}")


def file_failed(failures: list[str] | None, logical: str, exc: BaseException) -> None:
    """Record that one file of a host unit broke its reader; the unit goes on with the others.

    What was read from the file before the error stays (those lines are real); the rest of it is lost
    and this warning says so, so no result reads as if the file was examined whole.
    """
    if failures is not None:
        failures.append(
            f"{logical}: reading stopped at an error ({type(exc).__name__}: {short(exc, 200)}); "
            "the rest of this file was not examined"
        )


def safe_ts(value: Any) -> pd.Timestamp | None:
    """A log field as a UTC timestamp, or None when it is not one (damaged lines must not raise)."""
    if value is None or value == "":
        return None
    ts = pd.to_datetime(value, utc=True, errors="coerce", format="ISO8601")
    return None if pd.isna(ts) else ts


def short(value: Any, limit: int = 300) -> str:
    """Text for a message or attribute, cut at ``limit`` characters."""
    text = "" if value is None or value is pd.NA else str(value)
    return text if len(text) <= limit else text[:limit] + "..."
