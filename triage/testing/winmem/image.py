"""Build the synthetic Windows x64 memory image and the ISF symbol table that describes it.

Layout (physical): the kernel's PML4 at 0x1AA000, inside the range Volatility's DTB scan searches first;
every other page comes from a bump allocator that keeps out of the DTB scan ranges so that the kernel's is
the first self-referencing table found. Virtual: the kernel image (MZ/PE headers, the RSDS debug record
naming ``ntkrnlmp.pdb``, the kernel's variables) at :data:`KERNEL_BASE`; kernel pool allocations (pool header,
object header, object) above :data:`POOL_BASE`; ``_KUSER_SHARED_DATA`` at its fixed kernel and user
addresses; per process, a PEB, loader data, process parameters and strings in user space, described by VADs
(``VadS`` pool blocks). The kernel debugger block carries the ``KDBG`` tag and the kernel base, which is how
Volatility's PDB scanner finds the base. Pool-tagged objects carry what the scanning plugins carve: ``Proc``
(processes, hidden ones included), ``File`` (file objects), ``TcpE`` (TCP endpoints); handle tables hang off
``_EPROCESS.ObjectTable``; services.exe's service records sit in one of its private regions.
"""

from __future__ import annotations

import ipaddress
import struct
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from triage.testing.winmem.isf import SymbolTable, u64, utf16
from triage.testing.winmem.nttypes import kernel_types
from triage.testing.winmem.paging import PAGE, AddressSpace, Heap, PhysicalMemory, canonical
from triage.testing.winmem.scenario import DEFAULT, MM_READONLY, MM_READWRITE, Process, Region, Scenario

PDB_NAME = "ntkrnlmp.pdb"
PDB_GUID = "5EC1D7A2B04F4C7E9D3A6F18C2B7E401"  # made up
PDB_AGE = 1
MEMORY_SIZE = 4 << 20
KERNEL_DTB = 0x1AA000
# Volatility's first DTB scan ranges (automagic/windows.py): nothing but the kernel DTB goes there
DTB_SCAN_RANGES = ((0x150000, 0x150000), (0x550000, 0x1A0000), (0x900000, 0x100000))
KERNEL_BASE = 0xFFFFF80072A00000
KERNEL_IMAGE_SIZE = 0x10000
POOL_BASE = 0xFFFFC20000000000
KUSER_KERNEL = 0xFFFFF78000000000
KUSER_USER = 0x7FFE0000
USER_DATA = 0x000000A000000000
OB_HEADER_COOKIE = 0x5C
POOL_ALIGN = 16
NONPAGED = 2  # _POOL_HEADER.PoolType of a non-paged allocation (Vista and later encoding)
OBJECT_TYPES = (
    "Type",
    "Directory",
    "SymbolicLink",
    "Token",
    "Job",
    "Process",
    "Thread",
    "Event",
    "Mutant",
    "Section",
    "File",
    "Key",
    "Desktop",
    "WindowStation",
)
# kernel variables: name -> (RVA, size)
KERNEL_SYMBOLS = {
    "PsActiveProcessHead": (0x2000, 16),
    "KeNumberProcessors": (0x2010, 4),
    "ObHeaderCookie": (0x2014, 4),
    "KdVersionBlock": (0x2020, 0x28),
    "PsLoadedModuleList": (0x2050, 16),
    "ObTypeIndexTable": (0x2100, 0x320),
    "MmProtectToValue": (0x2500, 0x80),
    "CmpHiveListHead": (0x2580, 16),
    "KdDebuggerDataBlock": (0x3000, 0x340),
}
NT_BUILD_LAB_RVA = 0x3400
CSD_VERSION_RVA = 0x3480
# _KDDEBUGGER_DATA64 members Volatility reads (its windows/kdbg.json)
KDBG_KERNBASE, KDBG_MODULES, KDBG_PROCESSES, KDBG_BUILDLAB, KDBG_CSD = 0x18, 0x48, 0x50, 0x208, 0x268


