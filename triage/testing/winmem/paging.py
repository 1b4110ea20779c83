"""Physical memory and x64 4-level page tables (PML4 -> PDPT -> PD -> PT, 4 KiB pages) for the synthetic image.

Each address space has its own PML4 page (the value a process keeps in ``_KPROCESS.DirectoryTableBase``) with
the self-referencing entry Windows x64 keeps (index 0x1ED, the fixed slot of releases before the randomised
one, inside the range Volatility's DTB test accepts). Kernel space (the upper half) is shared: process
address spaces copy the kernel PML4's upper entries, so kernel mappings made later are seen by all.
"""

from __future__ import annotations

from collections.abc import Iterable

PAGE = 0x1000
SELF_REF_INDEX = 0x1ED
PRESENT, WRITABLE, USER = 0x1, 0x2, 0x4
KERNEL_HALF = 256  # PML4 entries 256..511 map kernel space
ADDR_MASK = 0x000FFFFFFFFFF000


def canonical(va: int) -> int:
    """A 48-bit address sign-extended to 64 bits, as pointers in memory hold it."""
    va &= (1 << 48) - 1
    return va | 0xFFFF000000000000 if va & (1 << 47) else va


class PhysicalMemory:
    """A flat physical memory with a page allocator that avoids reserved ranges."""

    def __init__(self, size: int, reserved: Iterable[tuple[int, int]] = ()) -> None:
        if size % PAGE:
            raise ValueError("size must be a whole number of pages")
        self.size = size
        self.data = bytearray(size)
        self._reserved = [(start, start + length) for start, length in reserved]
        self._next = 0x10000  # the first 64 KiB stay empty (real-mode area)

    def alloc_page(self) -> int:
        """A fresh zeroed physical page address."""
        while True:
            pa = self._next
            if pa + PAGE > self.size:
                raise MemoryError("synthetic physical memory is full")
            self._next += PAGE
            if not any(lo <= pa < hi for lo, hi in self._reserved):
                return pa

    def write(self, pa: int, data: bytes) -> None:
        if pa < 0 or pa + len(data) > self.size:
            raise ValueError(f"physical write outside memory: {pa:#x}+{len(data):#x}")
        self.data[pa : pa + len(data)] = data

    def read(self, pa: int, length: int) -> bytes:
        return bytes(self.data[pa : pa + length])

    def entry(self, table: int, index: int) -> int:
        return int.from_bytes(self.data[table + index * 8 : table + index * 8 + 8], "little")

    def set_entry(self, table: int, index: int, value: int) -> None:
        self.data[table + index * 8 : table + index * 8 + 8] = value.to_bytes(8, "little")


class AddressSpace:
    """One 4-level page-table hierarchy rooted at ``dtb``."""

    def __init__(self, phys: PhysicalMemory, dtb: int | None = None, kernel: AddressSpace | None = None) -> None:
        self.phys = phys
        self.dtb = phys.alloc_page() if dtb is None else dtb
        phys.set_entry(self.dtb, SELF_REF_INDEX, self.dtb | PRESENT | WRITABLE)
        if kernel is not None:
            for i in range(KERNEL_HALF, 512):
                if i != SELF_REF_INDEX:
                    phys.set_entry(self.dtb, i, phys.entry(kernel.dtb, i))

    def prepare_kernel_slot(self, va: int) -> None:
        """Create the kernel PDPT for ``va``'s PML4 slot now, so address spaces copied later share it."""
        self._table_for(va, 4, 1, False)

    def _table_for(self, va: int, levels: int, stop: int, user: bool) -> int:
        table = self.dtb
        for level in range(levels, stop, -1):
            index = (va >> (12 + 9 * (level - 1))) & 0x1FF
            e = self.phys.entry(table, index)
            if not e & PRESENT:
                page = self.phys.alloc_page()
                e = page | PRESENT | WRITABLE | USER
                self.phys.set_entry(table, index, e)
            table = e & ADDR_MASK
        return table

    def map(self, va: int, pa: int, user: bool = False) -> None:
        """Map the 4 KiB page at ``va`` to physical ``pa``."""
        if va % PAGE or pa % PAGE:
            raise ValueError("unaligned mapping")
        pt = self._table_for(va, 4, 1, user)
        flags = PRESENT | WRITABLE | (USER if user else 0)
        self.phys.set_entry(pt, (va >> 12) & 0x1FF, pa | flags)

    def translate(self, va: int) -> int | None:
        table = self.dtb
        for level in range(4, 0, -1):
            e = self.phys.entry(table, (va >> (12 + 9 * (level - 1))) & 0x1FF)
            if not e & PRESENT:
                return None
            table = e & ADDR_MASK
        return table | (va & 0xFFF)

    def ensure(self, va: int, length: int, user: bool = False) -> None:
        """Back every page of [va, va+length) with a fresh physical page where none is mapped yet."""
        page = va & ~(PAGE - 1)
        while page < va + length:
            if self.translate(page) is None:
                self.map(page, self.phys.alloc_page(), user)
            page += PAGE

    def write(self, va: int, data: bytes) -> None:
        """Write through the mapping (pages must be mapped; page crossings are followed)."""
        done = 0
        while done < len(data):
            cur = va + done
            pa = self.translate(cur)
            if pa is None:
                raise ValueError(f"write to unmapped address {canonical(cur):#x}")
            chunk = min(len(data) - done, PAGE - (cur % PAGE))
            self.phys.write(pa, data[done : done + chunk])
            done += chunk

    def read(self, va: int, length: int) -> bytes:
        out = bytearray()
        while len(out) < length:
            cur = va + len(out)
            pa = self.translate(cur)
            chunk = min(length - len(out), PAGE - (cur % PAGE))
            out += bytes(chunk) if pa is None else self.phys.read(pa, chunk)
        return bytes(out)


class Heap:
    """A bump allocator over a virtual range of one address space, backing pages as it grows."""

    def __init__(self, space: AddressSpace, start: int, user: bool = False) -> None:
        self.space, self.cursor, self.user = space, start, user

    def alloc(self, size: int, align: int = 16) -> int:
        va = -(-self.cursor // align) * align
        self.cursor = va + max(size, 1)
        self.space.ensure(va, max(size, 1), self.user)
        return canonical(va)

    def put(self, data: bytes, align: int = 16) -> int:
        """Allocate and write ``data``; its canonical address."""
        va = self.alloc(len(data), align)
        self.space.write(va, data)
        return va
