"""Synthetic memory images for the memory tests.

``x64_image`` writes what Volatility's Windows stacker and kernel scanner need to get as far as asking for
symbols, and no further: a PML4 with a self-referencing entry where recent Windows keeps its DTB, page tables
mapping KUSER_SHARED_DATA at both of its addresses, and a "kernel" page (MZ plus an RSDS debug record naming
ntkrnlmp.pdb) mapped in kernel space. Everything else is zeros or the bytes the test plants.
"""

from __future__ import annotations

import json
import lzma
import struct
import uuid
from pathlib import Path

PAGE = 0x1000
KERNEL_GUID = "3844dbb9-2017-4967-be7a-a4a2c20430fa"
KERNEL_GUID_VOL = "3844DBB920174967BE7AA4A2C20430FA"  # as Volatility prints it
KERNEL_AGE = 1
LINUX_BANNER = (
    b"Linux version 5.10.0-8-amd64 (debian-kernel@lists.debian.org) (gcc-10 (Debian 10.2.1-6) 10.2.1 20210110, "
    b"GNU ld (GNU Binutils for Debian) 2.35.2) #1 SMP Debian 5.10.46-4 (2021-08-03)\n\x00"
)
DTB = 0x1AA000  # inside the 0x150000-0x2A0000 window the stacker searches first
KUSER_PHYS = 0x300000
KERNEL_PHYS = 0x400000
KERNEL_VA = 0xFFFFF800_01000000


def rsds(pdb: str = "ntkrnlmp.pdb", guid: str = KERNEL_GUID, age: int = KERNEL_AGE) -> bytes:
    """A CodeView RSDS debug record as a PE's debug directory holds it."""
    return b"RSDS" + uuid.UUID(guid).bytes_le + struct.pack("<I", age) + pdb.encode() + b"\x00"


class PageTables:
    """Four-level x64 page tables written into ``img`` (a bytearray), tables allocated from ``alloc``."""

    def __init__(self, img: bytearray, dtb: int = DTB, alloc: int = DTB + 0x6000) -> None:
        self.img, self.dtb, self.next = img, dtb, alloc
        self._put(dtb + 0x1ED * 8, dtb | 0x63)  # the self-reference Windows keeps (index 0x1ED)

    def _put(self, addr: int, value: int) -> None:
        struct.pack_into("<Q", self.img, addr, value)

    def _table(self, entry_addr: int) -> int:
        (entry,) = struct.unpack_from("<Q", self.img, entry_addr)
        if not entry & 1:
            entry = self.next | 0x7
            self.next += PAGE
            self._put(entry_addr, entry)
        return entry & ~0xFFF & 0xFFFFFFFFFF000

    def map(self, va: int, pa: int) -> None:
        va &= 0xFFFF_FFFF_FFFF
        table = self.dtb
        for shift in (39, 30, 21):
            table = self._table(table + ((va >> shift) & 0x1FF) * 8)
        self._put(table + ((va >> 12) & 0x1FF) * 8, pa | 0x7)


def x64_image(size: int = 16 << 20, *, kernel: bool = True, plants: dict[int, bytes] | None = None) -> bytearray:
    """A raw 'memory image' Volatility stacks an Intel32e layer on; ``plants`` are bytes at physical offsets."""
    img = bytearray(size)
    pt = PageTables(img)
    pt.map(0xFFFFF780_00000000, KUSER_PHYS)  # KUSER_SHARED_DATA, kernel and user views of one page
    pt.map(0x7FFE0000, KUSER_PHYS)
    struct.pack_into("<I", img, KUSER_PHYS + 0x26C, 10)  # NtMajorVersion
    if kernel:
        img[KERNEL_PHYS : KERNEL_PHYS + 2] = b"MZ"
        record = rsds()
        img[KERNEL_PHYS + 0x800 : KERNEL_PHYS + 0x800 + len(record)] = record
        for i in range(4):
            pt.map(KERNEL_VA + i * PAGE, KERNEL_PHYS + i * PAGE)
    for off, data in (plants or {}).items():
        img[off : off + len(data)] = data
    return img


def fake_kernel_isf(guid: str = KERNEL_GUID_VOL, age: int = KERNEL_AGE) -> dict[str, object]:
    """A Windows ISF whose metadata names the kernel: enough for the identifier cache to find it, not to use it."""
    return {
        "metadata": {
            "format": "6.2.0",
            "producer": {"name": "triage-tests", "version": "1"},
            "windows": {"pdb": {"GUID": guid, "age": age, "database": "ntkrnlmp.pdb", "machine_type": 34404}},
        },
        "base_types": {
            "unsigned long": {"kind": "int", "size": 4, "signed": False, "endian": "little"},
            "pointer": {"kind": "int", "size": 8, "signed": False, "endian": "little"},
        },
        "user_types": {},
        "enums": {},
        "symbols": {},
    }


def write_isf_folder(root: Path) -> Path:
    """``root/windows/ntkrnlmp.pdb/<GUID>-<age>.json.xz``, the layout Volatility and JPCERT use."""
    path = root / "windows" / "ntkrnlmp.pdb" / f"{KERNEL_GUID_VOL}-{KERNEL_AGE}.json.xz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt") as fh:
        json.dump(fake_kernel_isf(), fh)
    return root


def write_isf_zip(path: Path) -> Path:
    """A Volatility-style ``windows.zip`` pack holding the fake kernel ISF."""
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        data = lzma.compress(json.dumps(fake_kernel_isf()).encode())
        zf.writestr(f"windows/ntkrnlmp.pdb/{KERNEL_GUID_VOL}-{KERNEL_AGE}.json.xz", data)
    return path


def plant_sparse(path: Path, size: int, plants: dict[int, bytes]) -> Path:
    """A sparse file of ``size`` bytes (zeros) with ``plants`` written at their offsets."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for off, data in sorted(plants.items()):
            fh.seek(off)
            fh.write(data)
    return path


def wide(text: str) -> bytes:
    """UTF-16LE, as Windows keeps command lines and .NET keeps strings."""
    return text.encode("utf-16-le")