# MM_* protection index -> PAGE_* constant (the first eight; the next 24 add no-cache, guard, write-combine)
PAGE_PROTECTIONS = (0x01, 0x02, 0x10, 0x20, 0x04, 0x08, 0x40, 0x80)
PROTECTION_MODIFIERS = (0, 0x200, 0x100, 0x400)


# tcpip.sys's TCP endpoint of Windows 10 1809 x64, as Volatility's netscan-win10-17763-x64 table lays it out
TCPE_INETAF, TCPE_ADDRINFO, TCPE_STATE, TCPE_LOCAL_PORT, TCPE_REMOTE_PORT = 0x10, 0x18, 0x6C, 0x70, 0x72
TCPE_OWNER, TCPE_CREATED, TCPE_SIZE = 0x2C8, 0x2D8, 0x2E0
INETAF_FAMILY, LOCAL_ADDRESS_DATA, ADDRINFO_REMOTE = 0x18, 0x10, 0x10
AF_INET = 2
TCP_STATES = {"CLOSED": 0, "LISTENING": 1, "SYN_SENT": 2, "SYN_RCVD": 3, "ESTABLISHED": 4, "CLOSE_WAIT": 7}


# services.exe's service database of Windows 10 1709 and later x64 (Volatility's services-win10-16299-x64 table)
SVC_HEADER_RECORD, SVC_PREV, SVC_ORDER, SVC_START, SVC_NAME, SVC_DISPLAY = 0x10, 0x10, 0x20, 0x24, 0x38, 0x40
SVC_TYPE, SVC_STATE, SVC_PROCESS, SVC_RECORD_SIZE = 0x48, 0x4C, 0xE8, 0xF0
SVCPROC_BINARY, SVCPROC_PID, SVCPROC_SIZE = 0x18, 0x28, 0x30
SERVICE_WIN32_OWN_PROCESS, SERVICE_WIN32_SHARE_PROCESS, SERVICE_AUTO_START, SERVICE_RUNNING = 0x10, 0x20, 2, 4
SERVICES_REGION = 0x000001A000000000


def wintime(when: datetime) -> int:
    """A Windows FILETIME (100 ns since 1601) for an aware datetime."""
    return int((when.timestamp() + 11644473600) * 10_000_000)


@dataclass
class BuiltProcess:
    """Where a scenario process ended up in the image."""

    process: Process
    eprocess: int  # virtual address of its _EPROCESS
    dtb: int
    space: AddressSpace
    peb: int = 0


@dataclass
class WinMemImage:
    """The result of :func:`build_image`: the files and where things are."""

    image: Path
    symbols_dir: Path
    isf: Path
    scenario: Scenario
    processes: dict[int, BuiltProcess] = field(default_factory=dict)
    kernel_base: int = KERNEL_BASE
    dtb: int = KERNEL_DTB

    @property
    def pdb(self) -> tuple[str, str, int]:
        return PDB_NAME, PDB_GUID, PDB_AGE


