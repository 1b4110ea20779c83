"""The EWF v1 section walker on segments built here byte by byte: chain, checks, chunk tables."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from triage.formats.ewf import EVF1, EVF2, iter_sections, segment_number, segment_problems, table_chunks

HEAD = 13  # signature, start-of-fields byte, segment number, end-of-fields


def _descriptor(kind: str, nxt: int, size: int) -> bytes:
    body = kind.encode().ljust(16, b"\0") + struct.pack("<QQ", nxt, size) + bytes(40)
    return body + struct.pack("<I", zlib.adler32(body))


def _segment(number: int = 1, last: str = "done") -> tuple[bytes, list[tuple[int, int, bool]]]:
    """header, sectors (two chunks: one compressed, one stored with its Adler-32), table, then ``last``."""
    out = bytearray(EVF1 + b"\x01" + struct.pack("<H", number) + b"\x00\x00")
    chunk_a = zlib.compress(b"A" * 512)
    plain = b"B" * 512
    chunk_b = plain + struct.pack("<I", zlib.adler32(plain))
    sectors_at = HEAD + 76
    data_at = sectors_at + 76
    table_at = data_at + len(chunk_a) + len(chunk_b)
    out += _descriptor("header", sectors_at, 76)
    out += _descriptor("sectors", table_at, table_at - sectors_at)
    out += chunk_a + chunk_b
    entries = struct.pack("<II", (data_at - 0) | 0x80000000, data_at + len(chunk_a))
    head = struct.pack("<I4xQ4x", 2, 0)
    table = head + struct.pack("<I", zlib.adler32(head)) + entries + struct.pack("<I", zlib.adler32(entries))
    end_at = table_at + 76 + len(table)
    out += _descriptor("table", end_at, 76 + len(table)) + table
    out += _descriptor(last, end_at, 76)  # the last section points to itself
    chunks = [(data_at, len(chunk_a), True), (data_at + len(chunk_a), len(chunk_b), False)]
    return bytes(out), chunks


def _walk(path: Path) -> list[tuple[str, bool, bool]]:
    with open(path, "rb") as fh:
        size = path.stat().st_size
        return [(s.type, s.checksum_ok, s.complete) for s in iter_sections(fh.fileno(), size)]


def test_segment_numbers_of_both_versions() -> None:
    assert segment_number(_segment(7)[0][:16]) == 7
    assert segment_number(EVF2 + struct.pack("<I", 0) + struct.pack("<I", 3)) == 3
    assert segment_number(b"MZ" + bytes(14)) is None


def test_a_whole_segment_walks_to_done_and_gives_its_chunks(tmp_path: Path) -> None:
    data, chunks = _segment()
    seg = tmp_path / "img.E01"
    seg.write_bytes(data)
    assert _walk(seg) == [("header", True, True), ("sectors", True, True), ("table", True, True), ("done", True, True)]
    with open(seg, "rb") as fh:
        assert table_chunks(fh.fileno(), len(data)) == chunks
    assert segment_problems([str(seg)]) == []


def test_truncated_damaged_and_unfinished_sets_are_named(tmp_path: Path) -> None:
    data, _ = _segment()
    cut = tmp_path / "cut.E01"
    cut.write_bytes(data[: len(data) - 40])  # the file ends inside the last descriptor
    (problem,) = segment_problems([str(cut)])
    assert problem.startswith(f"cut.E01 is truncated: it ends ({len(data) - 40:,} bytes) inside its section at")
    assert _walk(cut)[-1] == ("", False, False)

    bad = bytearray(data)
    bad[HEAD + 76 + 20] ^= 0xFF  # the sectors descriptor's next pointer: its Adler-32 no longer matches
    damaged = tmp_path / "bad.E01"
    damaged.write_bytes(bytes(bad))
    assert segment_problems([str(damaged)]) == [
        f"bad.E01: section descriptor at {HEAD + 76:,} fails its checksum (damaged)"
    ]

    first = tmp_path / "set.E01"
    first.write_bytes(_segment(1, last="next")[0])
    assert segment_problems([str(first)]) == [
        "set.E01: ends with a 'next' section where 'done' was expected (set incomplete?)"
    ]


def test_a_damaged_table_header_is_not_trusted(tmp_path: Path) -> None:
    data, _ = _segment()
    table_at = data.index(b"table\0")
    bad = bytearray(data)
    bad[table_at + 76 + 4] ^= 0xFF  # padding after the entry count: only the table header's checksum notices
    seg = tmp_path / "t.E01"
    seg.write_bytes(bytes(bad))
    with open(seg, "rb") as fh:
        assert table_chunks(fh.fileno(), len(bad)) is None
