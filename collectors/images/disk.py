"""The disk: one ``read_at`` over whatever holds the sectors (raw files, libyal handles), and file-like
views over it (a volume window, a whole-media reader, a pyfsntfs stream).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from typing import Any, BinaryIO

from triage.hashing import open_source

log = logging.getLogger(__name__)


class Disk:
    """A read-only view of a disk's bytes."""

    size: int = 0

    def read_at(self, offset: int, size: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - interface
        pass


class RawDisk(Disk):
    """One raw file, or split raw segments read as one (``.001 .002 ...``, ``.aa .ab ...``)."""

    def __init__(self, paths: list[str]) -> None:
        self._files: list[tuple[BinaryIO, int, int]] = []
        start = 0
        try:
            for p in paths:
                fh = open_source(p)
                length = os.fstat(fh.fileno()).st_size
                self._files.append((fh, start, length))
                start += length
        except OSError:
            self.close()
            raise
        self.size = start

    def read_at(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        if len(self._files) == 1:  # the common case: no reassembly, no extra copy
            data = os.pread(self._files[0][0].fileno(), size, offset)
            if len(data) < size:
                raise OSError(f"short read at offset {offset}: the image shrank while being read")
            return data
        out = bytearray()
        for fh, start, length in self._files:
            if size <= 0:
                break
            if offset >= start + length or offset + size <= start:
                continue
            pos = offset - start
            want = min(size, length - pos)
            data = os.pread(fh.fileno(), want, pos)
            if len(data) < want:
                raise OSError(f"short read at offset {offset}: the segment shrank while being read")
            out += data
            offset += want
            size -= want
        return bytes(out)

    def close(self) -> None:
        for fh, _s, _l in self._files:
            fh.close()
        self._files = []


class LibyalDisk(Disk):
    """A pyewf/pyvhdi/pyvmdk handle over file objects we opened."""

    def __init__(self, handle: Any, files: list[BinaryIO], size: int) -> None:
        self.handle = handle
        self._files = files
        self.size = size

    def read_at(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        if size == 0:
            return b""
        try:
            return bytes(self.handle.read_buffer_at_offset(size, offset))
        except Exception as exc:  # libyal raises IOError with its whole call stack in the text
            raise OSError(f"read error at offset {offset}: {first_line(exc)}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a half-opened handle may complain; the files close below
            self.handle.close()
        for fh in self._files:
            fh.close()
        self._files = []


def first_line(exc: BaseException) -> str:
    """The first two sentences of a libyal error (its messages chain every call frame)."""
    # libyal messages chain every frame: keep the first two for the analyst
    parts = [p.strip() for p in str(exc).split(". ") if p.strip()]
    return ". ".join(parts[:2]) if parts else type(exc).__name__


class WindowIO:
    """A file-like window (offset, size) over a disk: what pyfsntfs reads a volume through."""

    def __init__(self, disk: Disk, offset: int, size: int) -> None:
        self.disk, self.base, self.size, self.pos = disk, offset, size, 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.size - self.pos
        data = self.disk.read_at(self.base + self.pos, max(0, min(size, self.size - self.pos)))
        self.pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError("seek before the start of the volume")
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    get_offset = tell

    def get_size(self) -> int:
        return self.size


class StreamReader(io.RawIOBase):
    """A streaming reader over a pyfsntfs file entry or data stream (positional reads, never whole files)."""

    def __init__(self, obj: Any, size: int, label: str) -> None:
        super().__init__()
        self._obj, self._size, self._label, self._pos = obj, size, label, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        try:
            data = self._obj.read_buffer_at_offset(n, self._pos)
        except Exception as exc:
            raise OSError(f"read error at offset {self._pos} of {self._label}: {first_line(exc)}") from None
        if not data:
            raise OSError(f"{self._label}: no data at offset {self._pos} of {self._size} bytes")
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)


class DiskReader(io.RawIOBase):
    """The whole media stream of a disk as a reader (for verification hashes)."""

    def __init__(self, disk: Disk) -> None:
        super().__init__()
        self._disk, self._pos = disk, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        data = self._disk.read_at(self._pos, len(buf))
        buf[: len(data)] = data
        self._pos += len(data)
        return len(data)
