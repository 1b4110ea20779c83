"""Which process a minidump holds, and when it was taken: header, stream directory, module list, system and
misc info.

Files on disk are read with the ``minidump`` package; when it cannot read one (truncated, odd), and for dumps
carved out of a memory image (where only a window of bytes after the header is available), a minimal parser
of our own reads the same five structures, bounded by that window. The first module of the module list is
the process image, so ``lsass.exe`` there confirms an lsass dump; MiscInfo gives the process id and start time,
the header the time the dump was written.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PureWindowsPath
from typing import Any

MAGIC = b"MDMP"
VERSION = 0xA793
HEADER = struct.Struct("<4sIIIIIQ")  # signature, version, streams, directory rva, checksum, time, flags
DIRECTORY = struct.Struct("<III")  # stream type, data size, rva
MODULE = struct.Struct("<QIIII52s8s8sQQ")  # MINIDUMP_MODULE, 108 bytes
SYSTEM_INFO = struct.Struct("<HHHBBIIIIIHH")  # the first 32 bytes of MINIDUMP_SYSTEM_INFO
MISC_INFO = struct.Struct("<IIIIII")  # MINIDUMP_MISC_INFO (the later versions only append fields)
MODULE_LIST_STREAM, SYSTEM_INFO_STREAM, MEMORY64_LIST_STREAM, MISC_INFO_STREAM = 4, 7, 9, 15
MEMORY_LIST_STREAM, COMMENT_A_STREAM, COMMENT_W_STREAM = 5, 10, 11
MISC1_PROCESS_ID, MISC1_PROCESS_TIMES = 0x1, 0x2
WITH_FULL_MEMORY = 0x2
MAX_STREAMS = 4096
MAX_MODULES = 8192
MAX_RANGES = 1 << 20  # memory descriptors read per dump; a real lsass dump has a few thousand
MAX_COMMENT = 4096  # bytes of a comment stream kept
# the modules that hold the logon sessions' secrets: a dump that holds their memory holds the credentials
LSA_MODULES = ("lsasrv.dll", "msv1_0.dll", "wdigest.dll", "kerberos.dll")
ARCHITECTURES = {0: "x86", 5: "arm", 6: "ia64", 9: "x64", 12: "arm64"}


class MinidumpError(ValueError):
    """Not a minidump, or one too damaged to name its process."""


@dataclass
class Module:
    """One entry of the module list."""

    name: str
    base: int
    size: int
    timestamp: datetime | None = None


@dataclass
class MinidumpInfo:
    """What a minidump says about itself."""

    offset: int  # of the header within the file it was read from
    version: int
    streams: int
    timestamp: datetime | None  # when the dump was written
    flags: int
    modules: list[Module] = field(default_factory=list)
    process_id: int | None = None
    process_created: datetime | None = None
    os_version: str = ""
    architecture: str = ""
    memory_ranges: int | None = None
    # the memory the dump holds, as merged (start, end) virtual address ranges (MemoryList or Memory64List)
    ranges: list[tuple[int, int]] = field(default_factory=list)
    comment: str = ""  # CommentStreamA/W: some dumping tools write their name or command line there
    parser: str = "triage"
    problems: list[str] = field(default_factory=list)

    @property
    def image(self) -> str:
        """The process image path (the first module), or ''."""
        return self.modules[0].name if self.modules else ""

    @property
    def process_name(self) -> str:
        """The process image's file name, lower-cased (``lsass.exe``), or ''."""
        return PureWindowsPath(self.image).name.lower() if self.image else ""

    @property
    def is_lsass(self) -> bool:
        """The dump is of lsass.exe: its image is lsass.exe (or, with no image, lsasrv.dll is loaded)."""
        if self.process_name:
            return self.process_name == "lsass.exe"
        return any(PureWindowsPath(m.name).name.lower() == "lsasrv.dll" for m in self.modules)

    @property
    def full_memory(self) -> bool:
        """Written with MiniDumpWithFullMemory (procdump -ma, comsvcs MiniDump ... full)."""
        return bool(self.flags & WITH_FULL_MEMORY)

    def lsa_coverage(self) -> dict[str, float]:
        """For each LSA module in the module list (``LSA_MODULES``): the share of its image the dump's memory
        ranges hold (0.0 to 1.0)."""
        out: dict[str, float] = {}
        for m in self.modules:
            name = PureWindowsPath(m.name).name.lower()
            if name in LSA_MODULES and m.size > 0 and name not in out:
                out[name] = round(covered(self.ranges, m.base, m.base + m.size) / m.size, 4)
        return out

    @property
    def holds_lsa_secrets(self) -> bool:
        """An lsass dump whose memory ranges hold every LSA module it lists, whole: the credentials are in it."""
        cov = self.lsa_coverage()
        return self.is_lsass and "lsasrv.dll" in cov and all(v >= 1.0 for v in cov.values())

    def tool(self, names: Sequence[str]) -> str:
        """The dumping tool the dump names in its comment stream or module list (one of ``names``), or ''."""
        text = self.comment.lower()
        for n in names:
            if n.lower() in text:
                return n
        mods = [PureWindowsPath(m.name).name.lower() for m in self.modules[1:]]
        return next((n for n in names if any(m.startswith(n.lower()) for m in mods)), "")

    def as_dict(self) -> dict[str, Any]:
        """Scalars and a short module list for a finding's attributes."""
        return {
            "header_offset": self.offset,
            "process": self.process_name,
            "image": self.image,
            "process_id": self.process_id,
            "process_created": self.process_created.isoformat() if self.process_created else None,
            "dump_written": self.timestamp.isoformat() if self.timestamp else None,
            "full_memory": self.full_memory,
            "flags": hex(self.flags),
            "modules": len(self.modules),
            "first_modules": [PureWindowsPath(m.name).name for m in self.modules[:12]],
            "os_version": self.os_version,
            "architecture": self.architecture,
            "memory_ranges": self.memory_ranges,
            "memory_bytes": sum(b - a for a, b in self.ranges),
            "lsa_modules_held": self.lsa_coverage(),
            "holds_lsa_secrets": self.holds_lsa_secrets,
            "comment": self.comment[:500],
            "parser": self.parser,
            "problems": self.problems,
        }


