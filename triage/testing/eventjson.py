"""The same events as JSON exports, in the shapes the common exporters write.

Give the :class:`~triage.testing.evtx.Event` list that :func:`~triage.testing.evtx.evtx_bytes` writes
and get the records an analyst would have received from another tool for the same log:

* ``velociraptor``: ``parse_evtx()`` rows (``System.EventID.Value``, ``TimeCreated.SystemTime`` in
  epoch seconds, ``EventData``/``UserData``, ``Message``);
* ``evtx_dump``: the evtx tool's JSON (``Event.System`` with ``#attributes``);
* ``winlogbeat``: Winlogbeat/Elastic documents (``winlog.*``, ``event.code``, ``message``; classic
  unnamed insertion strings as ``param1..N``);
* ``winlogbeat6``: Winlogbeat 6.x documents, the winlog fields at the top (``event_id``, ``log_name``,
  ``source_name``, ``computer_name``, ``record_number``, ``event_data``; ``host`` names the collector);
* ``otrf``: OTRF/Mordor (NXLog) rows: system values and named payload fields flat at the top,
  ``Message``; classic events carry only their message, as NXLog gives them;
* ``splunk``: Splunk search exports (``{"result": {...}}`` with the event XML in ``_raw``);
* ``splunk_classic``: Splunk's non-XML Windows events (``EventCode``, ``LogName``, ``Message``);
* ``powershell``: ``Get-WinEvent | ConvertTo-Json`` (``Id``, ``LogName``, ``/Date(ms)/``,
  ``Properties[].Value`` without names, ``Message``).

:func:`render_message` writes the rendered message (Sysmon's ``Name: value`` lines; Windows-style
labelled lines for other providers; the insertion strings for classic events). :func:`export_bytes`
serialises records as JSON lines, an array or one object, in UTF-8 (optionally with a BOM) or UTF-16,
optionally compressed. Record identifiers are assigned as the EVTX writer assigns them.
"""

from __future__ import annotations

import codecs
import gzip
import json
import lzma
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from triage.testing.evtx import EVENT_NS, Event

__all__ = ["FLAVOURS", "export_bytes", "records", "render_message", "with_record_ids"]

FLAVOURS = ("velociraptor", "evtx_dump", "winlogbeat", "winlogbeat6", "otrf", "splunk", "splunk_classic", "powershell")


def with_record_ids(events: Iterable[Event]) -> list[tuple[int, Event]]:
    """Pairs of (record id, event), numbered as the EVTX writer numbers them."""
    out, next_id = [], 1
    for event in events:
        rid = next_id if event.record_id is None else event.record_id
        out.append((rid, event))
        next_id = rid + 1
    return out


def _utc(event: Event) -> datetime:
    t = event.time_created
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _iso(event: Event, digits: int = 6) -> str:
    t = _utc(event)
    frac = f"{t.microsecond:06d}{'0' * max(0, digits - 6)}"[:digits]
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + "Z"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _fields(event: Event) -> dict[str, Any] | list[Any]:
    if event.user_data is not None:
        return dict(event.user_data[1])
    return event.data


def _words(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)


def render_message(event: Event) -> str:
    """A rendered message as Event Viewer shows it (own wording; the values are what matters)."""
    fields = _fields(event)
    if isinstance(fields, list):  # classic: the insertion strings fill the provider's message text
        return f"Event {event.event_id} of {event.provider}:\r\n" + "\r\n".join(_text(v) for v in fields)
    if "sysmon" in event.provider.lower():  # Sysmon lists every field as "Name: value"
        return f"Sysmon event {event.event_id}:\r\n" + "\r\n".join(f"{k}: {_text(v)}" for k, v in fields.items())
    lines = [f"Event {event.event_id} of {event.provider}.", ""]
    lines += [f"\t{_words(k)}:\t\t{_text(v)}" for k, v in fields.items()]
    return "\r\n".join(lines)


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _velociraptor(rid: int, e: Event) -> dict[str, Any]:
    eid: dict[str, Any] = {"Value": e.event_id}
    if e.qualifiers is not None:
        eid = {"Qualifiers": e.qualifiers, "Value": e.event_id}
    system = {
        "Provider": {"Name": e.provider, "Guid": e.provider_guid or ""},
        "EventID": eid,
        "Version": e.version,
        "Level": e.level,
        "Task": e.task,
        "Opcode": e.opcode,
        "Keywords": e.keywords,
        "TimeCreated": {"SystemTime": _utc(e).timestamp()},
        "EventRecordID": rid,
        "Correlation": {},
        "Execution": {"ProcessID": e.process_id, "ThreadID": e.thread_id},
        "Channel": e.channel,
        "Computer": e.computer,
        "Security": {"UserID": e.user_sid} if e.user_sid else {},
    }
    doc: dict[str, Any] = {"System": system}
    if e.user_data is not None:
        doc["UserData"] = {_local(e.user_data[0]): dict(e.user_data[1])}
    elif isinstance(e.data, list):
        doc["EventData"] = {"Data": list(e.data)}
    elif e.data:
        doc["EventData"] = dict(e.data)
    doc["Message"] = render_message(e)
    return doc


