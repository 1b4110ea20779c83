"""A small, deterministic writer of Windows XML Event Log files (EVTX format, version 3.1).

Meant for tests and demo samples: describe events with :class:`Event` and serialise them with
:func:`write_evtx` / :func:`evtx_bytes`.  The output is laid out the way the Windows event log
service writes a log:

* a 4096-byte file header (``ElfFile``) with first/last chunk numbers, the next record identifier,
  the chunk count, the flags (``0x1`` = dirty) and a CRC32 of its first 120 bytes;
* 65536-byte chunks (``ElfChnk``) with first/last record numbers and identifiers, the last record
  and free space offsets, a CRC32 of the record data and a CRC32 of the chunk header.  The 64-entry
  common-string table and the 32-entry template table of the chunk header are filled in, so
  readers that look names and templates up through them (python-evtx does) work for any record,
  not only when the chunk is read front to back;
* event records (``**\\0\\0``, size, identifier, written time, Binary XML, copy of the size).

Every record's Binary XML has the shape Windows gives it: a fragment header followed by a *template
instance*.  The template definition (the XML skeleton with typed substitution slots) is stored
inline in the first record of a chunk that uses it and referenced by chunk offset afterwards;
element and attribute names are stored once per chunk and referenced by offset.  The record then
carries the substitution values, typed as Windows types them: ``EventID``/``Task``/``Qualifiers``
UInt16, ``Level``/``Opcode``/``Version`` UInt8, ``Keywords`` HexInt64, ``SystemTime`` FILETIME,
``EventRecordID`` UInt64, ``ProcessID``/``ThreadID`` UInt32, ``UserID`` SID, ``Guid`` GUID, and
strings as UTF-16.  Optional System attributes (``Qualifiers``, ``Guid``, ``EventSourceName``,
``UserID``, ``ActivityID``, ``RelatedActivityID``) are *conditional* substitutions that receive a
NULL value when unset, as in real logs.  How the two common readers show that:

* ``evtx`` (omerbenamram, Rust) drops NULL attributes: ``"EventID": 4624`` without qualifiers,
  ``{"#attributes": {"Qualifiers": 16384}, "#text": 1000}`` with them; ``"Security": null`` and
  ``"Correlation": null`` when no attribute is set.  ``SystemTime`` is rendered as
  ``2021-03-02T21:37:04.123456Z``.  Integer EventData values become JSON numbers.
  GUIDs come out upper case without braces, ``Keywords`` without zero padding; empty
  ``UserData`` fields are ``null``.
* ``python-evtx`` (williballenthin) renders NULL attributes as empty ones (``Qualifiers=""``,
  ``UserID=""``, ``Guid=""``) and renders FILETIME values as ``2021-03-02 21:37:04.123456+00:00``
  (``+00:00`` suffix, no fraction when it is zero), converting through a float, so the rendered
  value can be off by up to 2 microseconds (the raw FILETIME it reads is exact).  GUIDs come out
  lower case in braces, ``Keywords`` zero-padded (``0x0080000000000000``); non-ASCII text is
  written as character references and control characters are dropped.  It does not escape ``"``
  in attribute values, so ``Data`` names and provider names must not contain double quotes.

EventData: a ``dict`` becomes ``<Data Name="k">v</Data>`` elements (``str`` -> UTF-16 string,
``int`` -> UInt32/UInt64/Int64, ``None`` -> a NULL substitution, which both readers show as an
empty ``<Data Name="k"></Data>`` -- the evtx JSON value is ``""``, like an empty string); a ``list``
becomes unnamed ``<Data>`` elements as classic (``ReportEvent``) providers produce them, one
substitution per element, so both readers return the same list (evtx: ``"Data": {"#text": [...]}``,
or ``{"#text": "v"}`` for a single item).  Windows may instead store insertion strings as one
string-array substitution, which python-evtx renders as a single ``<Data>`` with ``<string>``
fragments.  An event with no data gets no ``EventData`` element.
``user_data`` produces ``<UserData><Name xmlns="...">fields</Name></UserData>`` instead; give the
namespace in ElementTree's Clark notation (``"{namespace}Name"``).

Record identifiers should increase through the file, as Windows writes them (evtx stops reading a
chunk at the record whose identifier equals the chunk's last one).  Limits: one record must fit in
one chunk (about 64 KB of Binary XML) and one value in 65535 bytes (32767 UTF-16 code units);
:class:`ValueError` is raised otherwise.  Only the standard library is used.  Layout facts follow
the public libyal "Windows XML Event Log (EVTX) format" notes and MS-EVEN6.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from triage.formats.times import EPOCH_1601

__all__ = [
    "CHUNK_HEADER_SIZE",
    "CHUNK_SIZE",
    "EVENTLOG_NS",
    "EVENT_NS",
    "FILE_FLAG_DIRTY",
    "FILE_FLAG_FULL",
    "FILE_HEADER_SIZE",
    "Event",
    "chunk_data_checksum",
    "chunk_header_checksum",
    "corrupt_chunk",
    "evtx_bytes",
    "file_header_checksum",
    "filetime",
    "name_hash",
    "write_evtx",
]

EVENT_NS = "http://schemas.microsoft.com/win/2004/08/events/event"
EVENTLOG_NS = "http://manifests.microsoft.com/win/2004/08/windows/eventlog"  # e.g. Security 1102 UserData

FILE_HEADER_SIZE = 4096
FILE_HEADER_USED = 128
CHUNK_SIZE = 65536
CHUNK_HEADER_SIZE = 512
RECORD_HEADER_SIZE = 24
FILE_FLAG_DIRTY = 0x1
FILE_FLAG_FULL = 0x2
MAX_VALUE_BYTES = 0xFFFF

_FILE_MAGIC = b"ElfFile\x00"
_CHUNK_MAGIC = b"ElfChnk\x00"
_RECORD_MAGIC = 0x00002A2A
_STRING_BUCKETS = 64
_TEMPLATE_BUCKETS = 32
_STRING_TABLE_OFFSET = 128
_TEMPLATE_TABLE_OFFSET = _STRING_TABLE_OFFSET + 4 * _STRING_BUCKETS
_FILETIME_EPOCH = EPOCH_1601
_NO_DEPENDENCY = 0xFFFF

# Binary XML tokens (0x40 is the "more data follows" / "has attributes" flag).
_TOK_EOF = 0x00
_TOK_OPEN_START = 0x01
_TOK_OPEN_START_ATTRS = 0x41
_TOK_CLOSE_START = 0x02
_TOK_CLOSE_EMPTY = 0x03
_TOK_END_ELEMENT = 0x04
_TOK_VALUE = 0x05
_TOK_ATTRIBUTE = 0x06
_TOK_ATTRIBUTE_MORE = 0x46
_TOK_TEMPLATE_INSTANCE = 0x0C
_TOK_NORMAL_SUB = 0x0D
_TOK_OPTIONAL_SUB = 0x0E
_FRAGMENT_HEADER = b"\x0f\x01\x01\x00"  # start-of-stream token, version 1.1, flags 0

# Value types.
_T_NULL = 0x00
_T_STRING = 0x01
_T_UINT8 = 0x04
_T_UINT16 = 0x06
_T_UINT32 = 0x08
_T_INT64 = 0x09
_T_UINT64 = 0x0A
_T_GUID = 0x0F
_T_FILETIME = 0x11
_T_SID = 0x13
_T_HEX64 = 0x15

# Substitution indexes of the System section (the order Windows uses); EventData values follow.
_S_LEVEL = 0
_S_OPCODE = 1
_S_TASK = 2
_S_EVENT_ID = 3
_S_QUALIFIERS = 4
_S_KEYWORDS = 5
_S_TIME = 6
_S_ACTIVITY = 7
_S_PID = 8
_S_TID = 9
_S_RECORD_ID = 10
_S_VERSION = 11
_S_USER = 12
_S_RELATED = 13
_S_PROVIDER = 14
_S_PROVIDER_GUID = 15
_S_SOURCE_NAME = 16
_S_CHANNEL = 17
_S_COMPUTER = 18
_S_FIRST_DATA = 19

_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_SID = re.compile(r"S-(\d+)-(\d+)((?:-\d+)*)\Z", re.IGNORECASE)

DataValue = str | int | None


@dataclass
class Event:
    """One event record.  ``time_created`` is required and keyword-only; naive datetimes are UTC."""

    event_id: int
    provider: str
    channel: str
    computer: str = "EXCH01.corp.example"
    time_created: datetime = field(kw_only=True)
    record_id: int | None = None
    level: int = 4
    task: int = 0
    opcode: int = 0
    keywords: int = 0x8000000000000000
    provider_guid: str | None = None
    event_source_name: str | None = None
    qualifiers: int | None = None
    version: int = 0
    process_id: int = 4
    thread_id: int = 8
    user_sid: str | None = None
    data: dict[str, DataValue] | list[DataValue] = field(default_factory=dict)
    user_data: tuple[str, dict[str, DataValue]] | None = None


# -- primitive encoders ---------------------------------------------------------------------------


def filetime(value: datetime) -> int:
    """Return ``value`` as a FILETIME (100 ns intervals since 1601-01-01 UTC); naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ticks = (value - _FILETIME_EPOCH) // timedelta(microseconds=1) * 10
    if not 0 <= ticks < 1 << 64:
        raise ValueError(f"datetime out of FILETIME range: {value!r}")
    return ticks


