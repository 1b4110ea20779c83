"""JSON event exports, read by content and record by record, with bounded memory.

Flavours (one file may mix them; each record is mapped on its own shape):

* evtx_dump / Velociraptor: ``{"Event": {"System": ..., "EventData": ...}}`` or ``System`` at the top
  (``EventID.Value``, ``TimeCreated.SystemTime`` as epoch seconds), ``UserData``, ``Message``;
* Winlogbeat / Elastic (also inside ``_source``): ``winlog.event_data``, ``winlog.channel``,
  ``event.code``, ``message``; classic unnamed data as ``param1..N``; Winlogbeat 6.x wrote the same
  fields at the top (``event_id``, ``log_name``, ``source_name``, ``computer_name``, ``record_number``);
* OTRF / Mordor (NXLog): flat ``EventID``, ``Channel``, ``Hostname``, payload fields at the top, ``Message``;
* Splunk exports (``{"result": ...}`` rows or bare results): ``_raw`` event XML, else ``EventCode``,
  ``LogName``, ``Message`` and the extracted fields;
* ``Get-WinEvent | ConvertTo-Json``: ``Id``, ``LogName``, ``ProviderName``, ``TimeCreated`` as
  ``/Date(ms)/``, ``Properties[].Value`` (named from the rendered message or the schema table), ``Message``.

Containers: JSON lines, one JSON array (streamed element by element), one object, or concatenated
(pretty-printed) objects; plain, gzip, xz or bz2; UTF-8 (with or without BOM) or UTF-16 LE/BE (with a
BOM, or without one, told by the NUL pattern). The rendered ``Message`` is kept as a column, so keyword
rules see what the message carries.

Degradation is per record: a record that is not JSON, too deep, too large, not an object or of an
unknown shape is skipped with a counted warning; a value out of range is dropped with a warning.
Decompression streams in 1 MiB steps with caps on the expanded size, the expansion ratio and a single
record's size (:class:`JsonLimits`); hitting one is a warning and the file counts as truncated.
"""

from __future__ import annotations

import bz2
import codecs
import json
import lzma
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from triage.formats.eventjson import json_flavour
from triage.formats.evtx import SYSTEM_SET, add_data, flatten_event, scalar, to_int, xml_event

__all__ = ["JsonLimits", "flatten_json_record", "iter_json_docs", "json_flavour"]

MiB = 1 << 20


@dataclass(frozen=True)
class JsonLimits:
    """Bounds on reading one export; each one hit is a warning, never an exception."""

    max_expanded_bytes: int = 64 << 30  # decompressed bytes read from one file
    max_ratio: float = 1000.0  # expanded / compressed, checked once min_ratio_bytes were expanded
    min_ratio_bytes: int = 64 * MiB
    max_record_chars: int = 16 * MiB  # one JSON record (one line, one array element)
    chunk_bytes: int = MiB


# -- bytes: decompression (bounded) and decoding ---------------------------------------------------------
_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"BZh": "bz2"}


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(wbits=47)  # gzip header, concatenated members handled below
    if kind == "xz":
        return lzma.LZMADecompressor()
    return bz2.BZ2Decompressor()


