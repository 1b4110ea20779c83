"""The synthetic Windows memory image builder (triage.testing.winmem), read back from the files it writes with an
independent page-table walk and the ISF it writes (Volatility itself reads it in
tests/analyzers/memory/test_vol_synthetic.py)."""

from __future__ import annotations

import json
import lzma
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from triage.testing.winmem import DEFAULT, PDB_AGE, PDB_GUID, WinMemImage, build_image
from triage.testing.winmem.image import KERNEL_BASE, KERNEL_DTB, KERNEL_SYMBOLS, KUSER_KERNEL, KUSER_USER, iter_pages
from triage.testing.winmem.isf import SymbolTable, base

MASK = 0x000FFFFFFFFFF000


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> WinMemImage:
    root = tmp_path_factory.mktemp("winmem")
    return build_image(root / "mem.raw", root / "symbols")


class Reader:
    """Virtual reads over the image file by walking its 4-level page tables (our own, not the builder's)."""

    def __init__(self, data: bytes, isf: dict[str, Any]) -> None:
        self.data, self.isf = data, isf

    def q(self, pa: int) -> int:
        return int.from_bytes(self.data[pa : pa + 8], "little")

    def translate(self, dtb: int, va: int) -> int | None:
        table = dtb
        for level in (3, 2, 1, 0):
            e = self.q(table + ((va >> (12 + 9 * level)) & 0x1FF) * 8)
            if not e & 1:
                return None
            table = e & MASK
        return table | (va & 0xFFF)

    def read(self, dtb: int, va: int, n: int) -> bytes:
        pa = self.translate(dtb, va)
        assert pa is not None, hex(va)
        return self.data[pa : pa + n]

    def field(self, struct_name: str, member: str) -> int:
        return int(self.isf["user_types"][struct_name]["fields"][member]["offset"])

    def u64(self, dtb: int, va: int) -> int:
        return int.from_bytes(self.read(dtb, va, 8), "little")


@pytest.fixture(scope="module")
def reader(built: WinMemImage) -> Reader:
    return Reader(built.image.read_bytes(), json.loads(lzma.decompress(built.isf.read_bytes())))


def test_files_are_where_volatility_looks_and_small(built: WinMemImage) -> None:
    assert built.isf == built.symbols_dir / "windows" / "ntkrnlmp.pdb" / f"{PDB_GUID}-{PDB_AGE}.json.xz"
    data = built.image.read_bytes()
    assert len(data) == 4 << 20
    used = len(list(iter_pages(data)))
    assert 0 < used * 0x1000 < 1 << 20  # mostly zero pages: compresses to almost nothing


def test_isf_is_valid_for_volatility_and_names_the_kernel(reader: Reader) -> None:
    schemas = pytest.importorskip("volatility3.schemas")
    assert schemas.validate(reader.isf, use_cache=False)
    pdb = reader.isf["metadata"]["windows"]["pdb"]
    assert (pdb["GUID"], pdb["age"], pdb["database"]) == (PDB_GUID, PDB_AGE, "ntkrnlmp.pdb")
    assert reader.isf["metadata"]["windows"]["pe"] == {"major": 10, "minor": 0, "revision": 17763, "build": 1}
    assert reader.isf["base_types"]["pointer"]["size"] == 8
    assert {n: s["address"] for n, s in reader.isf["symbols"].items()} == {n: a for n, (a, _) in KERNEL_SYMBOLS.items()}


def test_build_is_reproducible(built: WinMemImage, tmp_path: Path) -> None:
    again = build_image(tmp_path / "mem.raw", tmp_path / "symbols")
    assert again.image.read_bytes() == built.image.read_bytes()
    assert again.isf.read_bytes() == built.isf.read_bytes()


def test_kernel_page_tables_and_shared_user_data(reader: Reader) -> None:
    # the self-referencing PML4 entry Volatility's DTB scan looks for, and nothing else pointing at the PML4
    assert reader.q(KERNEL_DTB + 0x1ED * 8) & MASK == KERNEL_DTB
    entries = [reader.q(KERNEL_DTB + i * 8) for i in range(512)]
    assert [i for i, e in enumerate(entries) if e & 1 and e & MASK == KERNEL_DTB] == [0x1ED]
    assert not any(e & 0x80 for e in entries)  # no large-page bit in a PML4
    kuser = reader.translate(KERNEL_DTB, KUSER_KERNEL)
    assert kuser is not None
    assert struct.unpack_from("<I", reader.data, kuser + 0x26C)[0] == 10  # NtMajorVersion, read by the layer check