def _evtx_dump(rid: int, e: Event) -> dict[str, Any]:
    eid: Any = (
        e.event_id if e.qualifiers is None else {"#attributes": {"Qualifiers": e.qualifiers}, "#text": e.event_id}
    )
    system: dict[str, Any] = {
        "Provider": {"#attributes": {"Name": e.provider}},
        "EventID": eid,
        "Version": e.version,
        "Level": e.level,
        "Task": e.task,
        "Opcode": e.opcode,
        "Keywords": hex(e.keywords),
        "TimeCreated": {"#attributes": {"SystemTime": _iso(e)}},
        "EventRecordID": rid,
        "Execution": {"#attributes": {"ProcessID": e.process_id, "ThreadID": e.thread_id}},
        "Channel": e.channel,
        "Computer": e.computer,
        "Security": {"#attributes": {"UserID": e.user_sid}} if e.user_sid else None,
    }
    event: dict[str, Any] = {"System": system}
    if e.user_data is not None:
        event["UserData"] = {_local(e.user_data[0]): dict(e.user_data[1])}
    elif isinstance(e.data, list):
        event["EventData"] = {"Data": {"#text": list(e.data) if len(e.data) > 1 else _text(e.data[0])}}
    elif e.data:
        event["EventData"] = dict(e.data)
    return {"Event": event}


def _winlogbeat(rid: int, e: Event) -> dict[str, Any]:
    fields = _fields(e)
    data = {f"param{i}": _text(v) for i, v in enumerate(fields, 1)} if isinstance(fields, list) else {}
    if isinstance(fields, dict):
        data = {k: _text(v) for k, v in fields.items()}
    winlog: dict[str, Any] = {
        "channel": e.channel,
        "computer_name": e.computer,
        "event_id": str(e.event_id),
        "provider_name": e.provider,
        "record_id": rid,
        "process": {"pid": e.process_id, "thread": {"id": e.thread_id}},
        "api": "wineventlog",
    }
    if e.user_sid:
        winlog["user"] = {"identifier": e.user_sid}
    winlog["user_data" if e.user_data is not None else "event_data"] = data
    level = {1: "critical", 2: "error", 3: "warning", 4: "information"}.get(e.level, "information")
    return {
        "@timestamp": _iso(e, 3),
        "event": {"code": str(e.event_id), "provider": e.provider, "kind": "event"},
        "host": {"name": e.computer},
        "log": {"level": level},
        "message": render_message(e),
        "winlog": winlog,
    }


def _winlogbeat6(rid: int, e: Event) -> dict[str, Any]:
    fields = _fields(e)
    if isinstance(fields, list):
        data = {f"param{i}": _text(v) for i, v in enumerate(fields, 1)}
    else:
        data = {k: _text(v) for k, v in fields.items()}
    doc: dict[str, Any] = {
        "@timestamp": _iso(e, 3),
        "@metadata": {"beat": "winlogbeat", "type": "doc", "version": "6.7.0"},
        "beat": {"name": "wec01", "hostname": "wec01", "version": "6.7.0"},
        "host": {"name": "wec01"},  # the forwarding collector, not the event's computer
        "type": "wineventlog",
        "event_id": e.event_id,
        "log_name": e.channel,
        "source_name": e.provider,
        "computer_name": e.computer,
        "record_number": str(rid),
        "process_id": e.process_id,
        "thread_id": e.thread_id,
        "level": {1: "Critical", 2: "Error", 3: "Warning"}.get(e.level, "Information"),
        "message": render_message(e),
    }
    if e.user_sid:
        doc["user"] = {"identifier": e.user_sid, "type": "User"}
    doc["user_data" if e.user_data is not None else "event_data"] = data
    return doc