def _raw_chunks(path: Path, stats: Any, limits: JsonLimits) -> Iterator[bytes]:
    """The file's bytes, decompressed incrementally: at most one output chunk per step is held."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
        fh.seek(0)
        kind = next((k for sig, k in _MAGIC.items() if magic.startswith(sig)), "")
        if not kind:
            while block := fh.read(limits.chunk_bytes):
                yield block
            return
        stats.compression = kind
        dec, members = _decompressor(kind), 0
        data = fh.read(64 * 1024)
        compressed, expanded = len(data), 0
        while True:
            try:
                out = dec.decompress(data, limits.chunk_bytes)
            except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
                stats.truncated = True
                what = "data after the last stream" if members else "data"
                stats.warn(f"{kind} {what} is corrupt after {expanded} expanded bytes: {exc}")
                return
            data = dec.unconsumed_tail if kind == "gzip" else b""
            if out:
                expanded += len(out)
                yield out
            if expanded > limits.max_expanded_bytes:
                stats.truncated = stats.limit_hit = True
                stats.warn(f"decompression stopped at {expanded} bytes (limit {limits.max_expanded_bytes})")
                return
            if expanded >= limits.min_ratio_bytes and expanded > limits.max_ratio * max(compressed, 1):
                stats.truncated = stats.limit_hit = True
                stats.warn(
                    f"decompression stopped: {compressed} compressed bytes expanded to {expanded} "
                    f"(ratio above {limits.max_ratio:g}; a decompression bomb?)"
                )
                return
            if dec.eof:  # another member/stream may follow (concatenated gzip members or xz streams)
                members += 1
                data = dec.unused_data + data or fh.read(64 * 1024)
                compressed += 0 if dec.unused_data else len(data)
                if not data.strip(b"\x00"):  # end of file (xz allows zero padding)
                    return
                dec = _decompressor(kind)
                continue
            if data if kind == "gzip" else not dec.needs_input:
                continue
            data = fh.read(64 * 1024)
            compressed += len(data)
            if not data:
                stats.truncated = True
                stats.warn(f"{kind} stream ends early (file truncated?) after {expanded} bytes")
                return


def _detect_encoding(head: bytes) -> tuple[str, int]:
    """(codec, BOM length) from the first bytes: BOMs, else the NUL pattern of UTF-16 text."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith(codecs.BOM_UTF16_LE):
        return "utf-16-le", 2
    if head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16-be", 2
    if len(head) >= 4:
        # JSON starts with ASCII ('{', '[', whitespace): in UTF-16 every other byte is NUL
        if head[1] == 0 and head[3] == 0 and head[0] != 0:
            return "utf-16-le", 0
        if head[0] == 0 and head[2] == 0 and head[1] != 0:
            return "utf-16-be", 0
    return "utf-8", 0


def _texts(chunks: Iterator[bytes], stats: Any) -> Iterator[str]:
    """Decoded text in chunks; undecodable bytes become U+FFFD (counted once as a warning)."""
    head = b""
    for block in chunks:
        head += block
        if len(head) >= 4:
            break
    encoding, bom = _detect_encoding(head)
    stats.encoding = encoding + (" (BOM)" if bom else "")
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    replaced = 0

    def emit(data: bytes, final: bool = False) -> str:
        nonlocal replaced
        text = decoder.decode(data, final)
        replaced += text.count("\ufffd")
        return text

    if head[bom:]:
        yield emit(head[bom:])
    for block in chunks:
        yield emit(block)
    if tail := emit(b"", True):
        yield tail
    if replaced:
        stats.warn(f"{replaced} characters could not be decoded as {encoding} and were replaced by U+FFFD")


# -- text: records, streamed ------------------------------------------------------------------------------------
_WS = re.compile(r"[ \t\r\n\ufeff]*")
_WS_COMMA = re.compile(r"[ \t\r\n,]*")
_TOKEN = re.compile(r'[\[\]{}"]')
_STRING_STEP = re.compile(r'\\.|"', re.S)
_SCALAR_END = re.compile(r"[,\]\n]")
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_LONE = re.compile("[\ud800-\udfff]")
_DECODER = json.JSONDecoder()