def name_hash(name: str) -> int:
    """Binary XML name hash: low 16 bits of ``h = h * 65599 + code_unit`` over the UTF-16 code units."""
    value = 0
    units = name.encode("utf-16-le")
    for (unit,) in struct.iter_unpack("<H", units):
        value = (value * 65599 + unit) & 0xFFFFFFFF
    return value & 0xFFFF


def file_header_checksum(header: bytes | bytearray) -> int:
    """CRC32 stored at offset 124 of the file header: over its first 120 bytes."""
    return zlib.crc32(header[:120])


def chunk_header_checksum(chunk: bytes | bytearray) -> int:
    """CRC32 stored at offset 124 of a chunk: over chunk bytes 0-120 and 128-512."""
    return zlib.crc32(chunk[128:CHUNK_HEADER_SIZE], zlib.crc32(chunk[:120]))


def chunk_data_checksum(chunk: bytes) -> int:
    """CRC32 stored at offset 52 of a chunk: over the event records (512 up to the free space offset)."""
    free = struct.unpack_from("<I", chunk, 48)[0]
    return zlib.crc32(chunk[CHUNK_HEADER_SIZE:free])


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def _guid_bytes(text: str) -> bytes:
    try:
        return uuid.UUID(text.strip().strip("{}")).bytes_le
    except ValueError:
        raise ValueError(f"invalid GUID: {text!r}") from None