def covered(ranges: Sequence[tuple[int, int]], start: int, end: int) -> int:
    """How many bytes of ``[start, end)`` the merged, sorted ``ranges`` hold."""
    i = bisect.bisect_right(ranges, (start, 1 << 64)) - 1
    total = 0
    for a, b in ranges[max(i, 0) :]:
        if a >= end:
            break
        total += max(0, min(b, end) - max(a, start))
    return total


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping ``(start, end)`` ranges (empty ones dropped)."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(r for r in ranges if r[1] > r[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _time(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def is_minidump(head: bytes) -> bool:
    """Whether bytes start like a minidump (signature and version)."""
    return len(head) >= 8 and head[:4] == MAGIC and struct.unpack_from("<H", head, 4)[0] == VERSION


# -- our own reader ---------------------------------------------------------------------------------------
Reader = Callable[[int, int], bytes]  # (offset relative to the header, length) -> bytes, short at the end


def parse_reader(read: Reader, *, limit: int, offset: int = 0) -> MinidumpInfo:
    """Parse a minidump through ``read``; nothing at or beyond ``limit`` bytes from the header is trusted."""

    def get(rva: int, n: int) -> bytes:
        if rva < 0 or n < 0 or rva + n > limit:
            raise MinidumpError(f"structure at {rva:#x}+{n} lies outside the {limit:#x} readable bytes")
        data = read(rva, n)
        if len(data) < n:
            raise MinidumpError(f"truncated at {rva + len(data):#x}")
        return data

    sig, version, nstreams, dir_rva, _checksum, stamp, flags = HEADER.unpack(get(0, HEADER.size))
    if sig != MAGIC or version & 0xFFFF != VERSION:
        raise MinidumpError("no minidump signature")
    if not 0 < nstreams <= MAX_STREAMS:
        raise MinidumpError(f"implausible stream count {nstreams}")
    info = MinidumpInfo(offset=offset, version=version, streams=nstreams, timestamp=_time(stamp), flags=flags)
    directory = get(dir_rva, nstreams * DIRECTORY.size)
    for i in range(nstreams):
        stype, size, rva = DIRECTORY.unpack_from(directory, i * DIRECTORY.size)
        try:
            if stype == MODULE_LIST_STREAM:
                info.modules = _modules(get, rva, size)
            elif stype == SYSTEM_INFO_STREAM and size >= SYSTEM_INFO.size:
                arch, _lvl, _rev, _ncpu, _ptype, major, minor, build, *_ = SYSTEM_INFO.unpack(
                    get(rva, SYSTEM_INFO.size)
                )
                info.os_version = f"{major}.{minor}.{build}"
                info.architecture = ARCHITECTURES.get(arch, str(arch))
            elif stype == MISC_INFO_STREAM and size >= MISC_INFO.size:
                _size, flags1, pid, created, _user, _kernel = MISC_INFO.unpack(get(rva, MISC_INFO.size))
                if flags1 & MISC1_PROCESS_ID:
                    info.process_id = pid
                if flags1 & MISC1_PROCESS_TIMES:
                    info.process_created = _time(created)
            elif stype == MEMORY64_LIST_STREAM and size >= 16:
                info.ranges = merge_ranges(info.ranges + _memory64(get, rva, size, limit))
                info.memory_ranges = struct.unpack("<Q", get(rva, 8))[0]
            elif stype == MEMORY_LIST_STREAM and size >= 4:
                info.ranges = merge_ranges(info.ranges + _memory32(get, rva, size))
            elif stype in (COMMENT_A_STREAM, COMMENT_W_STREAM) and size:
                raw = get(rva, min(size, MAX_COMMENT))
                text = raw.decode("utf-16-le" if stype == COMMENT_W_STREAM else "latin-1", "replace")
                info.comment = (info.comment + "\n" + text.rstrip("\x00")).strip()
        except MinidumpError as exc:  # one unreadable stream leaves the others
            info.problems.append(f"stream {stype}: {exc}")
    return info