class _Stream:
    """A sliding text buffer over the decoded chunks: consumed text is dropped as the cursor moves."""

    def __init__(self, texts: Iterator[str]) -> None:
        self.texts, self.buf, self.pos, self.eof = texts, "", 0, False
        self.repaired = 0  # lone surrogates replaced in the last record

    def more(self) -> bool:
        if self.eof:
            return False
        try:
            nxt = next(self.texts)
        except StopIteration:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + nxt
        self.pos = 0
        return True

    def skip(self, pattern: re.Pattern[str]) -> str | None:
        """Move past ``pattern``; the next character, or None at the end of the text."""
        while True:
            self.pos = pattern.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return None

    def skip_line(self) -> None:
        """Resynchronise after a bad record in a stream of values: go to the next line that can start one.

        JSON lines start every record at the start of a line; pretty-printed objects indent their insides
        and close at the start of a line, so indented lines and closing brackets belong to the bad record.
        """
        while True:
            nl = self.buf.find("\n", self.pos)
            if nl < 0:
                self.pos = len(self.buf)
                if not self.more():
                    return
                continue
            self.pos = nl + 1
            while self.pos >= len(self.buf):
                if not self.more():
                    return
            if self.buf[self.pos] not in " \t\r\n}]":
                return

    def skip_value(self) -> bool:
        """Move past one JSON value by bracket depth (no recursion, no buffering); False at the end."""
        if self.buf[self.pos] not in "[{":
            while True:  # a scalar: up to the next separator
                m = _SCALAR_END.search(self.buf, self.pos)
                if m:
                    self.pos = m.start()
                    return True
                self.pos = len(self.buf)
                if not self.more():
                    return False
        depth = 0
        while True:
            m = _TOKEN.search(self.buf, self.pos)
            if m is None:
                self.pos = len(self.buf)
                if not self.more():
                    return False
                continue
            ch, self.pos = m.group(), m.end()
            if ch == '"':
                while True:
                    s = _STRING_STEP.search(self.buf, self.pos)
                    if s is None:  # the string goes on in the next chunk (keep a trailing backslash)
                        self.pos = len(self.buf) - (1 if self.buf.endswith("\\") else 0)
                        if not self.more():
                            return False
                        continue
                    self.pos = s.end()
                    if s.group() == '"':
                        break
            elif ch in "[{":
                depth += 1
            else:
                depth -= 1
                if depth <= 0:
                    return True

    def value(self, limits: JsonLimits) -> tuple[Any, str | None]:
        """Parse the value at the cursor: (document, None) or (None, reason it was skipped).

        The standard library's decoder, on purpose: as fast here as orjson plus the checks orjson needs
        (it turns integers beyond 64 bits into floats and rejects lone surrogates), and exact.
        """
        while True:
            start = self.pos
            try:
                doc, end = _DECODER.raw_decode(self.buf, start)
            except RecursionError:
                return None, "nested too deeply"
            except json.JSONDecodeError as exc:
                incomplete = exc.pos >= len(self.buf) - 6 or exc.msg.startswith("Unterminated string")
                if incomplete and not self.eof:
                    if len(self.buf) - start >= limits.max_record_chars:
                        return None, f"record larger than {limits.max_record_chars} characters"
                    self.more()
                    continue
                return None, f"not JSON ({exc.msg})"
            except ValueError as exc:  # e.g. an integer of more than 4300 digits
                return None, f"not JSON ({str(exc)[:80]})"
            if end == len(self.buf) and not self.eof and not isinstance(doc, dict | list):
                self.more()  # a number may continue in the next chunk
                continue
            if end - start > limits.max_record_chars:
                self.pos = end
                return None, f"record larger than {limits.max_record_chars} characters"
            if _SURROGATE.search(self.buf, start, end):
                doc, fixed = _fix_surrogates(doc)
                self.repaired += fixed
            self.pos = end
            return doc, None


