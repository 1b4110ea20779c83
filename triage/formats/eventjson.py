"""The record shapes of JSON event exports, shared by the recogniser and the event-log reader.

One list: what makes a JSON record an exported Windows event (and which exporter wrote it), and the export
envelopes that wrap records (Splunk ``result``, Elastic ``_source``/``hits.hits``, result lists).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["json_flavour", "unwrap_export"]

_WRAPPED_LISTS = ("results", "records", "Records", "Events", "events")


def unwrap_export(doc: Any) -> Iterator[Any]:
    """Export envelopes around events: Splunk ``result``, Elastic ``_source``/``hits.hits``, result lists."""
    if not isinstance(doc, dict):
        yield doc
        return
    if isinstance(doc.get("result"), dict):
        yield doc["result"]
        return
    if isinstance(doc.get("_source"), dict):
        yield doc["_source"]
        return
    hits = doc.get("hits")
    if isinstance(hits, dict) and isinstance(hits.get("hits"), list):
        for hit in hits["hits"]:
            yield hit.get("_source", hit) if isinstance(hit, dict) else hit
        return
    for key in _WRAPPED_LISTS:
        if isinstance(doc.get(key), list) and len(doc) <= 8:
            yield from (x.get("result", x) if isinstance(x, dict) else x for x in doc[key])
            return
    yield doc


def json_flavour(doc: Any) -> str | None:
    """Which exporter wrote this record (``evtx``, ``winlogbeat``, ``splunk``, ``powershell``, ``flat``)."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("Event"), dict) or isinstance(doc.get("System"), dict):
        return "evtx"
    if isinstance(doc.get("winlog"), dict):
        return "winlogbeat"
    if "event_id" in doc and ("log_name" in doc or "source_name" in doc):
        return "winlogbeat"  # Winlogbeat 6.x: the winlog fields at the top of the document
    event = doc.get("event")
    if isinstance(event, dict) and "code" in event and isinstance(doc.get("host"), dict):
        return "winlogbeat"  # ECS without the winlog object (Elastic Agent, other shippers)
    raw = doc.get("_raw")
    if "EventCode" in doc and any(k in doc for k in ("LogName", "_raw", "sourcetype", "SourceName", "ComputerName")):
        return "splunk"
    if isinstance(raw, str) and raw.startswith("<Event"):
        return "splunk"
    if "Id" in doc and ("LogName" in doc or "ProviderName" in doc):
        return "powershell"
    if "EventID" in doc and any(k in doc for k in ("Channel", "SourceName", "Hostname", "ProviderName", "LogName")):
        return "flat"
    return None
