"""The memory format builders: each file holds what its header says, and the pages land where they should."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from triage.formats.memory import inspect
from triage.testing import memformats as mf

MEM = mf.sample_memory(pages=40, hole_at=10, hole_pages=6)
MARK = len(mf.page_marker(0))


def test_physical_memory_reads_holes_as_zeros_and_refuses_partial_pages() -> None:
    assert MEM.pages == 40 and MEM.end == 46 * mf.PAGE
    assert MEM.read(9 * mf.PAGE, MARK) == mf.page_marker(9 * mf.PAGE)
    assert MEM.read(12 * mf.PAGE, 64) == bytes(64)  # the hole
    assert MEM.page_present(16) and not MEM.page_present(10)
    with pytest.raises(ValueError, match="whole pages"):
        mf.PhysicalMemory(((0, b"x" * 100),))
    with pytest.raises(ValueError, match="overlaps"):
        mf.PhysicalMemory(((0, bytes(2 * mf.PAGE)), (mf.PAGE, bytes(mf.PAGE))))


def test_raw_is_one_byte_per_physical_address(tmp_path: Path) -> None:
    data = mf.write_raw(tmp_path / "m.raw", MEM).read_bytes()
    assert len(data) == MEM.end
    assert data[20 * mf.PAGE : 20 * mf.PAGE + MARK] == mf.page_marker(20 * mf.PAGE)


@pytest.mark.parametrize(
    ("writer", "name", "fmt", "header"),
    [
        (mf.write_crash_full, "MEMORY.DMP", "crash_dump", 0x2000),
        (mf.write_crash_bitmap, "bitmap.dmp", "crash_dump_bitmap", 0x3000),
        (mf.write_lime, "m.lime", "lime", 32),
        (mf.write_elf_core, "m.elf", "elf_core", 0x1000),
    ],
)
def test_headers_promise_exactly_the_file(tmp_path: Path, writer: object, name: str, fmt: str, header: int) -> None:
    path = writer(tmp_path / name, MEM)  # type: ignore[operator]
    got = inspect(path)
    assert got.format == fmt and not got.problems
    assert got.expected_size == got.size == path.stat().st_size
    assert path.read_bytes()[header : header + MARK] == mf.page_marker(0)  # the first page right after the header


def test_crash_dump_header_fields(tmp_path: Path) -> None:
    head = mf.write_crash_full(tmp_path / "m.dmp", MEM, dtb=0x1AA000).read_bytes()[:0x2000]
    assert head[:8] == b"PAGEDU64"
    assert struct.unpack_from("<Q", head, 16)[0] == 0x1AA000  # DirectoryTableBase
    assert struct.unpack_from("<I", head, 3992)[0] == 1  # DumpType: full
    assert struct.unpack_from("<IIQ", head, 136) == (2, 0, 40)  # two runs, 40 pages
    assert struct.unpack_from("<QQ", head, 152) == (0, 10)  # first run: page 0, 10 pages
    assert struct.unpack_from("<QQ", head, 168) == (16, 30)


def test_bitmap_dump_summary_and_bits(tmp_path: Path) -> None:
    data = mf.write_crash_bitmap(tmp_path / "m.dmp", MEM, dump_type=mf.DUMP_TYPE_BITMAP_KERNEL).read_bytes()
    assert data[0x2000:0x2008] == b"SDMPDUMP"
    header_size, pages, bits = struct.unpack_from("<QQQ", data, 0x2000 + 32)
    assert (header_size, pages, bits) == (0x3000, 40, 46)
    bitmap = int.from_bytes(data[0x2000 + 56 : 0x2000 + 64], "little")
    assert [b for b in range(46) if bitmap >> b & 1] == [*range(10), *range(16, 46)]


def test_vmware_state_describes_the_vmem_regions(tmp_path: Path) -> None:
    vmem, vmss = mf.write_vmware(tmp_path / "vm.vmem", MEM)
    assert vmss is not None and vmss.name == "vm.vmss" and vmem.stat().st_size == 40 * mf.PAGE
    raw = vmss.read_bytes()
    assert raw[:4] == mf.VMSS_MAGIC and b"regionsCount" in raw and raw.count(b"regionPPN") == 2
    assert inspect(vmem).sidecar == vmss and inspect(vmss).sidecar == vmem
    _, none = mf.write_vmware(tmp_path / "alone.vmem", MEM, state=None)
    assert none is None and "no alone.vmss or alone.vmsn" in inspect(tmp_path / "alone.vmem").problems[0]


def test_truncated_and_virtualbox_variants(tmp_path: Path) -> None:
    cut = inspect(mf.write_crash_full(tmp_path / "cut.dmp", MEM, truncate_to=0x5000))
    assert cut.truncated and "truncated" in cut.problems[0]
    vbox = inspect(mf.write_elf_core(tmp_path / "vb.core", MEM, style="virtualbox"))
    assert vbox.format == "elf_core" and vbox.detail == "VirtualBox core" and not vbox.problems
    hib = inspect(mf.write_hibernation(tmp_path / "hiberfil.sys", MEM, signature=b"wake"))
    assert hib.format == "hibernation" and hib.compressed and hib.detail == "resumed"
