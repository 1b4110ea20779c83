"""The kernel structures of the synthetic image, named as Windows names them (Volatility's plugins and
extensions look them up by these names), with only the members the plugins read and our own offsets.

Offsets are ours except where Volatility reads a fixed place without symbols: the ``_KUSER_SHARED_DATA``
members (its layer check reads ``NtMajorVersion`` at 0x26C), the pool header and the object header, whose
layouts the pool scanner assumes. Types Volatility's Windows symbol class registers helpers for must exist;
those no plugin of the scenario reads are defined with no members.
"""

from __future__ import annotations

from triage.testing.winmem.isf import SymbolTable, array, base, bitfields, enum, ptr, struct

U8, U16, U32, U64 = base("unsigned char"), base("unsigned short"), base("unsigned long"), base("unsigned long long")
I64 = base("long long")
LIST = struct("_LIST_ENTRY")
USTR = struct("_UNICODE_STRING")
LARGE = struct("_LARGE_INTEGER")

# registered by volatility3.framework.symbols.windows.WindowsKernelIntermedSymbols; unused by the scenario
PLACEHOLDER_TYPES = (
    "_ERESOURCE",
    "_TOKEN",
    "_DEVICE_OBJECT",
    "_CM_KEY_BODY",
    "_CM_KEY_NODE",
    "_CM_KEY_VALUE",
    "_HMAP_ENTRY",
    "_KMUTANT",
    "_DRIVER_OBJECT",
    "_OBJECT_SYMBOLIC_LINK",
    "_SHARED_CACHE_MAP",
    "_VACB",
    "_KTIMER",
    "_IMAGE_DOS_HEADER",
    "_KTHREAD",
)


