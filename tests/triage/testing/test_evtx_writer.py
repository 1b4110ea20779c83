"""Tests for the EVTX writer, reading every file back with both `evtx` (Rust) and `python-evtx`."""

from __future__ import annotations

import json
import struct
import time
import uuid
import warnings
import xml.etree.ElementTree as ET
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import Evtx.Evtx as pyevtx
import Evtx.Nodes as pyevtx_nodes
import pytest
from evtx import PyEvtxParser

from triage.testing.evtx import (
    CHUNK_SIZE,
    EVENT_NS,
    EVENTLOG_NS,
    FILE_HEADER_SIZE,
    Event,
    corrupt_chunk,
    evtx_bytes,
    filetime,
    name_hash,
    write_evtx,
)

NS = "{" + EVENT_NS + "}"
T0 = datetime(2021, 3, 2, 21, 37, 4, 123456, tzinfo=UTC)
SYSMON = "Microsoft-Windows-Sysmon"
SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
SYSMON_GUID = "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}"
EVENTLOG_GUID = "{fc65ddd8-d6ef-4962-83d5-6e5cfe9ce148}"
UM = "MSExchange Unified Messaging"


def sysmon_event(i: int = 0, **overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": 1,
        "provider": SYSMON,
        "channel": SYSMON_CHANNEL,
        "time_created": T0 + timedelta(seconds=i, microseconds=7 * i),
        "provider_guid": SYSMON_GUID,
        "user_sid": "S-1-5-18",
        "version": 5,
        "task": 1,
        "keywords": 0x8000000000000000,
        "process_id": 3120,
        "thread_id": 4044,
        "data": {
            "RuleName": "-",
            "UtcTime": (T0 + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
            "ProcessId": 6000 + i,
            "Image": r"C:\Windows\System32\cmd.exe",
            "CommandLine": rf"cmd.exe /c whoami > C:\inetpub\wwwroot\aspnet_client\{i}.txt",
            "ParentImage": r"C:\Windows\System32\inetsrv\w3wp.exe",
            "User": r"NT AUTHORITY\SYSTEM",
        },
    }
    fields.update(overrides)
    return Event(**fields)


def um_event(strings: list[Any], **overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": 4999,
        "provider": UM,
        "channel": "Application",
        "time_created": T0,
        "level": 2,
        "qualifiers": 16388,
        "keywords": 0x80000000000000,
        "process_id": 0,
        "thread_id": 0,
        "data": strings,
    }
    fields.update(overrides)
    return Event(**fields)


def log_cleared_event(**overrides: Any) -> Event:
    fields: dict[str, Any] = {
        "event_id": 1102,
        "provider": "Microsoft-Windows-Eventlog",
        "channel": "Security",
        "time_created": T0,
        "provider_guid": EVENTLOG_GUID,
        "task": 104,
        "keywords": 0x4020000000000000,
        "process_id": 1000,
        "thread_id": 2000,
        "user_data": (
            "{" + EVENTLOG_NS + "}LogFileCleared",
            {
                "SubjectUserSid": "S-1-5-21-3623811015-3361044348-30300820-500",
                "SubjectUserName": "Administrator",
                "SubjectDomainName": "CORP",
                "SubjectLogonId": "0x3e7",
            },
        ),
    }
    fields.update(overrides)
    return Event(**fields)


# -- reading helpers ------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        raise AssertionError(f"unexpected JSON boolean {value!r}")
    return str(value)


def _guid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value.strip("{}")) if value else None


def expected_records(events: list[Event]) -> list[dict[str, Any]]:
    """What a reader must report for ``events`` (values as text, None/'' -> '')."""
    out = []
    next_id = 1
    for event in events:
        record_id = next_id if event.record_id is None else event.record_id
        next_id = record_id + 1
        data: Any = None
        user_data = None
        if event.user_data is not None:
            name, fields = event.user_data
            user_data = (name, {key: _text(value) for key, value in fields.items()})
        elif isinstance(event.data, dict) and event.data:
            data = {key: _text(value) for key, value in event.data.items()}
        elif isinstance(event.data, list) and event.data:
            data = [_text(value) for value in event.data]
        out.append(
            {
                "record_id": record_id,
                "event_id": event.event_id,
                "qualifiers": event.qualifiers,
                "provider": event.provider,
                "provider_guid": _guid(event.provider_guid),
                "event_source_name": event.event_source_name,
                "channel": event.channel,
                "computer": event.computer,
                "level": event.level,
                "task": event.task,
                "opcode": event.opcode,
                "version": event.version,
                "keywords": event.keywords,
                "process_id": event.process_id,
                "thread_id": event.thread_id,
                "user_sid": event.user_sid,
                "data": data,
                "user_data": user_data,
            }
        )
    return out


