"""The content recogniser: every format of ``signatures/formats.yaml`` from bytes the project builds, renamed
corpus files, hostile bytes, and the table ``triage list`` shows."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import random
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from triage.formats.recognize import (
    Recognition,
    event_record_shape,
    load_formats,
    recognize_bytes,
    recognize_path,
    table,
)
from triage.testing.evtx import Event, evtx_bytes
from triage.testing.regf import HiveBuilder
from triage.testing.volume import T0, httpproxy_log, memory_image_bytes, minidump_bytes, zip_bytes

CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"


def _hive() -> bytes:
    hb = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SYSTEM", timestamp=T0)
    hb.set_value("Select", "Current", 1)
    return hb.to_bytes()


def _evtx() -> bytes:
    event = Event(4624, "Microsoft-Windows-Security-Auditing", "Security", time_created=T0, data={"A": "b"})
    return evtx_bytes([event])


def _pe() -> bytes:
    dos = bytearray(0x80)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x80)
    return bytes(dos) + b"PE\x00\x00" + bytes(200)


WINLOGBEAT = {"@timestamp": "2021-03-03T02:41:05Z", "winlog": {"event_id": 4688, "channel": "Security"}}
OTRF = {"EventID": 4688, "Channel": "Security", "Hostname": "EXCH01", "TimeCreated": "2021-03-03T02:41:05Z"}
VELOCIRAPTOR = {"System": {"EventID": {"Value": 4688}, "Channel": "Security"}, "EventData": {"NewProcessName": "x"}}
SPLUNK = {"result": {"EventCode": "4688", "LogName": "Security", "ComputerName": "EXCH01"}}
ELASTIC = {"_index": "winlogbeat-1", "_source": WINLOGBEAT}


@pytest.mark.parametrize(
    ("name", "data", "fmt", "kind"),
    [
        ("SYSTEM_exch01", _hive(), "regf_hive", "registry_hive"),
        ("sam.hiv", _hive(), "regf_hive", "registry_hive"),
        ("export1.dat", _hive(), "regf_hive", "registry_hive"),
        ("SYSTEM.LOG1", b"HvLE" + bytes(508), "regf_log_entries", "registry_hive"),
        ("foo.bin", _evtx(), "evtx", "evtx"),
        ("lsass.txt", minidump_bytes(), "minidump", "memory_image"),
        ("MEMORY.DMP", b"PAGEDU64" + bytes(4088), "crash_dump", "memory_image"),
        ("hiberfil.sys", b"HIBR" + bytes(4092), "hibernation", "memory_image"),
        ("img.E01", b"EVF\x09\x0d\x0a\xff\x00" + bytes(100), "ewf", "container"),
        ("img.Ex01", b"EVF2\x0d\x0a\x81\x00" + bytes(100), "ewf", "container"),
        ("kape.vhdx", b"vhdxfile" + bytes(100), "vhdx", "container"),
        ("disk.vmdk", b"KDMV" + bytes(100), "vmdk", "container"),
        ("kape.bin", zip_bytes({"C/Windows/x": b"1"}), "zip", "container"),
        ("loot.dat", b"7z\xbc\xaf\x27\x1c" + bytes(30), "sevenzip", "suspicious_file"),
        (
            "w.txt",
            b"#Software: Microsoft Internet Information Services 10.0\r\n#Fields: date time\r\n",
            "iis_w3c",
            "iis_log",
        ),
        ("fields-only.txt", b"#Version: 1.0\r\n#Fields: date time s-ip cs-uri-stem\r\n", "iis_w3c", "iis_log"),
        ("proxy.csv", httpproxy_log([]), "exchange_log", "exchange_log"),
        (
            "e.log",
            b"#Software: Microsoft Exchange Server\r\n#Version: 15.01.2176.009\r\n",
            "exchange_log",
            "exchange_log",
        ),
        (
            "EXCH01-Cve-2021-26855.csv",
            b'"DateTime","ClientIpAddress","UrlStem"\r\n',
            "test_proxylogon_csv",
            "testproxylogon_csv",
        ),
        ("out.csv", b'"DateTime","RoutingHint","AnchorMailbox"\r\n', "test_proxylogon_csv", "testproxylogon_csv"),
        ("EX2-Cve-2021-26858.log", b"2021-03-03T02:15:00Z,OABGeneratorLog,Download failed\r\n", "test_proxylogon_csv",
         "testproxylogon_csv"),
        ("ExSetup.exe", _pe(), "pe", "exchange_binary"),
        ("App_Web_x1y2.dll", _pe(), "pe", "web_file"),
        ("tool.bin", _pe(), "pe", "file"),
        (
            "readme.txt",
            b'<%@ Page Language="Jscript"%><%eval(Request.Item["p"],"unsafe");%>',
            "server_page",
            "web_file",
        ),
        ("style.css", b"body { color: red }", "web_static", "web_file"),
    ],
)
def test_formats_by_content(name, data, fmt, kind):
    rec = recognize_bytes(data, name=name, size=len(data))
    assert (rec.format, rec.kind) == (fmt, kind)
    assert rec.by == ("name" if fmt == "web_static" else "content")
    assert rec.examinable


@pytest.mark.parametrize(
    ("doc", "shape"),
    [
        (WINLOGBEAT, "winlogbeat"),
        (OTRF, "flat"),
        (VELOCIRAPTOR, "evtx"),
        (SPLUNK, "splunk"),
        (ELASTIC, "winlogbeat"),
        # the reader's other shapes are the recogniser's too (one list: triage.formats.eventjson)
        ({"Id": 4104, "LogName": "Microsoft-Windows-PowerShell/Operational", "Message": "x"}, "powershell"),
        ({"Event": {"System": {"EventID": 1}}}, "evtx"),
        ({"hits": {"hits": [{"_source": WINLOGBEAT}]}}, "winlogbeat"),
        ({"user": "x", "id": 3}, None),
        ([1, 2], None),
    ],
)
def test_event_record_shapes(doc, shape):
    assert event_record_shape(doc) == shape


@pytest.mark.parametrize("wrap", ["jsonl", "array", "gzip", "xz", "bz2", "utf16"])
def test_json_event_exports_any_name_and_packing(wrap):
    lines = "\n".join(json.dumps(d) for d in (WINLOGBEAT, WINLOGBEAT)).encode() + b"\n"
    data = {
        "jsonl": lines,
        "array": json.dumps([OTRF, OTRF]).encode(),
        "gzip": gzip.compress(lines),
        "xz": lzma.compress(lines),
        "bz2": bz2.compress(lines),
        "utf16": "\ufeff".encode("utf-16-le") + lines.decode().encode("utf-16-le"),
    }[wrap]
    rec = recognize_bytes(data, name="export.dat", size=len(data))
    assert (rec.format, rec.kind, rec.by) == ("event_json", "event_json", "content")


def test_json_that_is_not_events_is_not_an_event_export():
    data = json.dumps([{"user": "alice", "quota": 5}]).encode()
    rec = recognize_bytes(data, name="users.json", size=len(data))
    assert rec.format is None and not rec.examinable


def test_unknown_bytes_and_text_are_not_examinable():
    junk = random.Random(3).randbytes(5000)
    for name, data in (("junk.dat", junk), ("notes.txt", b"meeting at ten\n")):
        rec = recognize_bytes(data, name=name, size=len(data))
        assert (rec.format, rec.kind, rec.by, rec.examinable) == (None, "file", "none", False)


def test_name_that_promises_a_format_the_bytes_do_not_show():
    rec = recognize_bytes(b"not a hive at all", name="SYSTEM", size=17)
    assert (rec.format, rec.kind, rec.examinable) == (None, "registry_hive", False)


def test_raw_memory_is_by_name_and_size():
    data = memory_image_bytes()
    assert recognize_bytes(data[:65536], name="EXCH01.raw", size=len(data)).format == "raw_memory"
    assert recognize_bytes(data[:65536], name="EXCH01.raw", size=len(data)).by == "name"
    assert recognize_bytes(data[:65536], name="EXCH01.raw", size=4096).format is None  # too small


def test_vhd_by_its_footer(tmp_path):
    path = tmp_path / "kape.dat"
    path.write_bytes(bytes(4096) + b"conectix" + bytes(504))
    assert recognize_path(path).format == "vhd"


def test_pe_header_beyond_the_head_is_read_at_its_offset(tmp_path):
    dos = bytearray(200_000)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 150_000)
    dos[150_000:150_004] = b"PE\x00\x00"
    path = tmp_path / "big.bin"
    path.write_bytes(bytes(dos))
    assert recognize_path(path).format == "pe"


def test_hostile_bytes_never_raise():
    rng = random.Random(11)
    seeds = [_hive(), _evtx(), _pe(), json.dumps(WINLOGBEAT).encode(), zip_bytes({"a": b"b"}), b"\x1f\x8b" + bytes(40)]
    for i in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        rec = recognize_bytes(bytes(data[: rng.randint(0, len(data))]), name=f"x{i}.bin", size=len(data))
        assert isinstance(rec, Recognition)
    deep = b"[" * 200_000
    assert recognize_bytes(deep, name="deep.json").format is None


def test_unreadable_file_is_an_error_recognition(tmp_path):
    rec = recognize_path(tmp_path / "gone.evtx")
    assert rec.by == "error" and "FileNotFoundError" in rec.error and not rec.examinable


def test_table_lists_every_format_once():
    rows = table()
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names)) == len(load_formats())
    assert {"regf_hive", "evtx", "event_json", "minidump", "ewf", "vhdx", "zip", "iis_w3c", "pe"} <= set(names)
    assert all(r["how"] for r in rows)


def test_a_bad_table_is_a_clear_error(tmp_path):
    bad = tmp_path / "formats.yaml"
    bad.write_text("formats:\n  - name: x\n    kind: file\n")
    with pytest.raises(ValueError, match="says nothing about how to recognise it"):
        load_formats(str(bad))
    bad.write_text("formats:\n  - name: x\n    kind: file\n    probe: nope\n")
    with pytest.raises(ValueError, match="unknown probe 'nope'"):
        load_formats(str(bad))


def test_zip_member_stream_is_recognised():
    from triage.formats.recognize import recognize_stream

    data = zip_bytes({"renamed.bin": _evtx()})
    with zipfile.ZipFile(io.BytesIO(data)) as zf, zf.open("renamed.bin") as fh:
        assert recognize_stream(fh, name="renamed.bin").format == "evtx"


# -- real third-party files under random names -------------------------------------------------------------------
corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"shared corpus not present at {CORPUS}")


@pytest.mark.corpus
@corpus
def test_corpus_files_renamed_are_recognised(tmp_path):
    rng = random.Random(5)
    expect = {}
    for sub, fmt in (("hives", "regf_hive"), ("evtx/baseline", "evtx"), ("events_json", "event_json")):
        for src in sorted((CORPUS / sub).iterdir()):
            if src.name.startswith("OMB_sample_with_a_bad_chunk_magic"):
                continue
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10)) + ".dat"
            dest = tmp_path / name
            if src.suffix == ".xz" and sub == "hives":
                dest.write_bytes(lzma.decompress(src.read_bytes()))
            else:
                shutil.copyfile(src, dest)
            expect[name] = fmt
    for web in sorted((CORPUS / "webshells").iterdir()):
        dest = tmp_path / (web.stem + ".txt")
        shutil.copyfile(web, dest)
        expect[dest.name] = "server_page"
    got = {name: recognize_path(tmp_path / name).format for name in expect}
    assert got == expect
    assert len(expect) >= 12


def test_triage_list_shows_the_recogniser_table(capsys):
    from triage.cli import main

    assert main(["list", "--json", "-q"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in data["formats"]] == [f.name for f in load_formats()]
    assert {"name": "evtx", "kind": "evtx"}.items() <= next(f for f in data["formats"] if f["name"] == "evtx").items()


def test_password_is_masked_in_recorded_command_lines():
    from triage.cli import _redacted_argv

    argv = ["triage", "run", "c.zip", "--password", "hunter2", "--case", "x", "--password=hunter3"]
    assert _redacted_argv(argv) == ["triage", "run", "c.zip", "--password", "***", "--case", "x", "--password=***"]


@pytest.mark.parametrize("flavour", ["velociraptor", "evtx_dump", "winlogbeat", "otrf", "splunk", "powershell"])
def test_every_flavour_the_reader_reads_is_recognised(flavour):
    """The recogniser and the reader share one list of shapes: a file the reader can read is never a plain file."""
    from triage.testing.eventjson import export_bytes, records
    from triage.testing.eventlogs import attack_events

    data = export_bytes(records(attack_events()["Sysmon"][:3], flavour))
    rec = recognize_bytes(data, name="events.json", size=len(data))
    assert (rec.format, rec.kind) == ("event_json", "event_json"), flavour
