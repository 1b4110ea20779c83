"""Wrap physical memory into each acquisition format an analyst hands over, for tests.

The input is physical memory as a :class:`PhysicalMemory`: runs of ``(physical offset, bytes)``, page aligned,
with holes between them (a real machine's memory map has them: the PCI hole below 4 GiB, reserved ranges).
Each writer lays those pages out the way the acquisition tool does, so a reader that gets the layout right
reads back the same bytes at the same physical offsets:

* :func:`write_raw`: dd / ``.raw`` / ``.mem`` (holes as zeros, one byte per physical address)
* :func:`write_crash_full`: a 64-bit kernel crash dump (``PAGEDU64``, DumpType 1, physical memory runs)
* :func:`write_crash_bitmap`: a 64-bit bitmap dump (DumpType 5 with an ``FDMP`` summary header, or 6 ``SDMP``)
* :func:`write_hibernation`: a hibernation file header (``HIBR``/``hibr``/``WAKE``/``RSTR``) and xpress blocks;
  enough to recognise it and to prove it is refused, not a file Windows could resume from
* :func:`write_vmware`: a ``.vmem`` and its ``.vmss``/``.vmsn`` (group table, ``memory`` group tags
  ``regionsCount``/``regionPPN``/``regionPageNum``/``regionSize``), or the ``.vmem`` alone
* :func:`write_lime`: LiME (``EMiL`` range headers, inclusive end addresses)
* :func:`write_elf_core`: an ELF64 core with one PT_LOAD per run (WinPmem style), or VirtualBox style
  (a PT_NOTE first, ELF version 0 in e_ident)

Layouts are from the format descriptions (Windows DUMP_HEADER64 and _SUMMARY_DUMP, PO_MEMORY_IMAGE, VMware
checkpoint groups and tags, LiME's lime_mem_range_header, ELF64 program headers).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PAGE = 0x1000
FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=UTC)
DUMP_TIME = datetime(2021, 3, 3, 4, 30, 0, tzinfo=UTC)


@dataclass(frozen=True)
class PhysicalMemory:
    """Physical memory as page-aligned runs ``(offset, data)``, sorted and not overlapping."""

    runs: tuple[tuple[int, bytes], ...]

    def __post_init__(self) -> None:
        end = 0
        for offset, data in self.runs:
            if offset % PAGE or len(data) % PAGE or not data:
                raise ValueError(f"run at {offset:#x} of {len(data):#x} bytes is not whole pages")
            if offset < end:
                raise ValueError(f"run at {offset:#x} overlaps the one before it")
            end = offset + len(data)

    @classmethod
    def dense(cls, data: bytes) -> PhysicalMemory:
        """Memory with no holes: one run from address 0."""
        return cls(((0, bytes(data)),))

    @classmethod
    def sparse(cls, runs: Iterable[tuple[int, bytes]]) -> PhysicalMemory:
        """Memory from runs given in any order."""
        return cls(tuple(sorted((int(o), bytes(d)) for o, d in runs)))

    @property
    def end(self) -> int:
        """One past the highest physical address present."""
        return self.runs[-1][0] + len(self.runs[-1][1]) if self.runs else 0

    @property
    def pages(self) -> int:
        """Pages present (holes not counted)."""
        return sum(len(d) for _, d in self.runs) // PAGE

    def read(self, offset: int, length: int) -> bytes:
        """Bytes at a physical offset, zeros where memory is absent."""
        out = bytearray(length)
        for start, data in self.runs:
            lo, hi = max(offset, start), min(offset + length, start + len(data))
            if lo < hi:
                out[lo - offset : hi - offset] = data[lo - start : hi - start]
        return bytes(out)

    def page_present(self, pfn: int) -> bool:
        """Whether the page with this frame number is in a run."""
        addr = pfn * PAGE
        return any(start <= addr < start + len(data) for start, data in self.runs)


def sample_memory(pages: int = 64, hole_at: int = 16, hole_pages: int = 8) -> PhysicalMemory:
    """Two runs with a hole between them (``pages`` present in all); every page starts with a marker naming its
    physical address (:func:`page_marker`), followed by binary filler (memory is not text)."""
    second_start = (hole_at + hole_pages) * PAGE
    return PhysicalMemory(((0, marked_pages(0, hole_at)), (second_start, marked_pages(second_start, pages - hole_at))))


def marked_pages(start: int, count: int) -> bytes:
    """``count`` pages from physical address ``start``, each opening with its :func:`page_marker`."""
    filler = bytes(range(256)) * (PAGE // 256)
    out = bytearray()
    for i in range(count):
        marker = page_marker(start + i * PAGE)
        out += marker + filler[len(marker) :]
    return bytes(out)


def page_marker(addr: int) -> bytes:
    """The marker :func:`sample_memory` writes at the start of the page at physical address ``addr``."""
    return f"triage-page@{addr:#012x};".encode()


def _filetime(ts: datetime) -> int:
    return int((ts - FILETIME_EPOCH).total_seconds() * 10_000_000)


# -- raw ----------------------------------------------------------------------------------------------------
def write_raw(path: Path | str, memory: PhysicalMemory) -> Path:
    """A dd-style image: byte N of the file is physical address N, holes as zeros (written sparse)."""
    path = Path(path)
    with open(path, "wb") as fh:
        for offset, data in memory.runs:
            fh.seek(offset)
            fh.write(data)
        fh.truncate(memory.end)
    return path


# -- Windows crash dumps -----------------------------------------------------------------------------------
DUMP_HEADER64_SIZE = 0x2000  # two pages
_RUNS_AT = 136  # PhysicalMemoryBlockBuffer: NumberOfRuns u32, NumberOfPages u64 at +8, runs at +16
_CONTEXT_AT = 840  # ContextRecord: where the run array must end
MAX_RUNS = (_CONTEXT_AT - _RUNS_AT - 16) // 16
DUMP_TYPE_FULL, DUMP_TYPE_KERNEL, DUMP_TYPE_BITMAP_FULL, DUMP_TYPE_BITMAP_KERNEL = 1, 2, 5, 6


def dump_header64(
    memory: PhysicalMemory,
    *,
    dump_type: int,
    dtb: int = 0,
    required_space: int = 0,
    system_time: datetime = DUMP_TIME,
    runs: bool = True,
) -> bytearray:
    """The two header pages of a 64-bit dump (``PAGE`` fill, as Windows leaves unused header bytes)."""
    hdr = bytearray(b"PAGE" * (DUMP_HEADER64_SIZE // 4))
    struct.pack_into("<4s4sII", hdr, 0, b"PAGE", b"DU64", 15, 17763)
    struct.pack_into("<QQQQ", hdr, 16, dtb, 0, 0, 0)  # DirectoryTableBase, PfnDataBase, module/process lists
    struct.pack_into("<II", hdr, 48, 0x8664, 1)  # MachineImageType (AMD64), NumberProcessors
    struct.pack_into("<I", hdr, 56, 0xE2)  # BugCheckCode: MANUALLY_INITIATED_CRASH
    if runs:
        if len(memory.runs) > MAX_RUNS:
            raise ValueError(f"a 64-bit dump header holds at most {MAX_RUNS} runs")
        struct.pack_into("<IIQ", hdr, _RUNS_AT, len(memory.runs), 0, memory.pages)
        for i, (offset, data) in enumerate(memory.runs):
            struct.pack_into("<QQ", hdr, _RUNS_AT + 16 + 16 * i, offset // PAGE, len(data) // PAGE)
    struct.pack_into("<I", hdr, 3992, dump_type)
    struct.pack_into("<QQ", hdr, 4000, required_space, _filetime(system_time))
    return hdr


def write_crash_full(path: Path | str, memory: PhysicalMemory, *, dtb: int = 0, truncate_to: int | None = None) -> Path:
    """A complete memory dump (DumpType 1): header pages, then each run's pages in order."""
    path = Path(path)
    size = DUMP_HEADER64_SIZE + memory.pages * PAGE
    with open(path, "wb") as fh:
        fh.write(dump_header64(memory, dump_type=DUMP_TYPE_FULL, dtb=dtb, required_space=size))
        for _, data in memory.runs:
            fh.write(data)
        if truncate_to is not None:
            fh.truncate(truncate_to)
    return path