def kernel_types() -> SymbolTable:
    """The symbol table's types (symbols are added by the image builder once it has placed them)."""
    t = SymbolTable()
    for name in PLACEHOLDER_TYPES:
        t.define(name, [], size=8)
    _handles(t)
    _vads(t)
    t.define("_LIST_ENTRY", [("Flink", ptr(LIST)), ("Blink", ptr(LIST))])
    t.define("_UNICODE_STRING", [("Length", U16), ("MaximumLength", U16), ("Buffer", ptr(base("wchar")))])
    t.define("_LARGE_INTEGER", [("QuadPart", I64, 0), ("LowPart", U32, 0), ("HighPart", base("long"), 4)], size=8)
    t.define("_KSYSTEM_TIME", [("LowPart", U32), ("High1Time", base("long")), ("High2Time", base("long"))])
    t.define("_EX_FAST_REF", [("Object", ptr(), 0), ("Value", U64, 0)], size=8)
    t.define("_ETHREAD", [("Tcb", struct("_KTHREAD")), ("ThreadListEntry", LIST, 0x10)], size=0x20)
    t.define_enum("_NT_PRODUCT_TYPE", "long", {"NtProductWinNt": 1, "NtProductLanManNt": 2, "NtProductServer": 3})
    t.define_enum(
        "_POOL_TYPE", "long", {"NonPagedPool": 0, "PagedPool": 1, "NonPagedPoolNx": 0x200, "NonPagedPoolExecute": 0}
    )
    # fixed offsets: Volatility reads NtMajorVersion at 0x26C without symbols
    t.define(
        "_KUSER_SHARED_DATA",
        [
            ("InterruptTime", struct("_KSYSTEM_TIME"), 0x8),
            ("SystemTime", struct("_KSYSTEM_TIME"), 0x14),
            ("NtSystemRoot", array(260, base("wchar")), 0x30),
            ("NtProductType", enum("_NT_PRODUCT_TYPE"), 0x264),
            ("ProductTypeIsValid", U8, 0x268),
            ("NtMajorVersion", U32, 0x26C),
            ("NtMinorVersion", U32, 0x270),
            ("NtBuildNumber", U32, 0x260),
        ],
        size=0x720,
    )
    t.define(
        "_DBGKD_GET_VERSION64",
        [
            ("MajorVersion", U16),
            ("MinorVersion", U16),
            ("ProtocolVersion", U8),
            ("KdSecondaryVersion", U8),
            ("Flags", U16),
            ("MachineType", U16),
            ("MaxPacketType", U8),
            ("MaxStateChange", U8),
            ("MaxManipulate", U8),
            ("Simulation", U8),
            ("Unused", array(1, U16)),
            ("KernBase", U64),
            ("PsLoadedModuleList", U64),
            ("DebuggerDataList", U64),
        ],
    )
    # the pool and object headers as x64 Windows 10 lays them out (the pool scanner carves by these offsets)
    t.define(
        "_POOL_HEADER",
        [
            *bitfields("unsigned short", 0, ("PreviousSize", 0, 8), ("PoolIndex", 8, 8)),
            *bitfields("unsigned short", 2, ("BlockSize", 0, 8), ("PoolType", 8, 8)),
            ("PoolTag", U32, 4),
            ("ProcessBilled", ptr(), 8),
        ],
        size=16,
    )
    # PoolType present: Volatility picks the Vista-and-later pool header semantics
    t.define("_POOL_TRACKER_BIG_PAGES", [("Va", U64), ("Key", U32), ("PoolType", U32), ("NumberOfBytes", U64)])
    t.define(
        "_OBJECT_HEADER",
        [
            ("PointerCount", I64, 0),
            ("HandleCount", I64, 0x8),
            ("TypeIndex", U8, 0x18),
            ("TraceFlags", U8, 0x19),
            ("InfoMask", U8, 0x1A),
            ("Flags", U8, 0x1B),
            ("ObjectCreateInfo", ptr(), 0x20),
            ("SecurityDescriptor", ptr(), 0x28),
            ("Body", U64, 0x30),
        ],
        size=0x38,
    )
    t.define(
        "_OBJECT_HEADER_CREATOR_INFO",
        [("TypeList", LIST), ("CreatorUniqueProcess", ptr()), ("CreatorBackTraceIndex", U16)],
        size=0x20,
    )
    t.define("_OBJECT_HEADER_NAME_INFO", [("Directory", ptr()), ("Name", USTR), ("ReferenceCount", base("long"))])
    t.define("_OBJECT_TYPE", [("TypeList", LIST), ("Name", USTR), ("DefaultObject", ptr()), ("Index", U8)])
    t.define("_OBJECT_NAME_INFORMATION", [("Name", USTR)])
    t.define("_SE_AUDIT_PROCESS_CREATION_INFO", [("ImageFileName", ptr(struct("_OBJECT_NAME_INFORMATION")))])
    t.define("_MM_SESSION_SPACE", [("ReferenceCount", base("long")), ("u", U32), ("SessionId", U32)])
    # process environment (user space)
    t.define(
        "_RTL_USER_PROCESS_PARAMETERS",
        [
            ("MaximumLength", U32),
            ("Length", U32),
            ("Flags", U32),
            ("DebugFlags", U32),
            ("ConsoleHandle", ptr()),
            ("CurrentDirectoryPath", USTR),
            ("DllPath", USTR),
            ("ImagePathName", USTR),
            ("CommandLine", USTR),
            ("Environment", ptr()),
            ("EnvironmentSize", U64),
        ],
    )
    t.define(
        "_PEB_LDR_DATA",
        [
            ("Length", U32),
            ("Initialized", U8),
            ("SsHandle", ptr()),
            ("InLoadOrderModuleList", LIST),
            ("InMemoryOrderModuleList", LIST),
            ("InInitializationOrderModuleList", LIST),
        ],
    )
    t.define(
        "_PEB",
        [
            ("InheritedAddressSpace", U8),
            ("BeingDebugged", U8, 2),
            ("Mutant", ptr()),
            ("ImageBaseAddress", ptr()),
            ("Ldr", ptr(struct("_PEB_LDR_DATA"))),
            ("ProcessParameters", ptr(struct("_RTL_USER_PROCESS_PARAMETERS"))),
        ],
    )
    t.define(
        "_LDR_DATA_TABLE_ENTRY",
        [
            ("InLoadOrderLinks", LIST),
            ("InMemoryOrderLinks", LIST),
            ("InInitializationOrderLinks", LIST),
            ("DllBase", ptr()),
            ("EntryPoint", ptr()),
            ("SizeOfImage", U32),
            ("FullDllName", USTR),
            ("BaseDllName", USTR),
            ("ObsoleteLoadCount", U16),
            ("LoadTime", LARGE),
        ],
    )
    t.define("_KPROCESS", [("Header", array(0x18, U8)), ("DirectoryTableBase", U64), ("ThreadListHead", LIST)])
    t.define(
        "_EPROCESS",
        [
            ("Pcb", struct("_KPROCESS")),
            ("UniqueProcessId", U64),
            ("ActiveProcessLinks", LIST),
            ("CreateTime", LARGE),
            ("ExitTime", LARGE),
            ("InheritedFromUniqueProcessId", U64),
            ("ObjectTable", ptr(struct("_HANDLE_TABLE"))),
            ("Session", ptr()),
            ("Peb", ptr(struct("_PEB"))),
            ("Wow64Process", ptr()),
            ("ImageFileName", array(15, U8)),
            ("PriorityClass", U8),
            ("ActiveThreads", U32),
            ("ThreadListHead", LIST),
            ("SeAuditProcessCreationInfo", struct("_SE_AUDIT_PROCESS_CREATION_INFO")),
            ("VadRoot", struct("_RTL_AVL_TREE")),
        ],
        size=0x300,  # the pool scanner wants process allocations of at least 600 bytes
    )
    # members of the file object are added by the filescan part of the scenario
    t.define("_FILE_OBJECT", [("Type", base("short")), ("Size", base("short")), ("FileName", USTR, 0x58)])
    t.define("_CONTROL_AREA", [("Segment", ptr())])
    t.define("_CMHIVE", [("Signature", U32), ("HiveList", LIST, 0x10)])  # CmpHiveListHead's entries (none here)
    return t