def _sid_bytes(text: str) -> bytes:
    match = _SID.match(text.strip())
    if not match:
        raise ValueError(f"invalid SID: {text!r}")
    revision, authority = int(match.group(1)), int(match.group(2))
    subs = [int(part) for part in match.group(3).split("-")[1:]]
    if revision > 0xFF or authority >= 1 << 48 or len(subs) > 15 or any(s > 0xFFFFFFFF for s in subs):
        raise ValueError(f"invalid SID: {text!r}")
    return struct.pack("<BB", revision, len(subs)) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def _check_int(label: str, value: int, bits: int) -> int:
    if not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{label} must be an unsigned {bits}-bit integer, got {value!r}")
    return value


def _data_type(value: object) -> int:
    """Value type declared in the template for an EventData/UserData value."""
    if value is None or isinstance(value, str):
        return _T_STRING
    if isinstance(value, int):
        if 0 <= value <= 0xFFFFFFFF:
            return _T_UINT32
        if 0 <= value < 1 << 64:
            return _T_UINT64
        if -(1 << 63) <= value < 0:
            return _T_INT64
        raise ValueError(f"integer value out of range: {value!r}")
    raise TypeError(f"unsupported data value type {type(value).__name__}: {value!r}")


def _data_value(value: DataValue) -> tuple[int, bytes]:
    """Substitution (type, bytes) for an EventData/UserData value; ``None`` is a NULL substitution."""
    if value is None:
        return _T_NULL, b""
    if isinstance(value, str):
        return _T_STRING, _utf16(value)
    kind = _data_type(value)
    if kind == _T_UINT32:
        return kind, struct.pack("<I", value)
    if kind == _T_UINT64:
        return kind, struct.pack("<Q", value)
    return kind, struct.pack("<q", value)


# -- templates ------------------------------------------------------------------------------------

# A template key describes the XML skeleton: ("data", ((name, type), ...)), ("list", (type, ...)),
# ("user", clark_name, ((field, type), ...)) or ("none",).
_TemplateKey = tuple