def _fix_surrogates(doc: Any) -> tuple[Any, int]:
    """Lone UTF-16 surrogates (valid JSON, invalid text) replaced by U+FFFD, iteratively; (doc, count)."""
    count = 0

    def fix(s: str) -> str:
        nonlocal count
        out, n = _LONE.subn("\ufffd", s)
        count += n
        return out

    if isinstance(doc, str):
        return fix(doc), count
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                value = node[key]
                if isinstance(value, str):
                    value = fix(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
                new_key = fix(key)
                if new_key != key:
                    del node[key]
                node[new_key] = value
        elif isinstance(node, list):
            for i, value in enumerate(node):
                if isinstance(value, str):
                    node[i] = fix(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
    return doc, count


def _note_repairs(stream: _Stream, stats: Any, number: int) -> None:
    if stream.repaired:
        stats.bad_values += stream.repaired
        stats.warn(f"record {number}: {stream.repaired} lone UTF-16 surrogate(s) replaced by U+FFFD; record kept")
        stream.repaired = 0


def iter_json_docs(path: str | Path, stats: Any, limits: JsonLimits | None = None) -> Iterator[tuple[int, Any]]:
    """``(record number, parsed value)`` for every record of an export; bad ones are warned about and skipped."""
    limits = limits or JsonLimits()
    stream = _Stream(_texts(_raw_chunks(Path(path), stats, limits), stats))
    first = stream.skip(_WS)
    if first is None:
        return
    number = 0

    def bad(reason: str) -> None:
        stats.bad_records += 1
        stats.warn(f"record {number}: {reason}; skipped")

    if first == "[":  # one JSON array: its elements are the records
        stream.pos += 1
        while True:
            c = stream.skip(_WS_COMMA)
            if c is None:
                stats.truncated = True
                stats.warn(f"the JSON array is not closed (file truncated?) after {number} records")
                return
            if c == "]":
                stream.pos += 1
                break
            number += 1
            doc, why = stream.value(limits)
            if why is None:
                _note_repairs(stream, stats, number)
                yield number, doc
                continue
            bad(why)
            if not stream.skip_value():
                stats.truncated = True
                stats.warn(f"the JSON array is not closed (file truncated?) after {number} records")
                return
        if stream.skip(_WS) is not None:
            stats.warn("text after the end of the JSON array was ignored")
        return
    while stream.skip(_WS) is not None:  # JSON lines, one object, or concatenated objects
        number += 1
        doc, why = stream.value(limits)
        if why is None:
            _note_repairs(stream, stats, number)
            yield number, doc
        else:
            bad(why)
            stream.skip_line()


# -- records: one flat row per event -----------------------------------------------------------------------------
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_DATE = re.compile(r"^\\?/Date\((-?\d+)(?:[+-]\d{4})?\)\\?/$")


def _time(value: Any) -> str | None:
    """Times in the exporters' forms (ISO text, ``/Date(ms)/``, epoch seconds or ms) as ISO text."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dict):  # {"SystemTime": ...} / {"#attributes": {"SystemTime": ...}}
        inner = value.get("#attributes", value)
        return _time(inner.get("SystemTime") if isinstance(inner, dict) else None)
    try:
        if isinstance(value, int | float):
            seconds = value / 1000 if abs(value) > 1e11 else value
            return (_EPOCH + timedelta(microseconds=round(seconds * 1e6))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        text = str(value)
        m = _MS_DATE.match(text)
        if m:
            return (_EPOCH + timedelta(milliseconds=int(m.group(1)))).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return text
    except (OverflowError, ValueError):
        return None


_str = scalar
_LEVELS = {"critical": 1, "error": 2, "warning": 3, "warn": 3, "information": 4, "info": 4, "verbose": 5}


def _level(*values: Any) -> int | None:
    """A level from a number or an exporter's level name ("error", "ERROR", "Information")."""
    for value in values:
        text = _str(value)
        if text is None:
            continue
        if text.isdigit():
            return int(text)
        if (level := _LEVELS.get(text.lower())) is not None:
            return level
    return None


def _put_message(row: dict[str, Any], message: Any) -> None:
    text = _str(message)
    if text:
        row["Message"] = text


_PARAM = re.compile(r"param(\d+)\Z")


def _sub(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """The object under ``key``; an empty one when it is absent or not an object."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _winlogbeat6(doc: dict[str, Any]) -> dict[str, Any]:
    """Winlogbeat 6.x kept the winlog fields at the top level, under older names: the 7.x ``winlog`` shape."""
    return {
        "record_id": doc.get("record_number"),
        "event_id": doc.get("event_id"),
        "provider_name": doc.get("source_name"),
        "channel": doc.get("log_name"),
        "computer_name": doc.get("computer_name"),  # host.name is the forwarding collector in 6.x
        "level": doc.get("level"),
        "version": doc.get("version"),
        "user": _sub(doc, "user"),
        "process": {"pid": doc.get("process_id"), "thread": {"id": doc.get("thread_id")}},
        "event_data": doc.get("event_data"),
        "user_data": doc.get("user_data"),
    }


def _winlogbeat(doc: dict[str, Any]) -> dict[str, Any]:
    winlog = _sub(doc, "winlog")  # plain ECS has no winlog
    if not winlog and "event_id" in doc:
        winlog = _winlogbeat6(doc)
    event = _sub(doc, "event")
    proc = _sub(winlog, "process")
    thread = _sub(proc, "thread")
    user = _sub(winlog, "user")
    host = _sub(doc, "host")
    level = doc["log"].get("level") if isinstance(doc.get("log"), dict) else None
    row: dict[str, Any] = {
        "EventRecordID": winlog.get("record_id"),
        "TimeCreated": _time(winlog.get("time_created") or doc.get("@timestamp") or event.get("created")),
        "EventID": winlog.get("event_id", event.get("code")),
        "Provider": _str(winlog.get("provider_name") or event.get("provider")),
        "Channel": _str(winlog.get("channel")),
        "Computer": _str(winlog.get("computer_name") or host.get("name") or host.get("hostname")),
        "Level": _level(winlog.get("level"), level),
        "Task": None,
        "Opcode": None,
        "Version": winlog.get("version"),
        "UserID": _str(user.get("identifier")),
        "ProcessID": proc.get("pid"),
        "ThreadID": thread.get("id"),
    }
    for part in ("event_data", "user_data"):
        data = winlog.get(part)
        if isinstance(data, dict) and data and all(_PARAM.match(k) for k in data):
            # classic unnamed insertion strings, numbered by Winlogbeat: the EVTX reader's newline-joined Data
            row["Data"] = "\n".join(_str(data[k]) or "" for k in sorted(data, key=lambda k: int(k[5:])))
        else:
            add_data(row, data)
    _put_message(row, doc.get("message", doc.get("Message")))
    return row


_FLAT_META = {
    "@timestamp",
    "@version",
    "Message",
    "message",
    "Hostname",
    "SourceName",
    "Channel",
    "EventID",
    "TimeCreated",
    "EventTime",
    "EventReceivedTime",
    "SourceModuleName",
    "SourceModuleType",
    "Task",
    "Keywords",
    "Level",
    "Opcode",
    "OpcodeValue",
    "Severity",
    "SeverityValue",
    "EventType",
    "RecordNumber",
    "EventRecordID",
    "ExecutionProcessID",
    "ThreadID",
    "host",
    "port",
    "tags",
    "Category",
    "ProviderGuid",
    "Version",
    "AccountName",
    "AccountType",
    "Domain",
    "UserID",
    "ERROR_EVT_UNRESOLVED",
    "LogName",
    "ProviderName",
    "Computer",
    "MachineName",
}


def _flat(doc: dict[str, Any]) -> dict[str, Any]:
    """OTRF / Mordor / NXLog rows: system values and payload side by side at the top."""

    row: dict[str, Any] = {
        "EventRecordID": doc.get("RecordNumber", doc.get("EventRecordID")),
        "TimeCreated": _time(doc.get("@timestamp") or doc.get("TimeCreated") or doc.get("EventTime")),
        "EventID": doc.get("EventID"),
        "Provider": _str(doc.get("SourceName") or doc.get("ProviderName")),
        "Channel": _str(doc.get("Channel") or doc.get("LogName")),
        "Computer": _str(doc.get("Hostname") or doc.get("Computer") or doc.get("MachineName")),
        "Level": _level(doc.get("Level"), doc.get("EventType"), doc.get("Severity")),
        "UserID": _str(doc.get("UserID")),
        "ProcessID": doc.get("ExecutionProcessID"),
        "ThreadID": doc.get("ThreadID"),
        "Task": to_int(doc.get("Task")),
        "Version": doc.get("Version"),
    }
    add_data(row, {k: v for k, v in doc.items() if k not in _FLAT_META})
    message = doc.get("Message", doc.get("message"))
    _put_message(row, message)
    # NXLog's EventType (INFO, AUDIT_SUCCESS) overwrote Sysmon's (SetValue, DeleteKey, WmiConsumerEvent, ...):
    # the rendered message still holds Sysmon's value
    sysmon = "sysmon" in (row["Channel"] or "").lower()
    if sysmon and isinstance(message, str) and (m := _SYSMON_EVENT_TYPE.search(message)):
        row["EventType"] = m.group(1)
    return row


_SYSMON_EVENT_TYPE = re.compile(r"^EventType: *(\w+)\r?$", re.MULTILINE)


_SPLUNK_META = {
    "EventCode",
    "LogName",
    "SourceName",
    "ComputerName",
    "RecordNumber",
    "Message",
    "Type",
    "TaskCategory",
    "Keywords",
    "OpCode",
    "Sid",
    "SidType",
    "EventType",
    "host",
    "source",
    "sourcetype",
    "index",
    "linecount",
    "splunk_server",
    "punct",
    "eventtype",
    "tag",
    "timestamp",
}


def _splunk(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Splunk results: the event XML in ``_raw`` when it is there, else the extracted fields."""

    raw = doc.get("_raw")
    if isinstance(raw, str) and raw.lstrip().startswith("<Event"):
        event = xml_event(raw.strip())
        row = flatten_event(event)
        message = event["Event"].get("RenderingInfo", {}).get("Message") or doc.get("Message")
        _put_message(row, message)
        return row
    row = {
        "EventRecordID": doc.get("RecordNumber"),
        "TimeCreated": _time(doc.get("_time") or doc.get("timestamp")),
        "EventID": doc.get("EventCode"),
        "Provider": _str(doc.get("SourceName")),
        "Channel": _str(doc.get("LogName")),
        "Computer": _str(doc.get("ComputerName") or doc.get("host")),
        "Keywords": _str(doc.get("Keywords")),
    }
    add_data(row, {k: v for k, v in doc.items() if not k.startswith("_") and k not in _SPLUNK_META})
    _put_message(row, doc.get("Message") or (raw if isinstance(raw, str) else None))
    return row


# Get-WinEvent gives EventData values without names (Properties[].Value). Names come from the rendered
# message when it lists "Name: value" lines in property order (Sysmon does), else from this table of
# the fields, in schema order, of the events the ED 21-02 pack reads.
_SUBJECT = ("SubjectUserSid", "SubjectUserName", "SubjectDomainName", "SubjectLogonId")
_MEMBER = ("MemberName", "MemberSid", "TargetUserName", "TargetDomainName", "TargetSid", *_SUBJECT, "PrivilegeList")
PROPERTY_NAMES: dict[tuple[str, int], tuple[str, ...]] = {
    ("Security", 4688): (
        *_SUBJECT,
        "NewProcessId",
        "NewProcessName",
        "TokenElevationType",
        "ProcessId",
        "CommandLine",
        "TargetUserSid",
        "TargetUserName",
        "TargetDomainName",
        "TargetLogonId",
        "ParentProcessName",
        "MandatoryLabel",
    ),
    ("Security", 4697): (
        *_SUBJECT,
        "ServiceName",
        "ServiceFileName",
        "ServiceType",
        "ServiceStartType",
        "ServiceAccount",
    ),
    ("Security", 4698): (
        *_SUBJECT,
        "TaskName",
        "TaskContent",
        "ClientProcessStartKey",
        "ClientProcessId",
        "ParentProcessId",
        "RpcCallClientLocality",
        "FQDN",
    ),
    ("Security", 4720): (
        "TargetUserName",
        "TargetDomainName",
        "TargetSid",
        *_SUBJECT,
        "PrivilegeList",
        "SamAccountName",
        "DisplayName",
        "UserPrincipalName",
        "HomeDirectory",
        "HomePath",
        "ScriptPath",
        "ProfilePath",
        "UserWorkstations",
        "PasswordLastSet",
        "AccountExpires",
        "PrimaryGroupId",
        "AllowedToDelegateTo",
        "OldUacValue",
        "NewUacValue",
        "UserAccountControl",
        "UserParameters",
        "SidHistory",
        "LogonHours",
    ),
    ("Security", 4722): ("TargetUserName", "TargetDomainName", "TargetSid", *_SUBJECT),
    ("Security", 4728): _MEMBER,
    ("Security", 4732): _MEMBER,
    ("Security", 4756): _MEMBER,
    ("Security", 4648): (
        *_SUBJECT,
        "LogonGuid",
        "TargetUserName",
        "TargetDomainName",
        "TargetLogonGuid",
        "TargetServerName",
        "TargetInfo",
        "ProcessId",
        "ProcessName",
        "IpAddress",
        "IpPort",
    ),
    ("Security", 1102): _SUBJECT,
    ("System", 7045): ("ServiceName", "ImagePath", "ServiceType", "StartType", "AccountName"),
    ("System", 104): ("SubjectUserName", "SubjectDomainName", "Channel", "BackupPath"),
    ("Microsoft-Windows-PowerShell/Operational", 4104): (
        "MessageNumber",
        "MessageTotal",
        "ScriptBlockText",
        "ScriptBlockId",
        "Path",
    ),
    ("Microsoft-Windows-PowerShell/Operational", 4103): ("ContextInfo", "UserData", "Payload"),
}
_LABEL_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9]*): ?(.*)$")


def _names_from_message(message: str, values: list[str | None]) -> list[str] | None:
    """Property names when the message lists ``Name: value`` lines for exactly these values, in order."""
    pairs = [m.groups() for line in message.splitlines() if (m := _LABEL_LINE.match(line))]
    if len(pairs) != len(values):
        return None
    if all((v or "") == text.strip() for (_, text), v in zip(pairs, values, strict=True)):
        return [name for name, _ in pairs]
    return None


def _powershell(doc: dict[str, Any]) -> dict[str, Any]:
    """``Get-WinEvent | ConvertTo-Json`` objects (EventLogRecord properties)."""

    user = doc.get("UserId")
    keywords = to_int(doc.get("Keywords"))
    channel = _str(doc.get("LogName"))
    row: dict[str, Any] = {
        "EventRecordID": doc.get("RecordId"),
        "TimeCreated": _time(doc.get("TimeCreated")),
        "EventID": doc.get("Id"),
        "Qualifiers": doc.get("Qualifiers"),
        "Provider": _str(doc.get("ProviderName")),
        "Channel": channel,
        "Computer": _str(doc.get("MachineName")),
        "Level": doc.get("Level"),
        "Task": doc.get("Task"),
        "Opcode": doc.get("Opcode"),
        "Version": doc.get("Version"),
        "Keywords": hex(keywords & 0xFFFFFFFFFFFFFFFF) if keywords is not None else None,
        "UserID": _str(user.get("Value") if isinstance(user, dict) else user),
        "ProcessID": doc.get("ProcessId"),
        "ThreadID": doc.get("ThreadId"),
    }
    message = _str(doc.get("Message")) or ""
    props = doc.get("Properties")
    if isinstance(props, dict):
        props = [props]  # ConvertTo-Json writes a one-element array as the element
    if isinstance(props, list) and props:
        values = [_str(p.get("Value") if isinstance(p, dict) else p) for p in props]
        names = _names_from_message(message, values) if message else None
        if names is None:
            table = PROPERTY_NAMES.get((channel or "", to_int(doc.get("Id")) or -1))
            names = list(table[: len(values)]) if table and len(values) <= len(table) else None
        if names:
            for name, value in zip(names, values, strict=True):
                row[f"EventData_{name}" if name in SYSTEM_SET else name] = value
        else:
            row["Data"] = "\n".join(v or "" for v in values)
    _put_message(row, message)
    return row


def flatten_json_record(doc: Any) -> dict[str, Any] | None:
    """A flat row from one parsed export record of any supported flavour; None when it is not an event."""

    flavour = json_flavour(doc)
    if flavour == "evtx":
        row = flatten_event(doc)
        system = doc.get("Event", doc).get("System")
        created = system.get("TimeCreated") if isinstance(system, dict) else None
        if isinstance(created, dict):
            created = created.get("SystemTime", (created.get("#attributes") or {}).get("SystemTime"))
        if isinstance(created, int | float) or (isinstance(created, str) and "Date(" in created):
            row["TimeCreated"] = _time(created)  # Velociraptor: epoch seconds
        _put_message(row, doc.get("Message") or doc.get("message"))
        return row
    if flavour == "winlogbeat":
        return _winlogbeat(doc)
    if flavour == "splunk":
        return _splunk(doc)
    if flavour == "powershell":
        return _powershell(doc)
    if flavour == "flat":
        return _flat(doc)
    return None
