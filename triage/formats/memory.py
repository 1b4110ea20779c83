"""What a memory image's own header says about how to read it: one reader per acquisition format.

:func:`inspect` names the format (the same names as ``signatures/formats.yaml``), finds what must sit beside it
(a ``.vmem``'s ``.vmss``/``.vmsn``), and checks the header against the file: a crash dump's DumpType and the
size its runs or bitmap promise, LiME range headers and ELF PT_LOAD segments that run past the end of the file,
a hibernation file whose pages are compressed. It reads a few pages at most and never raises on hostile bytes:
what it cannot make sense of is a ``problem``.

Whether Volatility can stack a layer for the format is a question for the memory analyzer (it depends on the
installed Volatility); this module only says what the file is and what is wrong with it.
"""

from __future__ import annotations

import os
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from triage.formats.recognize import recognize_path

PAGE = 0x1000
MAX_SEGMENTS = 4096  # LiME headers or ELF program headers walked before giving up (a hostile file has millions)
DUMP_TYPES = {
    1: "full (complete memory)",
    2: "kernel (summary, no bitmap)",
    4: "small (minidump of the crash)",
    5: "bitmap full",
    6: "bitmap kernel",
    7: "bitmap automatic",
    8: "active memory",
}
VMWARE_STATE_SUFFIXES = (".vmss", ".vmsn")


@dataclass
class MemoryFormat:
    """The verdict on one memory file."""

    format: str  # a formats.yaml name, or "unknown"
    description: str = ""
    detail: str = ""  # the variant: "bitmap full", "VirtualBox core" ...
    dump_type: int | None = None  # crash dumps
    compressed: bool = False  # the file's bytes are not the memory's bytes (a byte scan reads nothing of it)
    sidecar: Path | None = None  # the .vmss/.vmsn beside a .vmem (or the .vmem beside a state file)
    expected_size: int | None = None  # what the header says the file should hold
    size: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def truncated(self) -> bool:
        """The header promises more bytes than the file has."""
        return self.expected_size is not None and self.size < self.expected_size

    def as_dict(self) -> dict[str, object]:
        """For a finding's attributes and the run record."""
        return asdict(self) | {"sidecar": str(self.sidecar) if self.sidecar else None}


def _read(fh: BinaryIO, offset: int, length: int) -> bytes:
    fh.seek(offset)
    return fh.read(length)


def sidecar_of(path: Path) -> Path | None:
    """The VMware state file beside a ``.vmem`` (same stem, ``.vmss`` first, any letter case), if there is one."""
    try:
        siblings = {p.name.lower(): p for p in path.parent.iterdir()}
    except OSError:
        return None
    stem = path.name[: -len(path.suffix)].lower() if path.suffix else path.name.lower()
    for suffix in VMWARE_STATE_SUFFIXES:
        found = siblings.get(stem + suffix)
        if found is not None and found.is_file():
            return found
    return None


def vmem_of(path: Path) -> Path | None:
    """The ``.vmem`` beside a VMware state file, if there is one."""
    stem = path.name[: -len(path.suffix)].lower()
    try:
        return next((p for p in path.parent.iterdir() if p.name.lower() == stem + ".vmem" and p.is_file()), None)
    except OSError:
        return None


def inspect(path: Path | str) -> MemoryFormat:
    """Name the format of a memory file and check its header against its size (see the module docstring)."""
    path = Path(path)
    rec = recognize_path(path)
    out = MemoryFormat(rec.format or "unknown", rec.description)
    if rec.format is None and path.suffix.lower() == ".vmem":  # too small for the raw-memory rule, given as memory
        out.format = "vmware_vmem"
    try:
        out.size = os.stat(path).st_size
        with open(path, "rb") as fh:
            reader = _READERS.get(out.format)
            if reader is not None:
                reader(fh, out, path)
    except (OSError, struct.error, ValueError) as exc:
        out.problems.append(f"header unreadable: {type(exc).__name__}: {exc}")
    if out.truncated:
        out.problems.append(
            f"truncated: the header describes {out.expected_size:,} bytes but the file has {out.size:,}; "
            "memory past the end is missing"
        )
    return out