def _template_key(event: Event) -> _TemplateKey:
    if event.user_data is not None:
        name, fields = event.user_data
        return ("user", name, tuple((key, _data_type(value)) for key, value in fields.items()))
    if isinstance(event.data, dict):
        if not event.data:
            return ("none",)
        return ("data", tuple((str(key), _data_type(value)) for key, value in event.data.items()))
    if isinstance(event.data, list | tuple):
        if not event.data:
            return ("none",)
        return ("list", tuple(_data_type(value) for value in event.data))
    raise TypeError(f"Event.data must be a dict or a list, got {type(event.data).__name__}")


def _template_guid(key: _TemplateKey) -> bytes:
    return hashlib.md5(repr(key).encode("utf-8"), usedforsecurity=False).digest()


def _check_xml_name(name: str) -> str:
    if not _XML_NAME.match(name):
        raise ValueError(f"not a usable XML element name: {name!r}")
    return name


class _Writer:
    """Emits template Binary XML at a known chunk offset, sharing names with the chunk."""

    def __init__(self, base: int, names: dict[str, int]) -> None:
        self.out = bytearray()
        self.base = base
        self.names = names
        self.new_names: list[tuple[str, int]] = []

    def name(self, text: str) -> None:
        """A name reference: the chunk offset of the name, followed by the name if it is new."""
        known = self.names.get(text)
        if known is not None:
            self.out += struct.pack("<I", known)
            return
        offset = self.base + len(self.out) + 4
        self.names[text] = offset
        self.new_names.append((text, offset))
        encoded = _utf16(text)
        self.out += struct.pack("<IIHH", offset, 0, name_hash(text), len(encoded) // 2)
        self.out += encoded + b"\x00\x00"

    def text(self, value: str) -> None:
        encoded = _utf16(value)
        self.out += struct.pack("<BBH", _TOK_VALUE, _T_STRING, len(encoded) // 2) + encoded

    def sub(self, index: int, value_type: int, optional: bool = False) -> Callable[[], None]:
        token = _TOK_OPTIONAL_SUB if optional else _TOK_NORMAL_SUB

        def emit() -> None:
            self.out += struct.pack("<BHB", token, index, value_type)

        return emit

    def literal(self, value: str) -> Callable[[], None]:
        return lambda: self.text(value)

    def element(
        self,
        tag: str,
        attrs: Iterable[tuple[str, Callable[[], None]]] = (),
        content: Callable[[], None] | None = None,
    ) -> None:
        """Open start element, attributes, then content and end element (or close empty element)."""
        out = self.out
        attrs = list(attrs)
        out.append(_TOK_OPEN_START_ATTRS if attrs else _TOK_OPEN_START)
        out += struct.pack("<H", _NO_DEPENDENCY)
        size_at = len(out)
        out += b"\x00\x00\x00\x00"
        self.name(tag)
        if attrs:
            list_size_at = len(out)
            out += b"\x00\x00\x00\x00"
            for number, (attr_name, value) in enumerate(attrs):
                out.append(_TOK_ATTRIBUTE_MORE if number < len(attrs) - 1 else _TOK_ATTRIBUTE)
                self.name(attr_name)
                value()
            struct.pack_into("<I", out, list_size_at, len(out) - list_size_at - 4)
        if content is None:
            out.append(_TOK_CLOSE_EMPTY)
        else:
            out.append(_TOK_CLOSE_START)
            content()
            out.append(_TOK_END_ELEMENT)
        struct.pack_into("<I", out, size_at, len(out) - size_at - 4)


def _template_body(key: _TemplateKey, writer: _Writer) -> None:
    """Write the fragment of a template: ``<Event>`` with ``System`` and the payload section."""
    w = writer
    sub = w.sub

    def system() -> None:
        w.element(
            "Provider",
            [
                ("Name", sub(_S_PROVIDER, _T_STRING)),
                ("Guid", sub(_S_PROVIDER_GUID, _T_GUID, optional=True)),
                ("EventSourceName", sub(_S_SOURCE_NAME, _T_STRING, optional=True)),
            ],
        )
        w.element("EventID", [("Qualifiers", sub(_S_QUALIFIERS, _T_UINT16, True))], sub(_S_EVENT_ID, _T_UINT16))
        w.element("Version", content=sub(_S_VERSION, _T_UINT8))
        w.element("Level", content=sub(_S_LEVEL, _T_UINT8))
        w.element("Task", content=sub(_S_TASK, _T_UINT16))
        w.element("Opcode", content=sub(_S_OPCODE, _T_UINT8))
        w.element("Keywords", content=sub(_S_KEYWORDS, _T_HEX64))
        w.element("TimeCreated", [("SystemTime", sub(_S_TIME, _T_FILETIME))])
        w.element("EventRecordID", content=sub(_S_RECORD_ID, _T_UINT64))
        w.element(
            "Correlation",
            [("ActivityID", sub(_S_ACTIVITY, _T_GUID, True)), ("RelatedActivityID", sub(_S_RELATED, _T_GUID, True))],
        )
        w.element("Execution", [("ProcessID", sub(_S_PID, _T_UINT32)), ("ThreadID", sub(_S_TID, _T_UINT32))])
        w.element("Channel", content=sub(_S_CHANNEL, _T_STRING))
        w.element("Computer", content=sub(_S_COMPUTER, _T_STRING))
        w.element("Security", [("UserID", sub(_S_USER, _T_SID, True))])

    def payload() -> None:
        kind = key[0]
        if kind == "data":

            def named() -> None:
                for index, (data_name, value_type) in enumerate(key[1]):
                    w.element("Data", [("Name", w.literal(data_name))], sub(_S_FIRST_DATA + index, value_type))

            w.element("EventData", content=named)
        elif kind == "list":

            def unnamed() -> None:
                for index, value_type in enumerate(key[1]):
                    w.element("Data", content=sub(_S_FIRST_DATA + index, value_type))

            w.element("EventData", content=unnamed)
        elif kind == "user":
            clark, fields = key[1], key[2]
            namespace, _, local = clark[1:].partition("}") if clark.startswith("{") else ("", "", clark)
            attrs = [("xmlns", w.literal(namespace))] if namespace else []

            def user_fields() -> None:
                for index, (field_name, value_type) in enumerate(fields):
                    w.element(_check_xml_name(field_name), content=sub(_S_FIRST_DATA + index, value_type))

            w.element("UserData", content=lambda: w.element(_check_xml_name(local), attrs, user_fields))

    def event() -> None:
        w.element("System", content=system)
        payload()

    w.out += _FRAGMENT_HEADER
    w.element("Event", [("xmlns", w.literal(EVENT_NS))], event)
    w.out.append(_TOK_EOF)


# -- records --------------------------------------------------------------------------------------


def _substitutions(event: Event, record_id: int) -> bytes:
    """The substitution array of a record: count, (size, type) descriptors, then the values."""
    values: list[tuple[int, bytes]] = [(_T_NULL, b"")] * _S_FIRST_DATA
    values[_S_LEVEL] = (_T_UINT8, bytes([_check_int("level", event.level, 8)]))
    values[_S_OPCODE] = (_T_UINT8, bytes([_check_int("opcode", event.opcode, 8)]))
    values[_S_TASK] = (_T_UINT16, struct.pack("<H", _check_int("task", event.task, 16)))
    values[_S_EVENT_ID] = (_T_UINT16, struct.pack("<H", _check_int("event_id", event.event_id, 16)))
    if event.qualifiers is not None:
        values[_S_QUALIFIERS] = (_T_UINT16, struct.pack("<H", _check_int("qualifiers", event.qualifiers, 16)))
    values[_S_KEYWORDS] = (_T_HEX64, struct.pack("<Q", _check_int("keywords", event.keywords, 64)))
    values[_S_TIME] = (_T_FILETIME, struct.pack("<Q", filetime(event.time_created)))
    values[_S_PID] = (_T_UINT32, struct.pack("<I", _check_int("process_id", event.process_id, 32)))
    values[_S_TID] = (_T_UINT32, struct.pack("<I", _check_int("thread_id", event.thread_id, 32)))
    values[_S_RECORD_ID] = (_T_UINT64, struct.pack("<Q", record_id))
    values[_S_VERSION] = (_T_UINT8, bytes([_check_int("version", event.version, 8)]))
    if event.user_sid is not None:
        values[_S_USER] = (_T_SID, _sid_bytes(event.user_sid))
    values[_S_PROVIDER] = (_T_STRING, _utf16(event.provider))
    if event.provider_guid is not None:
        values[_S_PROVIDER_GUID] = (_T_GUID, _guid_bytes(event.provider_guid))
    if event.event_source_name is not None:
        values[_S_SOURCE_NAME] = (_T_STRING, _utf16(event.event_source_name))
    values[_S_CHANNEL] = (_T_STRING, _utf16(event.channel))
    values[_S_COMPUTER] = (_T_STRING, _utf16(event.computer))
    if event.user_data is not None:
        values += [_data_value(value) for value in event.user_data[1].values()]
    elif isinstance(event.data, dict):
        values += [_data_value(value) for value in event.data.values()]
    else:
        values += [_data_value(value) for value in event.data]

    descriptors = bytearray(struct.pack("<I", len(values)))
    payload = bytearray()
    for value_type, raw in values:
        if len(raw) > MAX_VALUE_BYTES:
            raise ValueError(f"value of {len(raw)} bytes exceeds the {MAX_VALUE_BYTES}-byte substitution limit")
        descriptors += struct.pack("<HBB", len(raw), value_type, 0)
        payload += raw
    return bytes(descriptors + payload)


class _Chunk:
    """One 64 KiB chunk being filled with records."""

    def __init__(self) -> None:
        self.buf = bytearray(CHUNK_SIZE)
        self.free = CHUNK_HEADER_SIZE
        self.last_record = 0
        self.count = 0
        self.first_id = 0
        self.last_id = 0
        self.names: dict[str, int] = {}
        self.templates: dict[_TemplateKey, tuple[int, int]] = {}  # key -> (definition offset, template id)
        self.string_tail: dict[int, int] = {}
        self.template_tail: dict[int, int] = {}

    def build_record(self, event: Event, record_id: int, key: _TemplateKey) -> tuple[bytes, _Writer | None]:
        """Serialise ``event`` as if appended at the free offset; names are not committed yet."""
        start = self.free
        instance_at = start + RECORD_HEADER_SIZE + len(_FRAGMENT_HEADER)
        known = self.templates.get(key)
        writer = None
        if known is None:
            definition_at = instance_at + 10
            writer = _Writer(definition_at + 24, dict(self.names))
            _template_body(key, writer)
            guid = _template_guid(key)
            template_id = struct.unpack_from("<I", guid)[0]
            resident = struct.pack("<I", 0) + guid + struct.pack("<I", len(writer.out)) + writer.out
        else:
            definition_at, template_id = known
            resident = b""
        body = b"".join(
            (
                _FRAGMENT_HEADER,
                struct.pack("<BBII", _TOK_TEMPLATE_INSTANCE, 1, template_id, definition_at),
                resident,
                _substitutions(event, record_id),
            )
        )
        size = RECORD_HEADER_SIZE + len(body) + 4
        header = struct.pack("<IIQQ", _RECORD_MAGIC, size, record_id, filetime(event.time_created))
        return header + body + struct.pack("<I", size), writer

    def fits(self, record: bytes) -> bool:
        return self.free + len(record) <= CHUNK_SIZE

    def commit(self, record: bytes, record_id: int, key: _TemplateKey, writer: _Writer | None) -> None:
        start = self.free
        self.buf[start : start + len(record)] = record
        if writer is not None:
            for text, offset in writer.new_names:
                self.names[text] = offset
                self._link(self.string_tail, _STRING_TABLE_OFFSET, name_hash(text) % _STRING_BUCKETS, offset)
            definition_at = start + RECORD_HEADER_SIZE + len(_FRAGMENT_HEADER) + 10
            template_id = struct.unpack_from("<I", record, RECORD_HEADER_SIZE + len(_FRAGMENT_HEADER) + 2)[0]
            self.templates[key] = (definition_at, template_id)
            self._link(self.template_tail, _TEMPLATE_TABLE_OFFSET, template_id % _TEMPLATE_BUCKETS, definition_at)
        if self.count == 0:
            self.first_id = record_id
        self.last_id = record_id
        self.last_record = start
        self.count += 1
        self.free = start + len(record)

    def _link(self, tails: dict[int, int], table: int, bucket: int, offset: int) -> None:
        """Append ``offset`` to a hash bucket: the table points at the first entry, entries chain forward."""
        previous = tails.get(bucket)
        if previous is None:
            struct.pack_into("<I", self.buf, table + 4 * bucket, offset)
        else:
            struct.pack_into("<I", self.buf, previous, offset)
        tails[bucket] = offset

    def finish(self) -> bytes:
        buf = self.buf
        buf[0:8] = _CHUNK_MAGIC
        struct.pack_into("<QQQQ", buf, 8, self.first_id, self.last_id, self.first_id, self.last_id)
        struct.pack_into("<III", buf, 40, 128, self.last_record, self.free)
        struct.pack_into("<I", buf, 52, zlib.crc32(buf[CHUNK_HEADER_SIZE : self.free]))
        struct.pack_into("<I", buf, 124, chunk_header_checksum(buf))
        return bytes(buf)


# -- files ----------------------------------------------------------------------------------------


def evtx_bytes(events: Iterable[Event], *, chunk_records: int | None = None, dirty: bool = False) -> bytes:
    """Serialise ``events`` as a complete EVTX file.

    Record identifiers default to one more than the previous record's (starting at 1).  Records fill
    a chunk until the next one does not fit; ``chunk_records`` additionally caps the number of records
    per chunk (handy to get multi-chunk files from few events).  ``dirty`` sets the file header's
    dirty flag, as on a log that was not closed cleanly.
    """
    if chunk_records is not None and chunk_records < 1:
        raise ValueError("chunk_records must be a positive integer")
    chunks: list[bytes] = []
    chunk = _Chunk()
    next_id = 1
    for event in events:
        record_id = next_id if event.record_id is None else _check_int("record_id", event.record_id, 64)
        key = _template_key(event)
        if chunk_records is not None and chunk.count >= chunk_records:
            chunks.append(chunk.finish())
            chunk = _Chunk()
        record, writer = chunk.build_record(event, record_id, key)
        if not chunk.fits(record):
            if chunk.count == 0:
                raise ValueError(f"record {record_id} is {len(record)} bytes and does not fit in a chunk")
            chunks.append(chunk.finish())
            chunk = _Chunk()
            record, writer = chunk.build_record(event, record_id, key)
            if not chunk.fits(record):
                raise ValueError(f"record {record_id} is {len(record)} bytes and does not fit in a chunk")
        chunk.commit(record, record_id, key, writer)
        next_id = record_id + 1
    if chunk.count:
        chunks.append(chunk.finish())
    if len(chunks) > 0xFFFF:
        raise ValueError("too many chunks for one EVTX file")

    header = bytearray(FILE_HEADER_SIZE)
    header[0:8] = _FILE_MAGIC
    struct.pack_into(
        "<QQQIHHHH",
        header,
        8,
        0,  # first (oldest) chunk number
        max(len(chunks) - 1, 0),  # last (current) chunk number
        next_id,  # next record identifier
        FILE_HEADER_USED,
        1,  # minor format version
        3,  # major format version
        FILE_HEADER_SIZE,
        len(chunks),
    )
    struct.pack_into("<I", header, 120, FILE_FLAG_DIRTY if dirty else 0)
    struct.pack_into("<I", header, 124, file_header_checksum(header))
    return bytes(header) + b"".join(chunks)


def write_evtx(
    path: str | os.PathLike[str],
    events: Iterable[Event],
    *,
    chunk_records: int | None = None,
    dirty: bool = False,
) -> Path:
    """Write ``events`` to ``path`` as an EVTX file (see :func:`evtx_bytes`) and return the path."""
    target = Path(path)
    target.write_bytes(evtx_bytes(events, chunk_records=chunk_records, dirty=dirty))
    return target


def logon_log(path: str | os.PathLike[str], events: int = 4) -> Path:
    """A Security log of ``events`` network logons a minute apart (the tiny file of start-up measurements)."""
    return write_evtx(
        path,
        [
            Event(
                event_id=4624,
                provider="Microsoft-Windows-Security-Auditing",
                channel="Security",
                time_created=datetime(2021, 3, 3, 2, i, tzinfo=UTC),
                data={"TargetUserName": "admin", "LogonType": 3},
            )
            for i in range(events)
        ],
    )


def corrupt_chunk(data: bytes, chunk_index: int) -> bytes:
    """Return a copy of an EVTX file image whose chunk ``chunk_index`` has its signature destroyed."""
    start = FILE_HEADER_SIZE + chunk_index * CHUNK_SIZE
    if chunk_index < 0 or start + CHUNK_SIZE > len(data):
        raise IndexError(f"no chunk {chunk_index} in a {len(data)}-byte file")
    damaged = bytearray(data)
    damaged[start : start + 8] = b"\xde\xad\xbe\xef" * 2
    return bytes(damaged)