def _handles(t: SymbolTable) -> None:
    """x64 Windows 10 handle tables: one level of 16-byte entries, the object header address in 44 bits."""
    t.define("_HANDLE_TABLE", [("NextHandleNeedingPool", U32), ("ExtraInfoPages", base("long")), ("TableCode", U64)])
    t.define(
        "_HANDLE_TABLE_ENTRY",
        [
            *bitfields("unsigned long long", 0, ("Unlocked", 0, 1), ("RefCnt", 1, 16), ("ObjectPointerBits", 20, 44)),
            *bitfields("unsigned long", 8, ("GrantedAccessBits", 0, 25)),
        ],
        size=16,
    )


def _vads(t: SymbolTable) -> None:
    """VAD nodes in the balanced tree of Windows 8.1 and later (``_RTL_AVL_TREE`` root, ``VadNode`` links)."""
    node = struct("_RTL_BALANCED_NODE")
    t.define("_RTL_BALANCED_NODE", [("Left", ptr(node)), ("Right", ptr(node)), ("ParentValue", U64)])
    t.define("_RTL_AVL_TREE", [("Root", ptr(node))])
    flags = bitfields("unsigned long", 0, ("VadType", 0, 3), ("Protection", 3, 5), ("PrivateMemory", 15, 1))
    t.define("_MMVAD_FLAGS", flags, size=4)
    t.define("_MMVAD_FLAGS1", bitfields("unsigned long", 0, ("CommitCharge", 0, 31), ("MemCommit", 31, 1)), size=4)
    t.define("_MMVAD_SHORT_U", [("VadFlags", struct("_MMVAD_FLAGS"))])
    t.define("_MMVAD_SHORT_U1", [("VadFlags1", struct("_MMVAD_FLAGS1"))])
    t.define(
        "_MMVAD_SHORT",
        [
            ("VadNode", node),
            ("StartingVpn", U32),
            ("EndingVpn", U32),
            ("StartingVpnHigh", U8),
            ("EndingVpnHigh", U8),
            ("ReferenceCount", base("long"), 0x24),
            ("u", struct("_MMVAD_SHORT_U")),
            ("u1", struct("_MMVAD_SHORT_U1")),
        ],
    )
    t.define("_MMVAD", [("Core", struct("_MMVAD_SHORT")), ("Subsection", ptr())])