def _memory64(get: Callable[[int, int], bytes], rva: int, size: int, limit: int) -> list[tuple[int, int]]:
    """MINIDUMP_MEMORY64_LIST: the count and base RVA, then (start, size) per range; the bytes of all ranges
    follow from the base RVA, so a range whose bytes lie past the readable end is cut there (a truncated dump
    holds less than it lists)."""
    count, base_rva = struct.unpack("<QQ", get(rva, 16))
    if count > MAX_RANGES or 16 + count * 16 > size:
        raise MinidumpError(f"memory list of {count} ranges does not fit its {size} bytes")
    table = get(rva + 16, count * 16)
    out = []
    data_at = base_rva
    for i in range(count):
        start, length = struct.unpack_from("<QQ", table, i * 16)
        held = max(0, min(length, limit - data_at))  # bytes of this range actually in the file
        if held and start + held <= 1 << 64:
            out.append((start, start + held))
        data_at += length
    return out


def _memory32(get: Callable[[int, int], bytes], rva: int, size: int) -> list[tuple[int, int]]:
    """MINIDUMP_MEMORY_LIST: the count, then (start, data size, data RVA) per range."""
    (count,) = struct.unpack("<I", get(rva, 4))
    if count > MAX_RANGES or 4 + count * 16 > size:
        raise MinidumpError(f"memory list of {count} ranges does not fit its {size} bytes")
    table = get(rva + 4, count * 16)
    return [
        (start, start + length)
        for start, length, _data_rva in (struct.unpack_from("<QII", table, i * 16) for i in range(count))
        if length
    ]


