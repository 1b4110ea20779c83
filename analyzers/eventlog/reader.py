"""Windows event records as typed pandas batches, whatever held them: EVTX files or JSON exports.

EVTX files are read by :mod:`triage.formats.evtx`; JSON exports of every common flavour (``jsonexport``:
Winlogbeat/Elastic, OTRF/NXLog, Velociraptor, evtx_dump, Splunk, Get-WinEvent) are streamed record by
record here into the same batches (same system columns, one column per EventData field).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from triage.formats.evtx import BATCH, Batcher, ReadStats, iter_evtx

if TYPE_CHECKING:
    import pandas as pd

    from analyzers.eventlog.jsonexport import JsonLimits


# -- JSON exports ----------------------------------------------------------------------------------------------
def iter_json_events(
    path: str | Path, stats: ReadStats, batch: int = BATCH, limits: JsonLimits | None = None
) -> Iterator[pd.DataFrame]:
    """Batches of events from a JSON export of any supported flavour and container (see ``jsonexport``)."""
    from analyzers.eventlog.jsonexport import flatten_json_record, iter_json_docs
    from triage.formats.eventjson import unwrap_export

    stats.backend = "json"
    out = Batcher(stats, batch)
    try:
        for number, doc in iter_json_docs(path, stats, limits):
            for item in unwrap_export(doc):
                try:
                    row = flatten_json_record(item)
                except Exception as exc:  # any shape of hostile record costs only itself
                    stats.bad_records += 1
                    stats.warn(f"record {number}: cannot be mapped ({type(exc).__name__}: {str(exc)[:120]}); skipped")
                    continue
                if row is None:
                    stats.bad_records += 1
                    what = "not a JSON object" if not isinstance(item, dict) else "not a Windows event of a known shape"
                    stats.warn(f"record {number}: {what}; skipped")
                    continue
                if (frame := out.add(row)) is not None:
                    yield frame
    except OSError as exc:
        stats.warn(f"cannot read the export: {exc}")
    if (frame := out.flush()) is not None:
        yield frame


def iter_events(
    path: str | Path, kind: str, stats: ReadStats, batch: int = BATCH, limits: JsonLimits | None = None
) -> Iterator[pd.DataFrame]:
    """Dispatch on the evidence kind: ``evtx``, else a JSON export (read by content, whatever its name)."""
    if kind == "evtx":
        return iter_evtx(path, stats, batch)
    return iter_json_events(path, stats, batch, limits)