def _rust_time(text: str) -> datetime:
    return datetime.fromisoformat(text.removesuffix(" UTC"))


def rust_records(path: Path, **kwargs: Any) -> list[dict[str, Any]]:
    """Raw `evtx` JSON records: header id, header timestamp and the parsed ``data``."""
    return [
        {"id": r["event_record_id"], "timestamp": r["timestamp"], "json": json.loads(r["data"])}
        for r in PyEvtxParser(str(path), **kwargs).records_json()
    ]


def normalize_rust(record: dict[str, Any]) -> tuple[dict[str, Any], datetime]:
    event = record["json"]["Event"]
    assert event["#attributes"] == {"xmlns": EVENT_NS}
    system = event["System"]
    event_id, qualifiers = system["EventID"], None
    if isinstance(event_id, dict):
        qualifiers = event_id["#attributes"]["Qualifiers"]
        event_id = event_id["#text"]
    provider = system["Provider"]["#attributes"]
    execution = system["Execution"]["#attributes"]
    security = system["Security"]
    data: Any = None
    user_data = None
    if "EventData" in event:
        event_data = event["EventData"]
        if set(event_data) == {"Data"} and isinstance(event_data["Data"], dict):
            items = event_data["Data"]["#text"]
            data = [_text(v) for v in (items if isinstance(items, list) else [items])]
        else:
            data = {key: _text(value) for key, value in event_data.items()}
    if "UserData" in event:
        ((tag, body),) = event["UserData"].items()
        namespace = body.get("#attributes", {}).get("xmlns")
        fields = {key: _text(value) for key, value in body.items() if key != "#attributes"}
        user_data = (f"{{{namespace}}}{tag}" if namespace else tag, fields)
    assert record["id"] == system["EventRecordID"]
    time_created = _rust_time(system["TimeCreated"]["#attributes"]["SystemTime"])
    assert _rust_time(record["timestamp"]) == time_created  # record header written time
    return (
        {
            "record_id": system["EventRecordID"],
            "event_id": event_id,
            "qualifiers": qualifiers,
            "provider": provider["Name"],
            "provider_guid": _guid(provider.get("Guid")),
            "event_source_name": provider.get("EventSourceName"),
            "channel": system["Channel"],
            "computer": system["Computer"],
            "level": system["Level"],
            "task": system["Task"],
            "opcode": system["Opcode"],
            "version": system["Version"],
            "keywords": int(system["Keywords"], 16),
            "process_id": execution["ProcessID"],
            "thread_id": execution["ThreadID"],
            "user_sid": security["#attributes"]["UserID"] if security else None,
            "data": data,
            "user_data": user_data,
        },
        time_created,
    )