def _modules(get: Callable[[int, int], bytes], rva: int, size: int) -> list[Module]:
    (count,) = struct.unpack("<I", get(rva, 4))
    if count > MAX_MODULES or 4 + count * MODULE.size > size:
        raise MinidumpError(f"module list of {count} entries does not fit its {size} bytes")
    table = get(rva + 4, count * MODULE.size)
    out = []
    for i in range(count):
        base, msize, _csum, stamp, name_rva, *_ = MODULE.unpack_from(table, i * MODULE.size)
        (nbytes,) = struct.unpack("<I", get(name_rva, 4))
        if nbytes > 4096 or nbytes % 2:
            raise MinidumpError(f"module name at {name_rva:#x} has an implausible length {nbytes}")
        name = get(name_rva + 4, nbytes).decode("utf-16-le", "replace")
        out.append(Module(name=name, base=base, size=msize, timestamp=_time(stamp)))
    return out


def parse_at(path: Path | str, offset: int = 0, window: int | None = None) -> MinidumpInfo:
    """Our parser over ``path`` from ``offset`` (a carved header), reading at most ``window`` bytes after it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size - offset
        limit = size if window is None else min(size, window)
        return parse_reader(lambda rva, n: os.pread(fd, n, offset + rva), limit=limit, offset=offset)
    finally:
        os.close(fd)


def parse_bytes(data: bytes, offset: int = 0) -> MinidumpInfo:
    """Our parser over bytes in memory (``offset``: where they came from, for the record)."""
    return parse_reader(lambda rva, n: data[rva : rva + n], limit=len(data), offset=offset)


# -- the minidump package ---------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_package() -> Iterator[None]:
    """The package reports its own parse errors with logging.exception on the root logger: keep them out."""

    def only_others(record: logging.LogRecord) -> bool:
        return f"{os.sep}minidump{os.sep}" not in record.pathname

    root = logging.getLogger()
    root.addFilter(only_others)
    try:
        yield
    finally:
        root.removeFilter(only_others)


# Streams the package reads as "count, then count entries": (stream type, count format, header size, entry size).
# The package trusts the counts and reads past the end of the file without failing, so a count of 0xFFFFFFFF
# in 48 bytes makes it loop four billion times; every count is checked against the file size first.
_COUNTED = {
    3: ("<I", 4, 48),  # ThreadListStream: NumberOfThreads, MINIDUMP_THREAD
    4: ("<I", 4, MODULE.size),  # ModuleListStream
    5: ("<I", 4, 16),  # MemoryListStream: MINIDUMP_MEMORY_DESCRIPTOR
    8: ("<I", 4, 64),  # ThreadExListStream
    9: ("<Q", 16, 16),  # Memory64ListStream: NumberOfMemoryRanges, BaseRva; MINIDUMP_MEMORY_DESCRIPTOR64
}
# Streams with a header naming its own size, the entry size and the count: (offset of the count, its format)
_HEADED = {12: (8, "<I"), 14: (8, "<I"), 16: (8, "<Q"), 17: (8, "<I")}  # handles, unloaded, memory info, threads


def check_for_package(path: Path | str) -> None:
    """Raise MinidumpError unless every stream and every entry count fits in the file (see ``_COUNTED``)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size

        def read(offset: int, n: int) -> bytes:
            if offset < 0 or offset + n > size:
                raise MinidumpError(f"structure at {offset:#x}+{n} lies beyond the end of the {size}-byte file")
            fh.seek(offset)
            return fh.read(n)

        _sig, _version, nstreams, dir_rva, *_ = HEADER.unpack(read(0, HEADER.size))
        if not 0 < nstreams <= MAX_STREAMS:
            raise MinidumpError(f"implausible stream count {nstreams}")
        directory = read(dir_rva, nstreams * DIRECTORY.size)
        for i in range(nstreams):
            stype, ssize, rva = DIRECTORY.unpack_from(directory, i * DIRECTORY.size)
            if stype == 0:  # UnusedStream
                continue
            if rva + ssize > size:
                raise MinidumpError(f"stream {stype} at {rva:#x}+{ssize} lies beyond the end of the file")
            if stype in _COUNTED:
                fmt, head, entry = _COUNTED[stype]
                (count,) = struct.unpack(fmt, read(rva, struct.calcsize(fmt)))
                if head + count * entry > size - rva:
                    raise MinidumpError(f"stream {stype} claims {count} entries, more than the file holds")
            elif stype in _HEADED:
                at, fmt = _HEADED[stype]
                header_size, entry_size = struct.unpack("<II", read(rva, 8))
                (count,) = struct.unpack(fmt, read(rva + at, struct.calcsize(fmt)))
                if header_size > ssize or count * max(entry_size, 1) > size - rva:
                    raise MinidumpError(f"stream {stype} claims {count} entries, more than the file holds")


