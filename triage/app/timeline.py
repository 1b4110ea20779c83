"""The super-timeline of a case: every parsed event, findings as tags, Timesketch JSONL and plaso-style CSV."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from triage.app.progress import Progress
from triage.case import Case
from triage.errors import ExitCode, UsageError
from triage.timeline import FORMATS, TimelineOptions, TimelineResult, build_timeline


@dataclass(frozen=True)
class TimelineRequest:
    """What ``triage timeline`` is asked: the case, an optional window (inclusive), formats and folder."""

    case: Path
    start: str | None = None  # ISO 8601; a time without an offset is UTC
    end: str | None = None
    formats: tuple[str, ...] = FORMATS
    out: Path | None = None  # default CASE/timeline (recorded in the custody log, checked by verify)


@dataclass
class TimelineSummary:
    """What the timeline holds and where it went, and the exit code of the command."""

    case: Path
    case_id: str
    result: TimelineResult
    exit_code: ExitCode = ExitCode.OK
    exit_reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` summary."""
        out = {"case": str(self.case), "case_id": self.case_id} | self.result.as_dict()
        return out | ({"exit_reason": self.exit_reason} if self.exit_reason else {})


def parse_time(text: str | None, option: str) -> pd.Timestamp | None:
    """A window bound as a UTC timestamp (``2021-03-03``, ``2021-03-03T02:00``, with or without offset)."""
    if text is None or not text.strip():
        return None
    try:
        ts = pd.Timestamp(text.strip())
    except (ValueError, TypeError):
        raise UsageError(f"{option} {text!r}: not an ISO 8601 date or time (e.g. 2021-03-03T02:00:00Z)") from None
    if ts is pd.NaT:
        raise UsageError(f"{option} {text!r}: not a date or time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def timeline(request: TimelineRequest, progress: Progress) -> TimelineSummary:
    """Build the super-timeline of the request's case.

    Exit codes: 0 when every artifact was read; 4 (insufficient) when some artifact could not be read at all
    (its events are missing, so the timeline is not the whole case) or the case gave no event.
    """
    options = TimelineOptions(
        start=parse_time(request.start, "--from"),
        end=parse_time(request.end, "--to"),
        formats=tuple(dict.fromkeys(request.formats)),
        out=request.out,
    )
    case = Case.open(request.case)
    try:
        with case.writer(), progress.units("timeline: artifacts read") as update:
            res = build_timeline(case, options, progress=update)
    finally:
        case.close()
    summary = TimelineSummary(case=case.path, case_id=case.case_id, result=res)
    if res.no_time:
        progress.message(logging.WARNING, f"{res.no_time:,} events have no readable time: counted, not on the timeline")
    for source, st in res.sources.items():
        for p in st.get("problems", [])[:20]:
            progress.message(logging.WARNING, f"{source}: {p}", "triage.timeline")
    if res.unreadable:
        summary.exit_code = ExitCode.INSUFFICIENT
        summary.exit_reason = f"{res.unreadable} artifact(s) could not be read: their events are not on the timeline"
    elif not res.read:
        summary.exit_code = ExitCode.INSUFFICIENT
        summary.exit_reason = "the case gave no event to put on a timeline"
    return summary
