"""EWF (E01) media: the set's segments found and checked, and its chunks read by our own reader."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import zlib
from typing import Any, BinaryIO

from collectors.images.disk import Disk, LibyalDisk, first_line
from collectors.vfs import listdir_noatime
from triage.errors import UsageError
from triage.formats.ewf import EVF1, segment_number, table_chunks
from triage.hashing import open_source

log = logging.getLogger(__name__)


class EwfChunkDisk(Disk):
    """The media of an EWF v1 set (EnCase 6 layout: what FTK Imager and ewfacquire write) read chunk by chunk.

    libewf inflates chunks about six times slower than zlib does here (84 vs 500 MB/s measured on the
    same set), and reading images is most of what a collection from an E01 costs. The chunk map comes
    from the segments' table sections (:func:`triage.formats.ewf.table_chunks`), the geometry and stored hashes from
    pyewf; a set whose map does not account for every chunk is read by pyewf instead. As libewf does, a
    chunk that fails its check (zlib stream or Adler-32) reads as zeros and is remembered in
    ``bad_chunks``; data missing from a truncated segment is a read error.
    """

    CACHE = 64  # decompressed chunks kept: NTFS reads small runs close together

    def __init__(self, handle: Any, files: list[BinaryIO], size: int) -> None:
        self.handle = handle
        self._files = files
        self.size = size
        self.chunk_size = int(handle.chunk_size)
        self.bad_chunks: set[int] = set()
        self._cache: dict[int, bytes] = {}
        # chunks follow the segment numbers in the headers, not the file names (renamed sets exist)
        numbers = []
        for fh in files:
            head = os.pread(fh.fileno(), 11, 0)
            number = segment_number(head) if head.startswith(EVF1) else None
            if number is None:
                raise ValueError("not an EWF v1 segment")
            numbers.append(number)
        if sorted(numbers) != list(range(1, len(files) + 1)):
            raise ValueError(f"segment numbers {sorted(numbers)} are not 1..{len(files)}")
        order = sorted(range(len(files)), key=numbers.__getitem__)
        self._numbers = numbers
        chunks: list[tuple[int, int, int, bool]] = []
        for i in order:
            fd = files[i].fileno()
            table = table_chunks(fd, os.fstat(fd).st_size)
            if table is None:
                raise ValueError("segment layout not understood")
            chunks += [(i, off, length, comp) for off, length, comp in table]
        want = -(-size // self.chunk_size) if self.chunk_size else -1
        if len(chunks) != want:
            raise ValueError(f"chunk tables list {len(chunks)} chunks, the media needs {want}")
        self._chunks = chunks

    def _chunk(self, n: int) -> bytes:
        cached = self._cache.get(n)
        if cached is not None:
            return cached
        data = b""
        seg, off, length, compressed = self._chunks[n]
        expect = min(self.chunk_size, self.size - n * self.chunk_size)
        raw = os.pread(self._files[seg].fileno(), length, off)
        if len(raw) < length:
            raise OSError(
                f"read error at offset {n * self.chunk_size}: chunk {n} lies beyond the end of segment "
                f"{self._numbers[seg]} (truncated)"
            )
        ok = False
        if compressed:
            try:
                data = zlib.decompress(raw)
                ok = len(data) >= expect
            except zlib.error:
                ok = False
        elif length >= 4:
            data = raw[:-4]
            ok = len(data) >= expect and zlib.adler32(data) == struct.unpack_from("<I", raw, length - 4)[0]
        if not ok:
            self.bad_chunks.add(n)
            data = bytes(expect)
        data = data[:expect]
        if len(self._cache) >= self.CACHE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[n] = data
        return data

    def read_at(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        first, last = offset // self.chunk_size, (offset + size - 1) // self.chunk_size
        start = offset - first * self.chunk_size
        if first == last:
            return self._chunk(first)[start : start + size]
        out = bytearray(self._chunk(first)[start:])
        for n in range(first + 1, last + 1):
            out += self._chunk(n)
        return bytes(out[:size])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.handle.close()
        for fh in self._files:
            fh.close()
        self._files = []
        self._cache = {}


def ewf_disk(handle: Any, files: list[BinaryIO]) -> Disk:
    """Our chunk reader where the set's layout is understood, else pyewf's own reads."""
    try:
        return EwfChunkDisk(handle, files, int(handle.media_size))
    except (ValueError, OSError, struct.error) as exc:
        log.debug("EWF read through libewf (%s)", exc)
        return LibyalDisk(handle, files, int(handle.media_size))


def ewf_segment_number(path: str) -> int | None:
    """The segment number an EWF segment file carries in its header (None when it is not one)."""
    with open_source(path) as fh:
        head = os.pread(fh.fileno(), 16, 0)
    return segment_number(head)


def ewf_segments(path: str) -> tuple[list[str], list[str]]:
    """All segments of the EWF set ``path`` belongs to, checked for gaps; (segments, notes)."""
    import pyewf

    notes = []
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    number = ewf_segment_number(path)
    # siblings: same stem, an extension of the same family (E01..E99, EAA.., Ex01.., s01..)
    family = re.compile(re.escape(stem) + r"\." + re.escape(ext[1:2]) + r"(x?)[0-9A-Za-z]{2,3}$", re.IGNORECASE)
    siblings = sorted(os.path.join(folder, n) for n in listdir_noatime(folder or ".") if family.match(n))
    numbered: dict[int, str] = {}
    for s in siblings:
        n = ewf_segment_number(s)
        if n is not None and n not in numbered:
            numbered[n] = s
    if number != 1:
        if 1 not in numbered:
            raise UsageError(
                f"{path} is segment {number} of an EWF set, and segment 1 ({stem}.E01) is not next to it; "
                "give the first segment, with all segments in one folder"
            )
        notes.append(f"{name} is segment {number}; reading the set from its first segment {numbered[1]}")
        path = numbered[1]
    try:
        globbed = list(pyewf.glob(path))
    except Exception as exc:
        raise UsageError(f"{path}: cannot find the EWF segments: {first_line(exc)}") from None
    top = max(numbered) if numbered else 1
    missing = [n for n in range(1, top + 1) if n not in numbered]
    if missing:
        raise UsageError(
            f"{path}: EWF segment(s) {', '.join(str(n) for n in missing[:10])} of {top} are missing "
            f"(found {len(numbered)} segment files); put every segment in one folder and retry"
        )
    if len(globbed) < len(numbered):
        globbed = [numbered[n] for n in sorted(numbered)]
    return globbed, notes