_NXLOG_META = {"EventID", "Channel", "Hostname", "SourceName", "Message", "RecordNumber", "Task", "Level"}


def _otrf(rid: int, e: Event) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@timestamp": _iso(e, 3),
        "EventTime": _utc(e).strftime("%Y-%m-%d %H:%M:%S"),
        "Hostname": e.computer,
        "EventID": e.event_id,
        "SourceName": e.provider,
        "Channel": e.channel,
        "RecordNumber": rid,
        "ExecutionProcessID": e.process_id,
        "ThreadID": e.thread_id,
        "Task": e.task,
        "Level": str(e.level),
        "Severity": {1: "CRITICAL", 2: "ERROR", 3: "WARNING"}.get(e.level, "INFO"),
        "Message": render_message(e),
    }
    if e.user_sid:
        doc["UserID"] = e.user_sid
    fields = _fields(e)
    if isinstance(fields, dict):  # NXLog flattens named data; classic insertion strings only reach Message
        doc.update({k: _text(v) for k, v in fields.items() if k not in _NXLOG_META})
    # NXLog's own EventType (its severity class) takes the name of Sysmon's EventType payload field
    doc["EventType"] = "AUDIT_SUCCESS" if e.channel == "Security" else "INFO"
    return doc


def event_xml(rid: int, e: Event, message: str | None = None) -> str:
    """The event as Windows renders it to XML (``<Event xmlns=...>``), with an optional RenderingInfo."""
    ns = EVENT_NS
    ET.register_namespace("", ns)

    def sub(parent: ET.Element, tag: str, text: Any = None, **attrs: Any) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ns}}}{tag}", {k: str(v) for k, v in attrs.items() if v is not None})
        if text is not None:
            el.text = str(text)
        return el

    root = ET.Element(f"{{{ns}}}Event")
    system = sub(root, "System")
    sub(system, "Provider", Name=e.provider, Guid=e.provider_guid and f"{{{e.provider_guid}}}")
    sub(system, "EventID", e.event_id, Qualifiers=e.qualifiers)
    sub(system, "Version", e.version)
    sub(system, "Level", e.level)
    sub(system, "Task", e.task)
    sub(system, "Opcode", e.opcode)
    sub(system, "Keywords", f"0x{e.keywords:x}")
    sub(system, "TimeCreated", SystemTime=_iso(e, 7))
    sub(system, "EventRecordID", rid)
    sub(system, "Correlation")
    sub(system, "Execution", ProcessID=e.process_id, ThreadID=e.thread_id)
    sub(system, "Channel", e.channel)
    sub(system, "Computer", e.computer)
    sub(system, "Security", UserID=e.user_sid)
    if e.user_data is not None:
        user = sub(root, "UserData")
        tag = e.user_data[0]
        inner = ET.SubElement(user, tag if tag.startswith("{") else f"{{{ns}}}{tag}")
        for k, v in e.user_data[1].items():
            ET.SubElement(inner, f"{tag.split('}')[0]}}}{k}" if tag.startswith("{") else k).text = _text(v)
    elif isinstance(e.data, list):
        data = sub(root, "EventData")
        for v in e.data:
            sub(data, "Data", _text(v))
    elif e.data:
        data = sub(root, "EventData")
        for k, v in e.data.items():
            sub(data, "Data", _text(v), Name=k)
    if message is not None:
        info = sub(root, "RenderingInfo", Culture="en-US")
        sub(info, "Message", message)
    return ET.tostring(root, encoding="unicode")


def _splunk(rid: int, e: Event) -> dict[str, Any]:
    message = render_message(e)
    result = {
        "_raw": event_xml(rid, e, message),
        "_time": _iso(e, 3).replace("Z", "+00:00"),
        "host": e.computer.split(".")[0],
        "source": f"XmlWinEventLog:{e.channel}",
        "sourcetype": "XmlWinEventLog",
        "EventCode": str(e.event_id),
        "LogName": e.channel,
        "Computer": e.computer,
        "RecordNumber": str(rid),
    }
    return {"preview": False, "result": result}