def test_kernel_image_carries_pe_rsds_and_kdbg(reader: Reader) -> None:
    head = reader.read(KERNEL_DTB, KERNEL_BASE, 0x200)
    assert head[:2] == b"MZ"
    pe = struct.unpack_from("<I", head, 0x3C)[0]
    assert head[pe : pe + 6] == b"PE\x00\x00\x64\x86"
    rsds = reader.read(KERNEL_DTB, KERNEL_BASE + 0x1000, 37)
    assert rsds[:4] == b"RSDS" and rsds[4:20] == uuid.UUID(PDB_GUID).bytes_le
    assert struct.unpack_from("<I", rsds, 20)[0] == PDB_AGE and rsds[24:] == b"ntkrnlmp.pdb\x00"
    kdbg = reader.read(KERNEL_DTB, KERNEL_BASE + KERNEL_SYMBOLS["KdDebuggerDataBlock"][0], 0x20)
    assert kdbg[0x10:0x14] == b"KDBG" and struct.unpack_from("<Q", kdbg, 0x18)[0] == KERNEL_BASE


def _walk(reader: Reader) -> list[int]:
    """EPROCESS addresses on the active process list, from PsActiveProcessHead."""
    links = reader.field("_EPROCESS", "ActiveProcessLinks")
    head = KERNEL_BASE + KERNEL_SYMBOLS["PsActiveProcessHead"][0]
    out, node = [], reader.u64(KERNEL_DTB, head)
    while node != head and len(out) < 100:
        out.append(node - links)
        node = reader.u64(KERNEL_DTB, node)
    return out


def test_process_list_address_spaces_and_command_lines(built: WinMemImage, reader: Reader) -> None:
    eprocs = _walk(reader)
    pid_off = reader.field("_EPROCESS", "UniqueProcessId")
    dtb_off = reader.field("_EPROCESS", "Pcb") + reader.field("_KPROCESS", "DirectoryTableBase")
    pids = [reader.u64(KERNEL_DTB, e + pid_off) for e in eprocs]
    assert pids == [p.pid for p in DEFAULT.processes if not p.hidden]  # linked in creation order, hidden left out
    dtbs = {pid: reader.u64(KERNEL_DTB, e + dtb_off) for pid, e in zip(pids, eprocs, strict=True)}
    assert dtbs[4] == KERNEL_DTB and len(set(dtbs.values())) == len(dtbs)  # one address space each
    for pid, dtb in dtbs.items():
        assert reader.q(dtb + 0x1ED * 8) & MASK == dtb
        assert reader.translate(dtb, KERNEL_BASE) == reader.translate(KERNEL_DTB, KERNEL_BASE)  # kernel shared
        if pid != 4:
            assert reader.translate(dtb, KUSER_USER) == reader.translate(KERNEL_DTB, KUSER_KERNEL)
    # PEB -> process parameters -> command line, in procdump64's own address space
    procdump = next(p for p in DEFAULT.processes if p.name == "procdump64.exe")
    dtb = dtbs[procdump.pid]
    peb = reader.u64(KERNEL_DTB, built.processes[procdump.pid].eprocess + reader.field("_EPROCESS", "Peb"))
    params = reader.u64(dtb, peb + reader.field("_PEB", "ProcessParameters"))
    cmd = params + reader.field("_RTL_USER_PROCESS_PARAMETERS", "CommandLine")
    length = struct.unpack("<H", reader.read(dtb, cmd, 2))[0]
    buf = reader.u64(dtb, cmd + reader.field("_UNICODE_STRING", "Buffer"))
    assert reader.read(dtb, buf, length).decode("utf-16-le") == procdump.cmdline
    assert reader.translate(KERNEL_DTB, peb) is None  # user space is private to the process


def test_hidden_process_sits_in_a_proc_pool_block(built: WinMemImage, reader: Reader) -> None:
    (hidden,) = [p for p in DEFAULT.processes if p.hidden]
    eproc = built.processes[hidden.pid].eprocess
    links = reader.field("_EPROCESS", "ActiveProcessLinks")
    assert reader.u64(KERNEL_DTB, eproc + links) == eproc + links  # unlinked: points at itself
    pool = reader.read(KERNEL_DTB, eproc - 0x30 - 16, 16)
    assert pool[4:8] == b"Proc" and pool[2] * 16 >= 600  # tag and BlockSize the pool scanner accepts


def test_plants_go_into_free_pages_only(tmp_path: Path) -> None:
    made = build_image(tmp_path / "m.raw", tmp_path / "s", plants={0x300000: b"planted"})
    assert made.image.read_bytes()[0x300000:0x300007] == b"planted"
    with pytest.raises(ValueError, match="overwrite"):
        build_image(tmp_path / "n.raw", tmp_path / "t", plants={KERNEL_DTB: b"x"})


def test_symbol_table_packs_what_it_describes() -> None:
    t = SymbolTable()
    t.define("_X", [("A", base("unsigned short")), ("B", base("unsigned long long")), ("C", base("unsigned char"))])
    assert {n: off for n, (off, _) in t.structs["_X"].fields.items()} == {"A": 0, "B": 8, "C": 16}
    assert t.structs["_X"].size == 24
    assert bytes(t.pack("_X", {"A": 0x1234, "C": 7}))[:2] == b"\x34\x12"
    with pytest.raises(KeyError):
        t.pack("_X", {"D": 1})
    with pytest.raises(ValueError, match="smaller"):
        t.define("_Y", [("A", base("unsigned long long"))], size=4)
