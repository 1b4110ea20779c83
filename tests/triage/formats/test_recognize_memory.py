"""Every memory acquisition format is named by its bytes (or, for header-less ones, by name and size)."""

from __future__ import annotations

from pathlib import Path

from triage.formats.recognize import recognize_path
from triage.testing import memformats as mf

MEM = mf.sample_memory(pages=300, hole_at=100)  # over 1 MiB: the size a raw image needs


def test_each_format_is_named(tmp_path: Path) -> None:
    vmem, vmss = mf.write_vmware(tmp_path / "vm.vmem", MEM)
    snap = mf.write_vmware(tmp_path / "snap.vmem", MEM, state="vmsn")[1]
    cases = {
        mf.write_raw(tmp_path / "host.mem", MEM): ("raw_memory", "name"),
        mf.write_crash_full(tmp_path / "MEMORY.DMP", MEM): ("crash_dump", "content"),
        mf.write_crash_bitmap(tmp_path / "bitmap.dmp", MEM): ("crash_dump_bitmap", "content"),
        mf.write_crash_bitmap(tmp_path / "kernel.bin", MEM, dump_type=6): ("crash_dump_bitmap", "content"),
        mf.write_hibernation(tmp_path / "hiberfil.sys", MEM): ("hibernation", "content"),
        mf.write_lime(tmp_path / "evidence", MEM): ("lime", "content"),
        mf.write_elf_core(tmp_path / "winpmem.aff", MEM): ("elf_core", "content"),
        mf.write_elf_core(tmp_path / "vbox", MEM, style="virtualbox"): ("elf_core", "content"),
        vmem: ("vmware_vmem", "name"),
        vmss: ("vmware_state", "content"),
        snap: ("vmware_state", "content"),
    }
    for path, (fmt, by) in cases.items():
        rec = recognize_path(path)
        assert (rec.format, rec.kind, rec.by) == (fmt, "memory_image", by), path.name


def test_an_elf_program_is_not_a_memory_core(tmp_path: Path) -> None:
    core = bytearray(mf.write_elf_core(tmp_path / "core", MEM).read_bytes()[:4096])
    core[16] = 2  # ET_EXEC
    (tmp_path / "prog").write_bytes(bytes(core))
    assert recognize_path(tmp_path / "prog").format != "elf_core"


def test_a_crash_dump_that_says_bitmap_without_its_summary_is_a_plain_crash_dump(tmp_path: Path) -> None:
    data = bytearray(mf.write_crash_bitmap(tmp_path / "b.dmp", MEM).read_bytes())
    data[0x2004:0x2008] = b"XXXX"
    (tmp_path / "broken.dmp").write_bytes(bytes(data))
    assert recognize_path(tmp_path / "broken.dmp").format == "crash_dump"