def _splunk_classic(rid: int, e: Event) -> dict[str, Any]:
    message = render_message(e)
    raw = (
        f"{_utc(e).strftime('%m/%d/%Y %I:%M:%S %p')}\nLogName={e.channel}\nEventCode={e.event_id}\n"
        f"ComputerName={e.computer}\nSourceName={e.provider}\nRecordNumber={rid}\nMessage={message}"
    )
    return {
        "_raw": raw,
        "_time": _iso(e, 3).replace("Z", "+00:00"),
        "LogName": e.channel,
        "EventCode": str(e.event_id),
        "ComputerName": e.computer,
        "SourceName": e.provider,
        "RecordNumber": str(rid),
        "Message": message,
    }


def _powershell(rid: int, e: Event) -> dict[str, Any]:
    fields = _fields(e)
    values = list(fields.values()) if isinstance(fields, dict) else list(fields)
    keywords = e.keywords - (1 << 64) if e.keywords >= 1 << 63 else e.keywords  # .NET Int64
    millis = round(_utc(e).timestamp() * 1000)
    user = {"BinaryLength": 12, "AccountDomainSid": None, "Value": e.user_sid} if e.user_sid else None
    return {
        "Id": e.event_id,
        "Version": e.version,
        "Qualifiers": e.qualifiers,
        "Level": e.level,
        "Task": e.task,
        "Opcode": e.opcode,
        "Keywords": keywords,
        "RecordId": rid,
        "ProviderName": e.provider,
        "ProviderId": e.provider_guid,
        "LogName": e.channel,
        "ProcessId": e.process_id,
        "ThreadId": e.thread_id,
        "MachineName": e.computer,
        "UserId": user,
        "TimeCreated": f"/Date({millis})/",
        "ContainerLog": e.channel,
        "MatchedQueryIds": [],
        "LevelDisplayName": "Information",
        "KeywordsDisplayNames": [],
        "Properties": [{"Value": v} for v in values],
        "Message": render_message(e),
    }


_BUILDERS = {
    "velociraptor": _velociraptor,
    "evtx_dump": _evtx_dump,
    "winlogbeat": _winlogbeat,
    "winlogbeat6": _winlogbeat6,
    "otrf": _otrf,
    "splunk": _splunk,
    "splunk_classic": _splunk_classic,
    "powershell": _powershell,
}


def records(events: Iterable[Event], flavour: str) -> list[dict[str, Any]]:
    """One JSON record per event, in ``flavour``'s shape (see the module docstring)."""
    build = _BUILDERS[flavour]
    return [build(rid, e) for rid, e in with_record_ids(events)]


def export_bytes(
    docs: list[Any],
    *,
    container: str = "lines",
    encoding: str = "utf-8",
    bom: bool = False,
    compress: str | None = None,
    indent: int | None = None,
) -> bytes:
    """Serialise records as ``lines`` (JSON lines), ``array`` or ``object`` (the single record).

    ``encoding`` is ``utf-8``, ``utf-16-le`` or ``utf-16-be``; ``bom`` prepends its byte order mark;
    ``compress`` is ``gz`` or ``xz``. PowerShell's pretty printing is ``indent=4`` with CRLF lines.
    """
    if container == "lines":
        text = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    elif container == "array":
        text = json.dumps(docs, ensure_ascii=False, indent=indent)
    elif container == "object":
        if len(docs) != 1:
            raise ValueError("container 'object' holds exactly one record")
        text = json.dumps(docs[0], ensure_ascii=False, indent=indent)
    else:
        raise ValueError(f"unknown container {container!r}")
    if indent is not None:
        text = text.replace("\n", "\r\n")
    boms = {"utf-8": codecs.BOM_UTF8, "utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE}
    data = (boms[encoding] if bom else b"") + text.encode(encoding)
    if compress == "gz":
        return gzip.compress(data, mtime=0)
    if compress == "xz":
        return lzma.compress(data)
    if compress is not None:
        raise ValueError(f"unknown compression {compress!r}")
    return data
