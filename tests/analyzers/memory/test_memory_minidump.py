"""Minidumps: which process was dumped and when, from files the tests write (triage.testing.minidump)."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analyzers.memory import minidump as md
from triage.testing.minidump import LSASS_MODULES, T_CREATED, T_WRITTEN, minidump
from triage.testing.volume import minidump_bytes

W3WP_MODULES = (
    (r"c:\windows\system32\inetsrv\w3wp.exe", 0x7FF7_0000_0000, 0x7000),
    (r"C:\Windows\SYSTEM32\ntdll.dll", 0x7FFD_8C3A_0000, 0x1_F0000),
)


@pytest.fixture
def lsass_dmp(tmp_path: Path) -> Path:
    path = tmp_path / "lsass.dmp"
    path.write_bytes(minidump(memory=[(0x7FFD_89B0_1000, b"\x00" * 256)]))
    return path


def _summary(info: md.MinidumpInfo) -> tuple[object, ...]:
    return (
        info.process_name,
        info.image,
        info.process_id,
        info.process_created,
        info.timestamp,
        info.full_memory,
        [m.name for m in info.modules],
        info.os_version,
        info.architecture,
        info.memory_ranges,
    )


def test_lsass_dump_is_confirmed_by_both_readers(lsass_dmp: Path) -> None:
    ours = md.parse_at(lsass_dmp)
    theirs = md.parse_with_package(lsass_dmp)
    assert _summary(ours) == _summary(theirs)
    assert ours.is_lsass and theirs.is_lsass
    assert ours.process_name == "lsass.exe"
    assert ours.image == r"C:\Windows\System32\lsass.exe"
    assert ours.process_id == 644
    assert ours.process_created == T_CREATED
    assert ours.timestamp == T_WRITTEN  # when the dump was written: MINIDUMP_HEADER.TimeDateStamp
    assert ours.full_memory
    assert [m.name.rsplit("\\", 1)[-1] for m in ours.modules] == [m[0].rsplit("\\", 1)[-1] for m in LSASS_MODULES]
    assert ours.modules[2].base == LSASS_MODULES[2][1]
    assert (ours.os_version, ours.architecture, ours.memory_ranges) == ("10.0.17763", "x64", 1)
    assert md.parse_file(lsass_dmp).parser == "triage"


def test_header_time_comes_from_the_union_field(lsass_dmp: Path) -> None:
    """minidump 0.0.24 reads TimeDateStamp 4 bytes too far on (from Flags); we read the header ourselves."""
    from minidump.minidumpfile import MinidumpFile

    package_header = MinidumpFile.parse(str(lsass_dmp)).header
    assert package_header.TimeDateStamp != int(T_WRITTEN.timestamp())  # the package's reading, for the record
    assert md.parse_with_package(lsass_dmp).timestamp == T_WRITTEN


def test_other_process_dump(tmp_path: Path) -> None:
    path = tmp_path / "w3wp.dmp"
    path.write_bytes(minidump(W3WP_MODULES, pid=7312, flags=0x0))
    info = md.parse_file(path)
    assert (info.process_name, info.process_id, info.is_lsass, info.full_memory) == ("w3wp.exe", 7312, False, False)


def test_misc_info_without_process_fields(tmp_path: Path) -> None:
    path = tmp_path / "x.dmp"
    path.write_bytes(minidump(pid=None, created=None))
    info = md.parse_file(path)
    assert info.is_lsass and info.process_id is None and info.process_created is None


def test_header_only_dump_names_no_process(tmp_path: Path) -> None:
    path = tmp_path / "hdr.dmp"
    path.write_bytes(minidump_bytes())
    info = md.parse_file(path)
    assert info.modules == [] and info.process_name == "" and not info.is_lsass
    assert info.timestamp is not None


def test_carved_from_the_middle_of_an_image(tmp_path: Path) -> None:
    dump = minidump()
    blob = bytearray(1 << 20)
    at = 0x4_2345
    blob[at : at + len(dump)] = dump
    path = tmp_path / "image.raw"
    path.write_bytes(blob)
    info = md.parse_at(path, at, window=1 << 16)
    assert info.offset == at and info.is_lsass and info.process_id == 644
    # a window too small for the module list: the header still parses, the problem is named
    short = md.parse_at(path, at, window=0x100)
    assert short.modules == [] and short.problems and "outside" in short.problems[0]


def test_truncated_and_garbage_inputs(tmp_path: Path) -> None:
    dump = minidump()
    part = md.parse_bytes(dump[:400])
    assert part.timestamp == T_WRITTEN and not part.modules and part.problems
    with pytest.raises(md.MinidumpError):
        md.parse_bytes(b"MDMP" + bytes(28))  # version missing
    bad_count = bytearray(dump)
    struct.pack_into("<I", bad_count, 8, 100_000)
    with pytest.raises(md.MinidumpError, match="stream count"):
        md.parse_bytes(bytes(bad_count))
    junk = tmp_path / "junk.dmp"
    junk.write_bytes(b"PAGEDU64" + bytes(100))
    with pytest.raises(md.MinidumpError, match="signature"):
        md.parse_file(junk)


def test_as_dict_is_json_ready(lsass_dmp: Path) -> None:
    import json

    d = md.parse_file(lsass_dmp).as_dict()
    assert json.loads(json.dumps(d))["process"] == "lsass.exe"
    assert d["dump_written"] == datetime(2021, 3, 3, 4, 21, 7, tzinfo=UTC).isoformat()


# -- memory ranges, LSA modules and the dumping tool -------------------------------------------------------
LSA = [m for m in LSASS_MODULES if Path(m[0].replace("\\", "/")).name.lower() in md.LSA_MODULES]


def _lsa_memory(cut: int = 0) -> list[tuple[int, bytes]]:
    """Memory64 ranges holding each LSA module's image whole (the last ``cut`` bytes of lsasrv left out)."""
    return [(base, bytes(size - (cut if "lsasrv" in name else 0))) for name, base, size in LSA]