def _crash_dump(fh: BinaryIO, out: MemoryFormat, path: Path) -> None:
    head = _read(fh, 0, 0x3000)
    wide = head[4:8] == b"DU64"
    type_at, header_pages = (3992, 2) if wide else (3976, 1)
    out.dump_type = struct.unpack_from("<I", head, type_at)[0]
    out.detail = DUMP_TYPES.get(out.dump_type, f"unknown dump type {out.dump_type}")
    if out.dump_type in (5, 6, 7, 8):
        summary = head[header_pages * PAGE :]
        if summary[4:8] != b"DUMP":
            out.problems.append("bitmap dump without its summary header (no DUMP signature after the header pages)")
            return
        header_size, pages = struct.unpack_from("<QQ", summary, 32)
        out.expected_size = header_size + pages * PAGE
    elif out.dump_type == 1:
        runs_at = 136 if wide else 100
        count = struct.unpack_from("<I", head, runs_at)[0]
        step, fmt, first = (16, "<QQ", runs_at + 16) if wide else (8, "<II", runs_at + 8)
        if count > (800 - runs_at) // step:
            out.problems.append(f"damaged header: {count} physical memory runs do not fit in it")
            return
        total = sum(struct.unpack_from(fmt, head, first + step * i)[1] for i in range(count))
        out.expected_size = header_pages * PAGE + total * PAGE


def _hibernation(fh: BinaryIO, out: MemoryFormat, path: Path) -> None:
    head = _read(fh, 0, 0x40)
    out.detail = {"hibr": "active", "wake": "resumed", "rstr": "resume in progress"}.get(
        head[:4].decode("latin-1").lower(), head[:4].decode("latin-1")
    )
    out.compressed = True  # pages are stored in xpress / LZNT1 blocks


def _lime(fh: BinaryIO, out: MemoryFormat, path: Path) -> None:
    offset = 0
    for _ in range(MAX_SEGMENTS):
        if offset >= out.size:
            break
        hdr = _read(fh, offset, 32)
        if len(hdr) < 32:
            out.problems.append(f"LiME range header at file offset {offset:#x} is cut short")
            return
        magic, _version, start, end, _reserved = struct.unpack("<IIQQQ", hdr)
        if magic != 0x4C694D45 or end < start:
            out.problems.append(f"no valid LiME range header at file offset {offset:#x}")
            return
        offset += 32 + end - start + 1
    out.expected_size = offset


def _elf_core(fh: BinaryIO, out: MemoryFormat, path: Path) -> None:
    ehdr = _read(fh, 0, 64)
    out.detail = "VirtualBox core" if ehdr[6] == 0 else "ELF core"
    phoff, phentsize, phnum = struct.unpack_from("<Q", ehdr, 32)[0], *struct.unpack_from("<HH", ehdr, 54)
    if phentsize < 56 or phnum > MAX_SEGMENTS:
        out.problems.append(f"damaged ELF header: {phnum} program headers of {phentsize} bytes")
        return
    table = _read(fh, phoff, phentsize * phnum)
    end, loads = 0, 0
    for i in range(min(phnum, len(table) // phentsize)):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", table, i * phentsize)
        if p_type == 1 and p_filesz:
            loads += 1
            end = max(end, p_offset + p_filesz)
    if not loads:
        out.problems.append("no PT_LOAD segment: the core holds no memory")
    out.expected_size = end or None


def _vmem(fh: BinaryIO, out: MemoryFormat, path: Path) -> None:
    out.sidecar = sidecar_of(path)
    if out.sidecar is None:
        out.problems.append(
            f"no {path.stem}.vmss or {path.stem}.vmsn beside {path.name}: the VMware memory layout (regions) is "
            "unknown, so it is read as raw memory; on a VM with more than about 3 GiB the addresses above the "
            "PCI hole are wrong. Collect the .vmss (suspended VM) or .vmsn (snapshot) together with the .vmem"
        )


def _vmware_state(fh: BinaryIO, out: MemoryFormat, path: Path) -> None:
    out.sidecar = vmem_of(path)


_READERS = {
    "crash_dump": _crash_dump,
    "crash_dump_bitmap": _crash_dump,
    "hibernation": _hibernation,
    "lime": _lime,
    "elf_core": _elf_core,
    "vmware_vmem": _vmem,
    "vmware_state": _vmware_state,
}
