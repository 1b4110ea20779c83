"""The structure of EWF (EnCase E01/Ex01) segment files: signatures, the section chain and chunk tables.

The one walker of EWF v1 section chains. The image collector uses it to read chunks itself, to name the
damaged segment of a truncated set and to name the chunks that fail their checksum (what pyewf does not
expose); the test builders use it to find the chunk they damage. Reads go through positional reads on
descriptors the caller opened (read-only, no access-time change), never whole files.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from triage.hashing import open_source

EVF1 = b"EVF\x09\x0d\x0a\xff\x00"  # EWF version 1 (E01, EnCase 6 layout)
EVF2 = b"EVF2\x0d\x0a\x81\x00"  # EWF version 2 (Ex01)
LVF = (b"LVF\x09\x0d\x0a\xff\x00", b"LEF2\x0d\x0a\x81\x00")  # logical evidence files: not a disk
SECTION = struct.Struct("<16sQQ40xI")  # type, next section offset, section size, padding, Adler-32
FIRST_SECTION = 13  # after the signature, the segment number and the end-of-fields marker
MAX_SECTIONS = 100000
__all__ = [
    "EVF1",
    "EVF2",
    "LVF",
    "SECTION",
    "Section",
    "iter_sections",
    "segment_number",
    "segment_problems",
    "table_chunks",
]


@dataclass(frozen=True)
class Section:
    """One section descriptor of a segment; ``complete`` is False when the file ends inside it."""

    type: str
    offset: int
    next: int
    size: int
    checksum_ok: bool
    complete: bool = True


def segment_number(head: bytes) -> int | None:
    """The segment number in the first bytes (16 are enough) of an EWF v1 or v2 segment; None otherwise."""
    if head.startswith(EVF1) and len(head) >= 11:
        return int(struct.unpack_from("<H", head, 9)[0])
    if head.startswith(EVF2) and len(head) >= 16:
        return int(struct.unpack_from("<I", head, 12)[0])
    return None


def iter_sections(fd: int, size: int) -> Iterator[Section]:
    """The section descriptors of the EWF v1 segment open as ``fd`` (``size`` bytes), following the chain.

    Ends after a descriptor that points to itself or backwards (the last section of a segment), after
    one the file ends inside of (yielded with ``complete=False``), on a loop, or after ``MAX_SECTIONS``.
    Callers decide what a ``next``/``done`` section, a bad checksum or a pointer past the end means.
    """
    pos, seen = FIRST_SECTION, set[int]()
    while len(seen) < MAX_SECTIONS and pos not in seen:
        seen.add(pos)
        raw = os.pread(fd, SECTION.size, pos) if pos + SECTION.size <= size else b""
        if len(raw) < SECTION.size:
            yield Section("", pos, 0, 0, False, complete=False)
            return
        stype, nxt, length, crc = SECTION.unpack(raw)
        kind = stype.rstrip(b"\0").decode("ascii", "replace")
        yield Section(kind, pos, nxt, length, zlib.adler32(raw[:-4]) == crc)
        if nxt <= pos:
            return
        pos = nxt


def table_chunks(fd: int, seg_size: int) -> list[tuple[int, int, bool]] | None:
    """(offset, stored size, compressed) of every chunk of one EWF v1 segment, from its table sections.

    None when the layout is not the EnCase 6 style (sectors section followed by its table) this reads.
    """
    out: list[tuple[int, int, bool]] = []
    sectors_end = None
    for sec in iter_sections(fd, seg_size):
        if not sec.complete:
            break
        if sec.type == "sectors":
            sectors_end = sec.next
        elif sec.type == "table":
            head = os.pread(fd, 24, sec.offset + SECTION.size)
            if len(head) < 24 or sectors_end is None:
                return None
            count, base, head_crc = struct.unpack_from("<I4xQ4xI", head)
            if count > 1 << 20 or zlib.adler32(head[:20]) != head_crc:
                return None  # a damaged table: libewf may still read the set from its table2 copy
            raw_entries = os.pread(fd, 4 * count + 4, sec.offset + SECTION.size + 24)
            if len(raw_entries) < 4 * count:
                return None
            footer = raw_entries[4 * count :]
            if len(footer) == 4 and zlib.adler32(raw_entries[: 4 * count]) != struct.unpack("<I", footer)[0]:
                return None
            entries = struct.unpack(f"<{count}I", raw_entries[: 4 * count])
            starts = [base + (e & 0x7FFFFFFF) for e in entries]
            for j, start in enumerate(starts):
                end = starts[j + 1] if j + 1 < count else sectors_end
                out.append((start, end - start, bool(entries[j] & 0x80000000)))
        if sec.type in ("done", "next"):
            break
    return out


def segment_problems(segments: list[str]) -> list[str]:
    """Structural problems of an EWF v1 set: a section chain that runs past the end of its file (a truncated
    segment), a damaged section descriptor, or a set that does not end with a ``done`` section.

    libewf opens such sets and reads the missing chunks as zeros, so this is what names the damaged segment.
    """
    problems: list[str] = []
    for i, seg in enumerate(segments):
        name = os.path.basename(seg)
        with open_source(seg) as fh:
            fd = fh.fileno()
            size = os.fstat(fd).st_size
            if os.pread(fd, 8, 0) != EVF1:
                return problems  # EWF2 (Ex01) is laid out differently: libewf's own checks stand
            last = ""
            for sec in iter_sections(fd, size):
                if not sec.complete:
                    problems.append(
                        f"{name} is truncated: it ends ({size:,} bytes) inside its section at {sec.offset:,}"
                    )
                    break
                if not sec.checksum_ok:
                    problems.append(f"{name}: section descriptor at {sec.offset:,} fails its checksum (damaged)")
                    break
                last = sec.type
                if last in ("next", "done") or sec.next == sec.offset:
                    break
                if sec.next <= sec.offset or sec.next > size:
                    problems.append(
                        f"{name} is truncated: its {last!r} section points to {sec.next:,} "
                        f"but the file has {size:,} bytes"
                    )
                    break
            else:
                problems.append(f"{name}: section chain too long; not checked further")
            want = "done" if i == len(segments) - 1 else "next"
            if not problems and last != want:
                problems.append(f"{name}: ends with a {last!r} section where {want!r} was expected (set incomplete?)")
    return problems