def write_crash_bitmap(
    path: Path | str,
    memory: PhysicalMemory,
    *,
    dtb: int = 0,
    dump_type: int = DUMP_TYPE_BITMAP_FULL,
    truncate_to: int | None = None,
) -> Path:
    """A bitmap dump: header pages, the summary header (``FDMP`` full / ``SDMP`` kernel, ``DUMP``) with one bit
    per physical page, then the present pages in address order from ``HeaderSize`` on."""
    path = Path(path)
    bits = -(-memory.end // PAGE)
    bitmap = bytearray(-(-bits // 32) * 4)  # whole 32-bit words, as readers walk it
    for offset, data in memory.runs:
        for pfn in range(offset // PAGE, (offset + len(data)) // PAGE):
            bitmap[pfn // 8] |= 1 << (pfn % 8)
    summary_len = 56 + len(bitmap)
    header_size = DUMP_HEADER64_SIZE + -(-summary_len // PAGE) * PAGE
    size = header_size + memory.pages * PAGE
    summary = bytearray(header_size - DUMP_HEADER64_SIZE)
    sig = b"FDMP" if dump_type == DUMP_TYPE_BITMAP_FULL else b"SDMP"
    struct.pack_into("<4s4sI", summary, 0, sig, b"DUMP", 0)
    struct.pack_into("<QQQ", summary, 32, header_size, memory.pages, bits)
    summary[56 : 56 + len(bitmap)] = bitmap
    with open(path, "wb") as fh:
        fh.write(dump_header64(memory, dump_type=dump_type, dtb=dtb, required_space=size, runs=False))
        fh.write(summary)
        for _, data in memory.runs:
            fh.write(data)
        if truncate_to is not None:
            fh.truncate(truncate_to)
    return path


# -- hibernation ----------------------------------------------------------------------------------------------
HIBERNATION_SIGNATURES = (b"HIBR", b"hibr", b"WAKE", b"wake", b"RSTR", b"rstr")
XPRESS_BLOCK = b"\x81\x81xpress"


def _xpress_literals(data: bytes) -> bytes:
    """Plain LZ77 (xpress) that codes every byte as a literal: a zero flag word before each 32 bytes."""
    out = bytearray()
    for i in range(0, len(data), 32):
        out += b"\x00\x00\x00\x00" + data[i : i + 32]
    return bytes(out)


def write_hibernation(
    path: Path | str, memory: PhysicalMemory, *, signature: bytes = b"HIBR", system_time: datetime = DUMP_TIME
) -> Path:
    """A hibernation file: a PO_MEMORY_IMAGE header page, a page of zeros (the processor state on a real one),
    then the pages in xpress blocks (16 pages each). The blocks are literal-coded (valid xpress, but no
    compression), so fragments of the memory stay visible; a real file's compressed pages hide them."""
    if signature not in HIBERNATION_SIGNATURES:
        raise ValueError(f"not a hibernation signature: {signature!r}")
    path = Path(path)
    hdr = bytearray(PAGE)
    struct.pack_into("<4sIII", hdr, 0, signature, 0, 0, 0x3E0)  # Signature, ImageType, CheckSum, LengthSelf
    struct.pack_into("<QI", hdr, 0x10, 0, PAGE)  # PageSelf, PageSize
    struct.pack_into("<QQ", hdr, 0x20, _filetime(system_time), 0)  # SystemTime, InterruptTime
    body = bytearray()
    flat = b"".join(data for _, data in memory.runs)
    for i in range(0, len(flat), 16 * PAGE):
        chunk = flat[i : i + 16 * PAGE]
        packed = _xpress_literals(chunk)
        # block header: signature, page count - 1, compressed size field, padding to 32 bytes
        body += XPRESS_BLOCK + bytes([len(chunk) // PAGE - 1]) + struct.pack("<I", len(packed) << 2) + bytes(19)
        body += packed
    with open(path, "wb") as fh:
        fh.write(hdr + bytes(PAGE) + body)
    return path


# -- VMware -----------------------------------------------------------------------------------------------
VMSS_MAGIC = b"\xd2\xbe\xd2\xbe"
VMWARE_STATE_MAGICS = (b"\xd0\xbe\xd2\xbe", b"\xd1\xba\xd1\xba", b"\xd2\xbe\xd2\xbe", b"\xd3\xbe\xd3\xbe")


def _tag(name: str, indices: Sequence[int], value: int, size: int = 4) -> bytes:
    """One checkpoint tag: flags (index count << 6 | data size), name length, name, u32 indices, the value."""
    raw = name.encode()
    return (
        bytes([(len(indices) << 6) | size, len(raw)])
        + raw
        + b"".join(struct.pack("<I", i) for i in indices)
        + value.to_bytes(size, "little")
    )


def vmware_state(memory: PhysicalMemory) -> bytes:
    """A checkpoint (``.vmss``/``.vmsn``) holding the ``memory`` group's region tags for ``memory``'s runs, as
    they sit one after the other in the ``.vmem``."""
    groups = [b"Checkpoint", b"memory"]
    header = struct.pack("<4sII", VMSS_MAGIC, 0, len(groups))
    table_len = 80 * len(groups)
    tags = bytearray(_tag("Version", (), 1) + b"\x00\x00")  # the Checkpoint group: one tag, then its end
    memory_at = len(header) + table_len + len(tags)
    tags += _tag("regionsCount", (), len(memory.runs))
    file_page = 0
    for i, (offset, data) in enumerate(memory.runs):
        tags += _tag("regionPPN", (i,), offset // PAGE)
        tags += _tag("regionPageNum", (i,), file_page)
        tags += _tag("regionSize", (i,), len(data) // PAGE)
        file_page += len(data) // PAGE
    tags += b"\x00\x00"
    table = struct.pack("<64sQQ", groups[0], len(header) + table_len, 0)
    table += struct.pack("<64sQQ", groups[1], memory_at, 0)
    return header + table + bytes(tags)


def write_vmware(path: Path | str, memory: PhysicalMemory, *, state: str | None = "vmss") -> tuple[Path, Path | None]:
    """``NAME.vmem`` (the runs back to back) and, unless ``state`` is None, ``NAME.vmss`` or ``NAME.vmsn``
    beside it. Returns both paths (the second None when no state file was written)."""
    vmem = Path(path)
    if vmem.suffix != ".vmem":
        raise ValueError("a VMware memory file is named .vmem")
    with open(vmem, "wb") as fh:
        for _, data in memory.runs:
            fh.write(data)
    if state is None:
        return vmem, None
    if state not in ("vmss", "vmsn"):
        raise ValueError("state is 'vmss', 'vmsn' or None")
    meta = vmem.with_suffix("." + state)
    meta.write_bytes(vmware_state(memory))
    return vmem, meta


# -- LiME -------------------------------------------------------------------------------------------------
LIME_MAGIC = 0x4C694D45


def write_lime(path: Path | str, memory: PhysicalMemory) -> Path:
    """LiME: per run a 32-byte header (magic, version 1, start, inclusive end, reserved), then the run."""
    path = Path(path)
    with open(path, "wb") as fh:
        for offset, data in memory.runs:
            fh.write(struct.pack("<IIQQQ", LIME_MAGIC, 1, offset, offset + len(data) - 1, 0))
            fh.write(data)
    return path


# -- ELF cores --------------------------------------------------------------------------------------------
ET_CORE, EM_X86_64, PT_LOAD, PT_NOTE = 4, 0x3E, 1, 4


def write_elf_core(path: Path | str, memory: PhysicalMemory, *, style: str = "winpmem") -> Path:
    """An ELF64 core: one PT_LOAD per run (p_paddr the physical address, file size = memory size), data page
    aligned after the program headers. ``style="virtualbox"`` adds a PT_NOTE (``VBCORE``) first and writes
    ELF version 0 in e_ident, as ``VBoxManage debugvm dumpvmcore`` does."""
    if style not in ("winpmem", "virtualbox"):
        raise ValueError("style is 'winpmem' or 'virtualbox'")
    path = Path(path)
    note = b""
    if style == "virtualbox":
        name = b"VBCORE\x00\x00"
        desc = bytes(16)
        note = struct.pack("<III", 7, len(desc), 0xB00) + name + desc
    phnum = len(memory.runs) + (1 if note else 0)
    ph_end = 64 + 56 * phnum
    note_at = ph_end
    data_at = -(-(note_at + len(note)) // PAGE) * PAGE
    ident = b"\x7fELF" + bytes([2, 1, 0 if style == "virtualbox" else 1]) + bytes(9)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", ET_CORE, EM_X86_64, 1, 0, 64, 0, 0, 64, 56, phnum, 64, 0, 0)
    phdrs = b""
    if note:
        phdrs += struct.pack("<IIQQQQQQ", PT_NOTE, 0, note_at, 0, 0, len(note), 0, 4)
    pos = data_at
    for offset, data in memory.runs:
        phdrs += struct.pack("<IIQQQQQQ", PT_LOAD, 7, pos, 0, offset, len(data), len(data), PAGE)
        pos += len(data)
    with open(path, "wb") as fh:
        fh.write(ehdr + phdrs + note)
        fh.write(bytes(data_at - fh.tell()))
        for _, data in memory.runs:
            fh.write(data)
    return path


WRITERS = {
    "raw": write_raw,
    "crash_full": write_crash_full,
    "crash_bitmap": write_crash_bitmap,
    "lime": write_lime,
    "elf_core": write_elf_core,
}