def parse_with_package(path: Path | str) -> MinidumpInfo:
    """Read ``path`` with the ``minidump`` package: module list, system and misc info.

    The header comes from our own reading: the package (0.0.24) takes MINIDUMP_HEADER's TimeDateStamp from the
    low half of Flags (it reads Reserved and TimeDateStamp as two fields, where they are one union).
    """
    from minidump.minidumpfile import MinidumpFile

    with open(path, "rb") as fh:
        head = fh.read(HEADER.size)
    if len(head) < HEADER.size or not is_minidump(head):
        raise MinidumpError("no minidump signature")
    check_for_package(path)  # the package loops over whatever counts the file claims
    _sig, version, nstreams, _rva, _csum, stamp, flags = HEADER.unpack(head)
    info = MinidumpInfo(
        offset=0, version=version, streams=nstreams, timestamp=_time(stamp), flags=flags, parser="minidump"
    )
    with open(path, "rb") as fh, _quiet_package():
        mf = MinidumpFile.parse_external(fh, str(path))
        if mf.modules:
            info.modules = [
                Module(name=m.name, base=int(m.baseaddress), size=int(m.size), timestamp=_time(int(m.timestamp or 0)))
                for m in mf.modules.modules
            ]
        if mf.sysinfo:
            s = mf.sysinfo
            info.os_version = f"{s.MajorVersion}.{s.MinorVersion}.{s.BuildNumber}"
            arch = getattr(s.ProcessorArchitecture, "value", s.ProcessorArchitecture)
            info.architecture = ARCHITECTURES.get(int(arch), str(arch))
        if mf.misc_info:
            info.process_id = mf.misc_info.ProcessId
            info.process_created = _time(mf.misc_info.ProcessCreateTime)
        if mf.memory_segments_64:
            info.memory_ranges = len(mf.memory_segments_64.memory_segments)
    return info


def parse_file(path: Path | str) -> MinidumpInfo:
    """A minidump file on disk: our bounded parser, and the ``minidump`` package as the second reader when
    ours cannot name the process (a stream it rejects as implausible, an unusual layout)."""
    try:
        info = parse_at(path)
    except MinidumpError as exc:
        if "signature" in str(exc):
            raise
        own_error: str | None = str(exc)
        info = None
    else:
        own_error = None
        if info is not None and info.modules and not info.problems:
            return info
    try:
        second = parse_with_package(path)
    except Exception as exc:  # the package raises whatever its reads hit
        if info is None:
            raise MinidumpError(f"{own_error}; minidump package: {type(exc).__name__}: {exc}") from exc
        info.problems.append(f"minidump package: {type(exc).__name__}: {exc}")
        return info
    if info is not None:
        second.problems = [*info.problems, *second.problems]
        second.ranges, second.comment = second.ranges or info.ranges, second.comment or info.comment
    elif own_error:
        second.problems.append(f"own parser: {own_error}")
    return second