def _ft_to_datetime(value: int) -> datetime:
    return datetime(1601, 1, 1, tzinfo=UTC) + timedelta(microseconds=value // 10)


def normalize_py(record: Any) -> tuple[dict[str, Any], datetime, datetime]:
    """python-evtx record -> (normalised fields, rendered SystemTime, exact FILETIME it read)."""
    root = ET.fromstring(record.xml())
    assert root.tag == NS + "Event"
    system = root.find(NS + "System")
    assert system is not None

    def element(tag: str) -> ET.Element:
        found = system.find(NS + tag)
        assert found is not None, tag
        return found

    def attr(tag: str, name: str) -> str | None:
        return element(tag).get(name) or None  # python-evtx renders NULL attributes as ""

    qualifiers = attr("EventID", "Qualifiers")
    data: Any = None
    user_data = None
    event_data = root.find(NS + "EventData")
    if event_data is not None:
        items = list(event_data)
        assert all(item.tag == NS + "Data" for item in items)
        if any("Name" in item.attrib for item in items):
            data = {item.get("Name"): item.text or "" for item in items}
        else:
            data = [item.text or "" for item in items]
    user_data_el = root.find(NS + "UserData")
    if user_data_el is not None:
        (inner,) = list(user_data_el)
        fields = {child.tag.rpartition("}")[2]: child.text or "" for child in inner}
        user_data = (inner.tag.removeprefix(NS), fields)  # no xmlns of its own: inherits the Event one
    (time_node,) = [s for s in record.root().substitutions() if isinstance(s, pyevtx_nodes.FiletimeTypeNode)]
    exact = _ft_to_datetime(time_node.unpack_qword(0))
    assert exact == _ft_to_datetime(struct.unpack_from("<Q", record.data(), 16)[0])  # header written time
    return (
        {
            "record_id": int(element("EventRecordID").text or ""),
            "event_id": int(element("EventID").text or ""),
            "qualifiers": int(qualifiers) if qualifiers else None,
            "provider": attr("Provider", "Name"),
            "provider_guid": _guid(attr("Provider", "Guid")),
            "event_source_name": attr("Provider", "EventSourceName"),
            "channel": element("Channel").text,
            "computer": element("Computer").text,
            "level": int(element("Level").text or ""),
            "task": int(element("Task").text or ""),
            "opcode": int(element("Opcode").text or ""),
            "version": int(element("Version").text or ""),
            "keywords": int(element("Keywords").text or "", 16),
            "process_id": int(attr("Execution", "ProcessID") or ""),
            "thread_id": int(attr("Execution", "ThreadID") or ""),
            "user_sid": attr("Security", "UserID"),
            "data": data,
            "user_data": user_data,
        },
        datetime.fromisoformat(attr("TimeCreated", "SystemTime") or ""),
        exact,
    )


def py_records(path: Path) -> list[tuple[int, dict[str, Any], datetime, datetime]]:
    with pyevtx.Evtx(str(path)) as log:
        return [(record.record_num(), *normalize_py(record)) for record in log.records()]


def roundtrip(tmp_path: Path, events: list[Event], **kwargs: Any) -> Path:
    """Write ``events``, read them with both parsers and check both report exactly what was written."""
    path = write_evtx(tmp_path / "test.evtx", events, **kwargs)
    expected = expected_records(events)
    times = [e.time_created for e in events]

    rust = [normalize_rust(r) for r in rust_records(path, validate_checksums=True)]
    assert [fields for fields, _ in rust] == expected
    assert [t for _, t in rust] == times

    py = py_records(path)
    assert [num for num, *_ in py] == [e["record_id"] for e in expected]
    assert [fields for _, fields, _, _ in py] == expected
    assert [exact for *_, exact in py] == times
    # python-evtx renders FILETIMEs through a float: up to 2 microseconds off.
    assert all(abs(rendered - t) <= timedelta(microseconds=2) for (_, _, rendered, _), t in zip(py, times, strict=True))
    return path


# -- layout helpers -------------------------------------------------------------------------------


def walk(data: bytes) -> list[dict[str, Any]]:
    """Check the file and chunk headers, checksums and record framing; return per-chunk facts."""
    header = data[:FILE_HEADER_SIZE]
    assert header[:8] == b"ElfFile\x00"
    first_chunk, last_chunk, next_record, header_size, minor, major, block, count = struct.unpack_from(
        "<QQQIHHHH", header, 8
    )
    assert (header_size, minor, major, block) == (128, 1, 3, 4096)
    assert struct.unpack_from("<I", header, 124)[0] == zlib.crc32(header[:120])
    assert header[128:] == bytes(FILE_HEADER_SIZE - 128)
    assert len(data) == FILE_HEADER_SIZE + count * CHUNK_SIZE
    assert first_chunk == 0
    assert last_chunk == max(count - 1, 0)
    chunks = []
    last_id = 0
    for index in range(count):
        chunk = data[FILE_HEADER_SIZE + index * CHUNK_SIZE :][:CHUNK_SIZE]
        assert chunk[:8] == b"ElfChnk\x00"
        first_num, last_num, first_id, last_id, size, last_offset, free = struct.unpack_from("<QQQQIII", chunk, 8)
        assert size == 128
        assert struct.unpack_from("<I", chunk, 52)[0] == zlib.crc32(chunk[512:free])
        assert struct.unpack_from("<I", chunk, 124)[0] == zlib.crc32(chunk[:120] + chunk[128:512])
        assert chunk[free:] == bytes(CHUNK_SIZE - free)
        ids = []
        offset = 512
        while offset < free:
            magic, rec_size, rec_id = struct.unpack_from("<IIQ", chunk, offset)
            assert magic == 0x2A2A
            assert struct.unpack_from("<I", chunk, offset + rec_size - 4)[0] == rec_size
            assert chunk[offset + 24 : offset + 28] == b"\x0f\x01\x01\x00"
            assert chunk[offset + 28] == 0x0C  # template instance
            ids.append(rec_id)
            last_record = offset
            offset += rec_size
        assert offset == free
        assert last_record == last_offset
        assert (first_num, last_num) == (first_id, last_id) == (ids[0], ids[-1])
        chunks.append({"ids": ids, "free": free, "strings": chunk[128:384], "templates": chunk[384:512]})
    assert next_record == last_id + 1
    return chunks


# -- tests ----------------------------------------------------------------------------------------


def test_single_record_json_shape(tmp_path: Path) -> None:
    event = sysmon_event()
    path = roundtrip(tmp_path, [event])
    (record,) = rust_records(path)
    assert record["id"] == 1
    system = record["json"]["Event"]["System"]
    assert system["EventID"] == 1  # a JSON number, no Qualifiers object
    assert system["Provider"]["#attributes"] == {"Name": SYSMON, "Guid": "5770385F-C22A-43E0-BF4C-06F5698FFBD9"}
    assert system["TimeCreated"]["#attributes"]["SystemTime"] == "2021-03-02T21:37:04.123456Z"
    assert system["EventRecordID"] == 1
    assert system["Channel"] == SYSMON_CHANNEL
    assert system["Computer"] == "EXCH01.corp.example"
    assert system["Level"] == 4
    assert system["Keywords"] == "0x8000000000000000"
    assert system["Correlation"] is None
    assert system["Execution"]["#attributes"] == {"ProcessID": 3120, "ThreadID": 4044}
    assert system["Security"]["#attributes"]["UserID"] == "S-1-5-18"
    event_data = record["json"]["Event"]["EventData"]
    assert event_data["ProcessId"] == 6000  # int values are typed (UInt32) -> JSON numbers
    assert event_data["Image"] == r"C:\Windows\System32\cmd.exe"

    with pyevtx.Evtx(str(path)) as log:
        (py_record,) = list(log.records())
        xml = py_record.xml()
    assert 'Guid="{5770385f-c22a-43e0-bf4c-06f5698ffbd9}"' in xml
    assert '<EventID Qualifiers="">1</EventID>' in xml  # NULL optional attributes render empty
    assert 'EventSourceName=""' in xml
    assert '<TimeCreated SystemTime="2021-03-02 21:37:04.12345' in xml  # float rounding: .123455 here


def test_evtx_xml_output_matches(tmp_path: Path) -> None:
    path = write_evtx(tmp_path / "x.evtx", [um_event(["a", "b"]), log_cleared_event()])
    first, second = (ET.fromstring(r["data"]) for r in PyEvtxParser(str(path)).records())
    assert first.find(f"{NS}System/{NS}EventID").attrib == {"Qualifiers": "16388"}
    assert [d.text for d in first.iter(NS + "Data")] == ["a", "b"]
    cleared = second.find(f"{NS}UserData/{{{EVENTLOG_NS}}}LogFileCleared")
    assert cleared is not None
    assert cleared.find(f"{{{EVENTLOG_NS}}}SubjectUserName").text == "Administrator"


def test_many_records_over_forced_chunks(tmp_path: Path) -> None:
    events = [sysmon_event(i) for i in range(500)]
    path = roundtrip(tmp_path, events, chunk_records=50)
    chunks = walk(path.read_bytes())
    assert [c["ids"] for c in chunks] == [list(range(n, n + 50)) for n in range(1, 501, 50)]


def test_many_records_fill_chunks_by_default(tmp_path: Path) -> None:
    events = [sysmon_event(i, data={**sysmon_event(i).data, "Hashes": "SHA256=" + "AB" * 300}) for i in range(500)]
    path = roundtrip(tmp_path, events)
    data = path.read_bytes()
    chunks = walk(data)
    assert len(chunks) >= 5
    assert [i for c in chunks for i in c["ids"]] == list(range(1, 501))
    for index, chunk in enumerate(chunks[:-1]):  # a chunk is closed only when the next record does not fit
        first = FILE_HEADER_SIZE + (index + 1) * CHUNK_SIZE + 512
        size = struct.unpack_from("<I", data, first + 4)[0]
        template = 24 + struct.unpack_from("<I", data, first + 24 + 4 + 10 + 20)[0]  # resident definition
        assert chunk["free"] + size - template > CHUNK_SIZE
        assert chunk["free"] + size - template - 2048 <= CHUNK_SIZE


def test_unicode_and_xml_special_characters(tmp_path: Path) -> None:
    data = {
        "Latin": "Café résumé é",
        "Cjk": "漢字テスト 中文",
        "Emoji": "😀 🚀 👩‍💻",
        "Markup": "<script>alert('x')</script>",
        "Amp": "a & b && c &amp; d",
        "Quotes": "say \"hi\" and 'bye'",
        "Mixed": '<é & 漢 "😀">',
    }
    roundtrip(
        tmp_path,
        [sysmon_event(data=data, computer="SRV-Ünïcødé", provider="Prov & <Co>"), um_event(list(data.values()))],
    )


def test_none_and_empty_values(tmp_path: Path) -> None:
    events = [
        sysmon_event(data={"Null": None, "Empty": "", "Zero": 0, "Text": "x"}),
        um_event([None, "", "last"]),
        log_cleared_event(user_data=("{" + EVENTLOG_NS + "}LogFileCleared", {"SubjectUserSid": None, "Other": ""})),
    ]
    path = roundtrip(tmp_path, events)
    first, second, third = (r["json"]["Event"] for r in rust_records(path))
    # evtx: a NULL or empty <Data> value is "" (EventData values are never JSON null) ...
    assert first["EventData"] == {"Null": "", "Empty": "", "Zero": 0, "Text": "x"}
    assert second["EventData"] == {"Data": {"#text": ["", "", "last"]}}
    # ... but empty UserData fields are null.
    assert third["UserData"]["LogFileCleared"]["SubjectUserSid"] is None
    with pyevtx.Evtx(str(path)) as log:
        xml = next(iter(log.records())).xml()
    assert '<Data Name="Null"></Data>' in xml


def test_very_long_value(tmp_path: Path) -> None:
    command_line = "powershell.exe -enc " + "QUJD" * 5000  # 20 KB
    events = [sysmon_event(i, data={"CommandLine": command_line, "Index": i}) for i in range(3)]
    path = roundtrip(tmp_path, events)
    assert [c["ids"] for c in walk(path.read_bytes())] == [[1], [2], [3]]  # ~40 KB of UTF-16 each
    assert rust_records(path)[0]["json"]["Event"]["EventData"]["CommandLine"] == command_line


def test_unnamed_classic_data_with_qualifiers(tmp_path: Path) -> None:
    strings = ["MSExchange Unified Messaging", "UM", "System.NullReferenceException", "15.1.2176.2"]
    events = [
        um_event(strings),
        um_event(["only one"], qualifiers=0),
        sysmon_event(event_source_name="Microsoft-Windows-Sysmon Legacy", qualifiers=0x4000),
    ]
    path = roundtrip(tmp_path, events)
    first, second, third = (r["json"]["Event"]["System"] for r in rust_records(path))
    assert first["EventID"] == {"#attributes": {"Qualifiers": 16388}, "#text": 4999}
    assert first["Provider"] == {"#attributes": {"Name": UM}}
    assert second["EventID"] == {"#attributes": {"Qualifiers": 0}, "#text": 4999}
    assert third["Provider"]["#attributes"]["EventSourceName"] == "Microsoft-Windows-Sysmon Legacy"
    event_data = rust_records(path)[1]["json"]["Event"]["EventData"]
    assert event_data == {"Data": {"#text": "only one"}}  # a single unnamed Data is not a list


def test_user_data_log_cleared(tmp_path: Path) -> None:
    path = roundtrip(tmp_path, [log_cleared_event(), log_cleared_event(user_data=("Plain", {"Field": "v"}))])
    first, second = (r["json"]["Event"] for r in rust_records(path))
    assert "EventData" not in first
    assert first["UserData"]["LogFileCleared"]["#attributes"] == {"xmlns": EVENTLOG_NS}
    assert first["UserData"]["LogFileCleared"]["SubjectUserName"] == "Administrator"
    assert second["UserData"] == {"Plain": {"Field": "v"}}


def test_event_without_data_and_mixed_templates(tmp_path: Path) -> None:
    events = [
        Event(4608, "Microsoft-Windows-Security-Auditing", "Security", time_created=T0, data={}),
        sysmon_event(1),
        um_event(["x"]),
        sysmon_event(2, data={"Other": "shape"}),
        log_cleared_event(),
        sysmon_event(3),
        Event(4608, "Microsoft-Windows-Security-Auditing", "Security", time_created=T0, data=[]),
    ]
    path = roundtrip(tmp_path, events * 20, chunk_records=33)
    first = rust_records(path)[0]["json"]["Event"]
    assert "EventData" not in first and "UserData" not in first


def test_record_ids(tmp_path: Path) -> None:
    events = [sysmon_event(0, record_id=1000), sysmon_event(1), sysmon_event(2, record_id=5000), sysmon_event(3)]
    path = roundtrip(tmp_path, events, chunk_records=2)
    data = path.read_bytes()
    assert [c["ids"] for c in walk(data)] == [[1000, 1001], [5000, 5001]]
    assert struct.unpack_from("<Q", data, 24)[0] == 5002  # next record identifier


def test_header_and_chunk_checksums(tmp_path: Path) -> None:
    data = evtx_bytes([sysmon_event(i) for i in range(50)], chunk_records=20)
    chunks = walk(data)
    assert len(chunks) == 3
    assert struct.unpack_from("<QQ", data, 8) == (0, 2)  # first and last chunk numbers
    assert struct.unpack_from("<H", data, 42)[0] == 3  # chunk count
    assert struct.unpack_from("<I", data, 120)[0] == 0  # clean
    path = tmp_path / "c.evtx"
    path.write_bytes(data)
    with pyevtx.Evtx(str(path)) as log:
        header = log.get_file_header()
        assert header.verify()
        assert not header.is_dirty()
        assert all(chunk.verify() for chunk in header.chunks())


def test_chunk_string_and_template_tables(tmp_path: Path) -> None:
    data = evtx_bytes([sysmon_event(i) for i in range(10)] + [um_event(["a"])], chunk_records=6)
    for index, chunk in enumerate(walk(data)):
        base = FILE_HEADER_SIZE + index * CHUNK_SIZE
        names = {}
        for bucket in range(64):
            offset = struct.unpack_from("<I", chunk["strings"], 4 * bucket)[0]
            while offset:
                next_offset, hashed, length = struct.unpack_from("<IHH", data, base + offset)
                name = data[base + offset + 8 : base + offset + 8 + 2 * length].decode("utf-16-le")
                assert hashed == name_hash(name) and hashed % 64 == bucket
                names[name] = offset
                assert next_offset == 0 or next_offset > offset
                offset = next_offset
        assert {"Event", "System", "Provider", "EventData", "Data", "Name", "SystemTime"} <= set(names)
        templates = [o for o in struct.unpack_from("<32I", chunk["templates"]) if o]
        assert templates
        for offset in templates:
            assert data[base + offset - 10] == 0x0C
            assert struct.unpack_from("<I", data, base + offset - 4)[0] == offset
    # python-evtx resolves templates/names through these tables: random access works.
    path = tmp_path / "t.evtx"
    path.write_bytes(data)
    with pyevtx.Evtx(str(path)) as log:
        record = log.get_record(10)
        assert normalize_py(record)[0]["data"]["ProcessId"] == "6009"


def test_name_hash() -> None:
    # hash = hash * 65599 + code unit, low 16 bits (MS-EVEN6 / libyal)
    assert name_hash("") == 0
    assert name_hash("A") == 0x41
    assert name_hash("AB") == (0x41 * 65599 + 0x42) & 0xFFFF


def test_corrupt_chunk(tmp_path: Path) -> None:
    data = evtx_bytes([sysmon_event(i) for i in range(30)], chunk_records=10)
    damaged = corrupt_chunk(data, 1)
    assert data[FILE_HEADER_SIZE + CHUNK_SIZE :][:8] == b"ElfChnk\x00"  # input untouched
    assert damaged[FILE_HEADER_SIZE + CHUNK_SIZE :][:8] != b"ElfChnk\x00"
    assert damaged[: FILE_HEADER_SIZE + CHUNK_SIZE] == data[: FILE_HEADER_SIZE + CHUNK_SIZE]
    assert damaged[FILE_HEADER_SIZE + 2 * CHUNK_SIZE :] == data[FILE_HEADER_SIZE + 2 * CHUNK_SIZE :]
    path = tmp_path / "bad.evtx"
    path.write_bytes(damaged)

    # By default evtx yields the records before the bad chunk, then raises.
    seen = []
    with pytest.raises(RuntimeError, match="chunk"):
        for record in PyEvtxParser(str(path)).records_json():
            seen.append(record["event_record_id"])
    assert seen == list(range(1, 11))

    # With skip_errors it warns and goes on with chunk 2.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ids = [r["event_record_id"] for r in PyEvtxParser(str(path), skip_errors=True).records_json()]
    assert ids == list(range(1, 11)) + list(range(21, 31))
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)

    with pytest.raises(IndexError):
        corrupt_chunk(data, 3)