class _Builder:
    def __init__(self, scenario: Scenario, size: int) -> None:
        self.sc = scenario
        self.types: SymbolTable = kernel_types()
        self.phys = PhysicalMemory(size, reserved=DTB_SCAN_RANGES)
        self.kspace = AddressSpace(self.phys, dtb=KERNEL_DTB)
        for va in (KERNEL_BASE, POOL_BASE, KUSER_KERNEL):
            self.kspace.prepare_kernel_slot(va)
        self.pool = Heap(self.kspace, POOL_BASE)
        self.kuser_page = self.phys.alloc_page()
        self.kspace.map(KUSER_KERNEL, self.kuser_page)
        self.kspace.ensure(KERNEL_BASE, KERNEL_IMAGE_SIZE)
        self.procs: dict[int, BuiltProcess] = {}
        self.process_regions: list[Region] = []  # each process's own data and image pages, for its VADs

    # -- helpers --------------------------------------------------------------------------------------------
    def kput(self, va: int, struct_name: str, values: dict) -> None:
        self.kspace.write(va, bytes(self.types.pack(struct_name, values)))

    def ustr(self, heap: Heap, text: str) -> dict[str, int]:
        """A _UNICODE_STRING value with its buffer written to ``heap``."""
        data = utf16(text)
        buf = heap.put(data + b"\x00\x00", align=8)
        return {"Length": len(data), "MaximumLength": len(data) + 2, "Buffer": buf}

    def sym(self, name: str) -> int:
        return canonical(KERNEL_BASE + KERNEL_SYMBOLS[name][0])

    def pool_object(self, tag: bytes, type_index: int, struct_name: str) -> int:
        """Allocate a pool block holding an object header and a ``struct_name`` body; the body's address."""
        hdr_size = self.types.structs["_OBJECT_HEADER"].size - 8  # Body is the object's first quadword
        header = self.pool_block(tag, hdr_size + self.types.structs[struct_name].size)
        # the header keeps its type index XORed with the cookie and the header address's second byte (Windows 10)
        encoded = ((header >> 8) ^ OB_HEADER_COOKIE ^ type_index) & 0xFF
        self.kput(header, "_OBJECT_HEADER", {"PointerCount": 3, "HandleCount": 1, "TypeIndex": encoded})
        return header + hdr_size

    # -- the kernel -----------------------------------------------------------------------------------------
    def kernel_image(self) -> None:
        k = KERNEL_BASE
        pe_off = 0x100
        dos = bytearray(0x40)
        dos[0:2] = b"MZ"
        struct.pack_into("<I", dos, 0x3C, pe_off)
        nt = bytearray(4 + 20 + 240)
        nt[0:4] = b"PE\x00\x00"
        # FileHeader: AMD64, one section, TimeDateStamp of the build, optional header size, executable image
        struct.pack_into("<HHIIIHH", nt, 4, 0x8664, 1, 0x5C2D1B6E, 0, 0, 240, 0x22)
        opt = 24
        struct.pack_into("<HBB", nt, opt, 0x20B, 14, 16)
        struct.pack_into("<Q", nt, opt + 24, k)  # ImageBase
        struct.pack_into("<II", nt, opt + 32, PAGE, 0x200)  # section/file alignment
        struct.pack_into("<HHHHHH", nt, opt + 40, 10, 0, 10, 0, 10, 0)  # OS/image/subsystem versions
        struct.pack_into("<II", nt, opt + 56, KERNEL_IMAGE_SIZE, 0x400)
        struct.pack_into("<H", nt, opt + 68, 1)  # native subsystem
        self.kspace.write(k, bytes(dos))
        self.kspace.write(k + pe_off, bytes(nt))
        # the CodeView debug record of the kernel's PDB
        rsds = b"RSDS" + uuid.UUID(PDB_GUID).bytes_le + struct.pack("<I", PDB_AGE) + PDB_NAME.encode() + b"\x00"
        self.kspace.write(k + 0x1000, rsds)
        for name, (rva, _size) in KERNEL_SYMBOLS.items():
            self.types.symbols[name] = rva
        self.kspace.write(self.sym("KeNumberProcessors"), struct.pack("<I", 2))
        self.kspace.write(self.sym("ObHeaderCookie"), struct.pack("<I", OB_HEADER_COOKIE))
        self.kput(
            self.sym("KdVersionBlock"),
            "_DBGKD_GET_VERSION64",
            {
                "MajorVersion": 0xF,
                "MinorVersion": self.sc.build,
                "ProtocolVersion": 6,
                "MachineType": 0x8664,
                "KernBase": k,
                "PsLoadedModuleList": self.sym("PsLoadedModuleList"),
            },
        )
        head = self.sym("PsLoadedModuleList")
        self.kput(head, "_LIST_ENTRY", {"Flink": head, "Blink": head})
        # the debugger data block: "KDBG" owner tag and the kernel base right after it
        kdbg = bytearray(KERNEL_SYMBOLS["KdDebuggerDataBlock"][1])
        kdbg[0x10:0x18] = b"KDBG" + struct.pack("<I", len(kdbg))
        for off, value in (
            (KDBG_KERNBASE, k),
            (KDBG_MODULES, head),
            (KDBG_PROCESSES, self.sym("PsActiveProcessHead")),
            (KDBG_BUILDLAB, k + NT_BUILD_LAB_RVA),
            (KDBG_CSD, k + CSD_VERSION_RVA),
        ):
            kdbg[off : off + 8] = u64(value)
        self.kspace.write(self.sym("KdDebuggerDataBlock"), bytes(kdbg))
        self.kspace.write(k + NT_BUILD_LAB_RVA, f"{self.sc.build}.1.amd64fre.rs5_release.180914-1434\x00".encode())
        self.kspace.write(k + CSD_VERSION_RVA, struct.pack("<I", 0))

    def kuser(self) -> None:
        data = self.types.pack(
            "_KUSER_SHARED_DATA",
            {
                "SystemTime": {
                    "LowPart": wintime(self.sc.capture) & 0xFFFFFFFF,
                    "High1Time": wintime(self.sc.capture) >> 32,
                    "High2Time": wintime(self.sc.capture) >> 32,
                },
                "NtSystemRoot": utf16("C:\\Windows"),
                "NtProductType": 3,
                "ProductTypeIsValid": 1,
                "NtMajorVersion": 10,
                "NtMinorVersion": 0,
                "NtBuildNumber": self.sc.build,
            },
        )
        self.phys.write(self.kuser_page, bytes(data))

    def object_types(self) -> None:
        table = self.sym("ObTypeIndexTable")
        self.kspace.write(table, u64(0))
        for index, name in enumerate(OBJECT_TYPES, start=1):
            obj = self.pool_object(b"ObjT", 1, "_OBJECT_TYPE")
            self.kput(
                obj,
                "_OBJECT_TYPE",
                {"TypeList": {"Flink": obj, "Blink": obj}, "Name": self.ustr(self.pool, name), "Index": index},
            )
            self.kspace.write(table + 8 * index, u64(obj))

    def set_field(self, va: int, struct_name: str, member: str, value: int) -> None:
        """Overwrite one pointer-sized member of a structure already written."""
        self.kspace.write(va + self.types.offset(struct_name, member), u64(value))

    def handle_tables(self) -> None:
        """One single-level handle table per holder; handle values 4, 8, ... in scenario order."""
        holders: dict[int, list] = {}
        for h in self.sc.handles:
            holders.setdefault(h.holder, []).append(h)
        entry_size = self.types.structs["_HANDLE_TABLE_ENTRY"].size
        for pid, handles in holders.items():
            page = self.pool.alloc(PAGE, align=PAGE)
            for i, h in enumerate(handles, start=1):
                header = self.procs[h.target].eprocess - (self.types.structs["_OBJECT_HEADER"].size - 8)
                self.kput(
                    page + i * entry_size,
                    "_HANDLE_TABLE_ENTRY",
                    {
                        "Unlocked": 1,
                        "RefCnt": 1,
                        "ObjectPointerBits": (header & 0xFFFFFFFFFFFF) >> 4,
                        "GrantedAccessBits": h.access,
                    },
                )
            table = self.pool.put(bytes(self.types.pack("_HANDLE_TABLE", {"TableCode": page})))
            self.set_field(self.procs[pid].eprocess, "_EPROCESS", "ObjectTable", table)

    def vads(self) -> None:
        """Private regions as ``VadS`` pool blocks in a tree ordered by address (each the right child of the last)."""
        t = self.types
        # MM protection index -> PAGE_* value, as the kernel's own table maps it
        self.kspace.write(
            self.sym("MmProtectToValue"),
            b"".join(struct.pack("<i", PAGE_PROTECTIONS[i % 8] | PROTECTION_MODIFIERS[i // 8]) for i in range(32)),
        )
        by_pid: dict[int, list] = {}
        regions = [*self.sc.regions, *self.process_regions]
        services = self.service_database()
        if services is not None:
            regions.append(services)
        for r in sorted(regions, key=lambda r: r.start):
            by_pid.setdefault(r.pid, []).append(r)
        size = t.structs["_MMVAD_SHORT"].size
        for pid, regions in by_pid.items():
            space = self.procs[pid].space
            nodes = []
            for r in regions:
                space.ensure(r.start, r.size, user=True)
                space.write(r.start, r.content)
                nodes.append((self.pool_block(b"VadS", size), r))
            for i, (node, r) in enumerate(nodes):
                right = nodes[i + 1][0] if i + 1 < len(nodes) else 0
                parent = nodes[i - 1][0] if i else 0
                self.kput(
                    node,
                    "_MMVAD_SHORT",
                    {
                        "VadNode": {"Right": right, "ParentValue": parent},
                        # page numbers above 32 bits (0x7FF6... image bases) keep their top in the *High bytes
                        "StartingVpn": (r.start >> 12) & 0xFFFFFFFF,
                        "EndingVpn": ((r.start + r.size - 1) >> 12) & 0xFFFFFFFF,
                        "StartingVpnHigh": r.start >> 44,
                        "EndingVpnHigh": (r.start + r.size - 1) >> 44,
                        "u": {"VadFlags": {"Protection": r.protection, "PrivateMemory": 1}},
                        "u1": {"VadFlags1": {"CommitCharge": r.size // PAGE, "MemCommit": 1}},
                    },
                )
            self.set_field(self.procs[pid].eprocess, "_EPROCESS", "VadRoot", nodes[0][0])

    def pool_block(self, tag: bytes, size: int) -> int:
        """A pool block with no object header (tcpip.sys endpoints, VADs); the address of its body."""
        total = -(-(16 + size) // POOL_ALIGN) * POOL_ALIGN
        block = self.pool.alloc(total, align=POOL_ALIGN)
        self.kput(
            block,
            "_POOL_HEADER",
            {"BlockSize": total // POOL_ALIGN, "PoolType": NONPAGED, "PoolTag": int.from_bytes(tag, "little")},
        )
        return block + 16

    def tcp_endpoints(self) -> None:
        inetaf = self.pool.put(bytes(INETAF_FAMILY) + struct.pack("<H", AF_INET) + bytes(6))
        for c in self.sc.connections:
            local = self.pool.put(ipaddress.IPv4Address(c.local).packed + bytes(12))
            remote = self.pool.put(ipaddress.IPv4Address(c.remote).packed + bytes(12))
            local_address = self.pool.put(bytes(LOCAL_ADDRESS_DATA) + u64(self.pool.put(u64(local))))
            addrinfo = self.pool.put(u64(local_address) + bytes(ADDRINFO_REMOTE - 8) + u64(remote))
            body = bytearray(TCPE_SIZE)
            body[TCPE_INETAF : TCPE_INETAF + 8] = u64(inetaf)
            body[TCPE_ADDRINFO : TCPE_ADDRINFO + 8] = u64(addrinfo)
            struct.pack_into("<i", body, TCPE_STATE, TCP_STATES[c.state])
            struct.pack_into(">HH", body, TCPE_LOCAL_PORT, c.local_port, c.remote_port)
            body[TCPE_OWNER : TCPE_OWNER + 8] = u64(self.procs[c.pid].eprocess)
            body[TCPE_CREATED : TCPE_CREATED + 8] = u64(wintime(c.created))
            self.kspace.write(self.pool_block(b"TcpE", TCPE_SIZE), bytes(body))

    def file_objects(self) -> None:
        for path in self.sc.files:
            obj = self.pool_object(b"File", self.type_index("File"), "_FILE_OBJECT")
            self.kput(
                obj,
                "_FILE_OBJECT",
                {"Type": 5, "Size": self.types.structs["_FILE_OBJECT"].size, "FileName": self.ustr(self.pool, path)},
            )

    def service_database(self) -> Region | None:
        """services.exe's service records (a ``serH`` header pointing at the last record, each record at the one
        before) in a private region of its address space; the region, for its VAD."""
        if not self.sc.services:
            return None
        owner = next(b for b in self.procs.values() if b.process.name == "services.exe")
        base, n = SERVICES_REGION, len(self.sc.services)
        data = bytearray(0x200 + n * (SVC_RECORD_SIZE + SVCPROC_SIZE))
        strings = bytearray()

        def text(value: str) -> int:
            at = base + len(data) + len(strings)
            strings.extend(utf16(value) + b"\x00\x00")
            return at

        records = [0x100 + i * SVC_RECORD_SIZE for i in range(n)]
        for i, (svc, rec) in enumerate(zip(self.sc.services, records, strict=True)):
            proc = 0x100 + n * SVC_RECORD_SIZE + i * SVCPROC_SIZE
            data[proc + SVCPROC_BINARY : proc + SVCPROC_BINARY + 8] = u64(text(svc.binary))
            struct.pack_into("<I", data, proc + SVCPROC_PID, svc.pid)
            prev = base + records[i - 1] if i else 0
            data[rec : rec + 8] = u64(prev)  # ServiceList.Blink
            data[rec + SVC_PREV : rec + SVC_PREV + 8] = u64(prev)
            kind = SERVICE_WIN32_SHARE_PROCESS if svc.shared else SERVICE_WIN32_OWN_PROCESS
            struct.pack_into("<Ii", data, rec + SVC_ORDER, i + 1, SERVICE_AUTO_START)
            data[rec + SVC_NAME : rec + SVC_NAME + 8] = u64(text(svc.name))
            data[rec + SVC_DISPLAY : rec + SVC_DISPLAY + 8] = u64(text(svc.display))
            struct.pack_into("<Ii", data, rec + SVC_TYPE, kind, SERVICE_RUNNING)
            data[rec + SVC_PROCESS : rec + SVC_PROCESS + 8] = u64(base + proc)
        data[0:4] = b"serH"
        data[SVC_HEADER_RECORD : SVC_HEADER_RECORD + 8] = u64(base + records[-1])
        content = bytes(data + strings)
        return Region(owner.process.pid, base, -(-len(content) // PAGE) * PAGE, MM_READWRITE, content)

    def type_index(self, name: str) -> int:
        return OBJECT_TYPES.index(name) + 1

    # -- processes ------------------------------------------------------------------------------------------
    def process(self, p: Process) -> BuiltProcess:
        space = self.kspace if p.pid == 4 else AddressSpace(self.phys, kernel=self.kspace)
        if space is not self.kspace:
            space.map(KUSER_USER, self.kuser_page, user=True)
        eproc = self.pool_object(b"Proc", self.type_index("Process"), "_EPROCESS")
        built = BuiltProcess(p, eproc, space.dtb, space)
        if p.pid != 4:
            built.peb = self.user_side(p, space)
        session = 0
        if p.session is not None:
            session = self.pool.put(
                bytes(self.types.pack("_MM_SESSION_SPACE", {"ReferenceCount": 1, "SessionId": p.session}))
            )
        audit = 0
        if p.path:
            audit = self.pool.put(
                bytes(self.types.pack("_OBJECT_NAME_INFORMATION", {"Name": self.ustr(self.pool, p.device_path)}))
            )
        threads = eproc + self.types.offset("_EPROCESS", "ThreadListHead")
        links = eproc + self.types.offset("_EPROCESS", "ActiveProcessLinks")
        self.kput(
            eproc,
            "_EPROCESS",
            {
                "Pcb": {"DirectoryTableBase": space.dtb, "ThreadListHead": {"Flink": threads, "Blink": threads}},
                "UniqueProcessId": p.pid,
                "ActiveProcessLinks": {"Flink": links, "Blink": links},
                "CreateTime": {"QuadPart": 0 if p.pid == 4 else wintime(p.created)},
                "InheritedFromUniqueProcessId": p.ppid,
                "Session": session,
                "Peb": built.peb,
                "ImageFileName": p.name.encode()[:14],
                "ActiveThreads": 1 if p.pid != 4 else 120,
                "ThreadListHead": {"Flink": threads, "Blink": threads},
                "SeAuditProcessCreationInfo": {"ImageFileName": audit},
            },
        )
        self.procs[p.pid] = built
        return built

    def user_side(self, p: Process, space: AddressSpace) -> int:
        """PEB, loader lists and process parameters in the process's own address space; the PEB address."""
        heap = Heap(space, USER_DATA, user=True)
        peb = heap.alloc(self.types.structs["_PEB"].size)
        ldr = heap.alloc(self.types.structs["_PEB_LDR_DATA"].size)
        params = heap.alloc(self.types.structs["_RTL_USER_PROCESS_PARAMETERS"].size)
        env = heap.put(utf16(f"COMPUTERNAME={self.sc.hostname}\x00SystemRoot=C:\\Windows\x00\x00"))
        self.uput(
            space,
            params,
            "_RTL_USER_PROCESS_PARAMETERS",
            {
                "MaximumLength": self.types.structs["_RTL_USER_PROCESS_PARAMETERS"].size,
                "Flags": 1,
                "ImagePathName": self.ustr(heap, p.path),
                "CommandLine": self.ustr(heap, p.cmdline),
                "Environment": env,
                "EnvironmentSize": 0x80,
            },
        )
        image_base = 0x00007FF600000000 + (p.pid << 20)
        modules = [(p.path, image_base, 0x20000)]
        for i, dll in enumerate(p.dlls):
            modules.append((dll, 0x00007FFB00000000 + (i << 24), 0x1A0000))
        entries = [heap.alloc(self.types.structs["_LDR_DATA_TABLE_ENTRY"].size) for _ in modules]
        lists = ("InLoadOrder", "InMemoryOrder", "InInitializationOrder")
        heads = {n: ldr + self.types.offset("_PEB_LDR_DATA", f"{n}ModuleList") for n in lists}
        for i, ((path, base_va, size), entry) in enumerate(zip(modules, entries, strict=True)):
            values: dict = {
                "DllBase": base_va,
                "EntryPoint": base_va + 0x1000,
                "SizeOfImage": size,
                "FullDllName": self.ustr(heap, path),
                "BaseDllName": self.ustr(heap, path.rsplit("\\", 1)[-1]),
                "ObsoleteLoadCount": 6,
                "LoadTime": {"QuadPart": wintime(p.created)},
            }
            for n in lists:
                off = self.types.offset("_LDR_DATA_TABLE_ENTRY", f"{n}Links")
                prev = entries[i - 1] + off if i else heads[n]
                nxt = entries[i + 1] + off if i + 1 < len(entries) else heads[n]
                values[f"{n}Links"] = {"Flink": nxt, "Blink": prev}
            self.uput(space, entry, "_LDR_DATA_TABLE_ENTRY", values)
        ldr_values: dict = {"Length": self.types.structs["_PEB_LDR_DATA"].size, "Initialized": 1}
        for n in lists:
            off = self.types.offset("_LDR_DATA_TABLE_ENTRY", f"{n}Links")
            ldr_values[f"{n}ModuleList"] = {"Flink": entries[0] + off, "Blink": entries[-1] + off}
        self.uput(space, ldr, "_PEB_LDR_DATA", ldr_values)
        self.uput(space, peb, "_PEB", {"ImageBaseAddress": image_base, "Ldr": ldr, "ProcessParameters": params})
        # the image's first page (MZ) so the PEB's ImageBaseAddress is readable
        space.ensure(image_base, PAGE, user=True)
        space.write(image_base, b"MZ")
        data_size = -(-(heap.cursor - USER_DATA) // PAGE) * PAGE
        self.process_regions += [
            Region(p.pid, USER_DATA, data_size, MM_READWRITE),
            Region(p.pid, image_base, PAGE, MM_READONLY),
        ]
        return peb

    def uput(self, space: AddressSpace, va: int, struct_name: str, values: dict) -> None:
        space.write(va, bytes(self.types.pack(struct_name, values)))

    def link_processes(self) -> None:
        """Chain the listed processes into PsActiveProcessHead; hidden ones keep links to themselves."""
        head = self.sym("PsActiveProcessHead")
        off = self.types.offset("_EPROCESS", "ActiveProcessLinks")
        chain = [head] + [b.eprocess + off for b in self.procs.values() if not b.process.hidden]
        for i, node in enumerate(chain):
            self.kput(node, "_LIST_ENTRY", {"Flink": chain[(i + 1) % len(chain)], "Blink": chain[i - 1]})

    def build(self) -> None:
        self.kernel_image()
        self.kuser()
        self.object_types()
        for p in self.sc.processes:
            self.process(p)
        self.link_processes()
        head = self.sym("CmpHiveListHead")
        self.kput(head, "_LIST_ENTRY", {"Flink": head, "Blink": head})  # no registry hives in this image
        self.handle_tables()
        self.vads()
        self.tcp_endpoints()
        self.file_objects()

    def metadata(self) -> dict:
        return {
            "format": "6.2.0",
            "producer": {"name": "triage.testing.winmem", "version": "1"},
            "windows": {
                "pdb": {"GUID": PDB_GUID, "age": PDB_AGE, "database": PDB_NAME, "machine_type": 0x8664},
                "pe": {"major": 10, "minor": 0, "revision": self.sc.build, "build": 1},
            },
        }


def build_image(
    image: Path,
    symbols_dir: Path,
    scenario: Scenario = DEFAULT,
    size: int = MEMORY_SIZE,
    plants: Mapping[int, bytes] | None = None,
) -> WinMemImage:
    """Write the raw memory image to ``image`` and its symbol table below ``symbols_dir`` (as
    ``windows/ntkrnlmp.pdb/<GUID>-<age>.json.xz``, where Volatility looks for a kernel's ISF).

    ``plants`` (physical offset -> bytes) are written into pages the scenario left empty, as unmapped memory
    holding leftovers (strings for the symbol-free scan); a plant over a used page raises ``ValueError``."""
    b = _Builder(scenario, size)
    b.build()
    for offset, data in (plants or {}).items():
        first, end = offset - offset % PAGE, -(-(offset + len(data)) // PAGE) * PAGE
        if not 0 <= offset <= size - len(data) or any(b.phys.read(first, end - first)):
            raise ValueError(f"plant at {offset:#x} would overwrite the scenario's memory (its pages are in use)")
        b.phys.write(offset, data)
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(bytes(b.phys.data))
    isf = b.types.write_isf(symbols_dir / "windows" / PDB_NAME / f"{PDB_GUID}-{PDB_AGE}.json.xz", b.metadata())
    return WinMemImage(image, symbols_dir, isf, scenario, dict(b.procs))


def iter_pages(data: bytes) -> Iterator[int]:
    """Offsets of the non-zero pages of an image (how much of it is really used)."""
    for off in range(0, len(data), PAGE):
        if any(data[off : off + PAGE]):
            yield off