def test_full_dump_holding_the_lsa_modules(tmp_path: Path) -> None:
    info = md.parse_bytes(minidump(memory=_lsa_memory(), comment="ProcDump v10.0 -ma lsass.exe"))
    assert info.lsa_coverage() == {"lsasrv.dll": 1.0, "msv1_0.dll": 1.0, "wdigest.dll": 1.0, "kerberos.dll": 1.0}
    assert info.holds_lsa_secrets and info.memory_ranges == 4
    assert info.tool(("taskmgr", "procdump")) == "procdump"
    assert info.comment == "ProcDump v10.0 -ma lsass.exe"
    assert info.as_dict()["memory_bytes"] == sum(size for _n, _b, size in LSA)


def test_partial_ranges_do_not_hold_the_secrets(tmp_path: Path) -> None:
    info = md.parse_bytes(minidump(memory=_lsa_memory(cut=0x1000)))
    cov = info.lsa_coverage()
    assert 0.99 < cov["lsasrv.dll"] < 1.0 and cov["wdigest.dll"] == 1.0
    assert not info.holds_lsa_secrets
    assert info.tool(("procdump",)) == ""  # no comment, no tool module: not recorded
    # a range list that names memory the file does not hold (cut short) counts only the bytes present
    data = minidump(memory=_lsa_memory())
    short = md.parse_bytes(data[: len(data) - 0x2000])
    assert not short.holds_lsa_secrets and short.lsa_coverage()["kerberos.dll"] < 1.0


def test_hostile_memory_lists_cost_only_their_stream(tmp_path: Path) -> None:
    data = bytearray(minidump(memory=[(0x1000, b"\x00" * 64)]))
    # find the Memory64List stream in the directory and claim 2**40 ranges
    _sig, _ver, n, dir_rva, *_ = md.HEADER.unpack_from(data, 0)
    for i in range(n):
        stype, _size, rva = md.DIRECTORY.unpack_from(data, dir_rva + 12 * i)
        if stype == md.MEMORY64_LIST_STREAM:
            struct.pack_into("<Q", data, rva, 1 << 40)
    path = tmp_path / "hostile.dmp"
    path.write_bytes(bytes(data))
    info = md.parse_file(path)
    assert info.process_name == "lsass.exe" and info.ranges == [] and not info.holds_lsa_secrets
    assert any("memory list" in p for p in info.problems)


def test_comment_stream_past_the_end_is_a_problem_not_a_crash() -> None:
    data = bytearray(minidump(comment="nanodump"))
    _sig, _ver, n, dir_rva, *_ = md.HEADER.unpack_from(data, 0)
    for i in range(n):
        stype, _size, _rva = md.DIRECTORY.unpack_from(data, dir_rva + 12 * i)
        if stype == md.COMMENT_W_STREAM:
            struct.pack_into("<III", data, dir_rva + 12 * i, stype, 0xFFFF, len(data) + 10)
    info = md.parse_bytes(bytes(data))
    assert info.comment == "" and info.process_name == "lsass.exe"
    assert any(p.startswith(f"stream {md.COMMENT_W_STREAM}") for p in info.problems)