def test_dirty_flag(tmp_path: Path) -> None:
    events = [sysmon_event(i) for i in range(3)]
    clean, dirty = evtx_bytes(events), evtx_bytes(events, dirty=True)
    assert struct.unpack_from("<I", dirty, 120)[0] == 0x1
    assert struct.unpack_from("<I", dirty, 124)[0] == zlib.crc32(dirty[:120])
    assert dirty[FILE_HEADER_SIZE:] == clean[FILE_HEADER_SIZE:]
    path = roundtrip(tmp_path, events, dirty=True)
    with pyevtx.Evtx(str(path)) as log:
        assert log.get_file_header().is_dirty()


def test_empty_log(tmp_path: Path) -> None:
    path = write_evtx(tmp_path / "empty.evtx", [])
    data = path.read_bytes()
    assert len(data) == FILE_HEADER_SIZE
    walk(data)
    assert rust_records(path) == []
    assert py_records(path) == []


def test_deterministic_and_write_returns_path(tmp_path: Path) -> None:
    events = [sysmon_event(i) for i in range(40)] + [um_event(["x"]), log_cleared_event()]
    first = evtx_bytes(events, chunk_records=7)
    assert evtx_bytes(events, chunk_records=7) == first
    path = write_evtx(str(tmp_path / "d.evtx"), events, chunk_records=7)
    assert isinstance(path, Path)
    assert path.read_bytes() == first


def test_naive_datetimes_are_utc(tmp_path: Path) -> None:
    naive = sysmon_event(time_created=datetime(2021, 3, 2, 21, 37, 4, 654321))
    assert filetime(naive.time_created) == filetime(T0.replace(microsecond=654321))
    (record,) = rust_records(write_evtx(tmp_path / "n.evtx", [naive]))
    assert record["json"]["Event"]["System"]["TimeCreated"]["#attributes"]["SystemTime"] == (
        "2021-03-02T21:37:04.654321Z"
    )


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        evtx_bytes([sysmon_event(data={f"F{i}": "x" * 20000 for i in range(2)})])
    with pytest.raises(ValueError, match="substitution limit"):
        evtx_bytes([sysmon_event(data={"Huge": "x" * 40000})])
    with pytest.raises(ValueError, match="SID"):
        evtx_bytes([sysmon_event(user_sid="not-a-sid")])
    with pytest.raises(ValueError, match="GUID"):
        evtx_bytes([sysmon_event(provider_guid="{nope}")])
    with pytest.raises(ValueError, match="event_id"):
        evtx_bytes([sysmon_event(event_id=70000)])
    with pytest.raises(ValueError, match="XML element name"):
        evtx_bytes([log_cleared_event(user_data=("Bad Name", {"x": "y"}))])
    with pytest.raises(TypeError):
        evtx_bytes([sysmon_event(data={"Float": 1.5})])
    with pytest.raises(ValueError, match="chunk_records"):
        evtx_bytes([], chunk_records=0)


def test_ten_thousand_records_fast() -> None:
    events = [sysmon_event(i) for i in range(10_000)]
    # CPU time of this process: the writer's own work, the same on a busy machine or beside other test workers
    started = time.process_time()
    data = evtx_bytes(events)
    elapsed = time.process_time() - started
    assert elapsed < 2.0, f"writing 10,000 records took {elapsed:.2f}s"
    chunks = walk(data)
    assert sum(len(c["ids"]) for c in chunks) == 10_000
