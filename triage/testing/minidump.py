"""A tiny minidump writer for tests: header, stream directory, SystemInfo, MiscInfo, ModuleList, Memory64List.

The layout follows minidumpapiset.h (MINIDUMP_HEADER, MINIDUMP_DIRECTORY, MINIDUMP_MODULE of 108 bytes,
MINIDUMP_STRING as a byte length plus UTF-16LE, MINIDUMP_MISC_INFO with the process id and start time),
which is what procdump -ma and comsvcs.dll MiniDump write for lsass.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime

LSASS_MODULES: tuple[tuple[str, int, int], ...] = (
    (r"C:\Windows\System32\lsass.exe", 0x7FF6_2A7B_0000, 0x1_3000),
    (r"C:\Windows\SYSTEM32\ntdll.dll", 0x7FFD_8C3A_0000, 0x1_F0000),
    (r"C:\Windows\system32\lsasrv.dll", 0x7FFD_89B0_0000, 0x1_9A000),
    (r"C:\Windows\system32\msv1_0.dll", 0x7FFD_88E0_0000, 0x7_2000),
    (r"C:\Windows\system32\wdigest.DLL", 0x7FFD_8880_0000, 0x4_2000),
    (r"C:\Windows\system32\kerberos.DLL", 0x7FFD_8890_0000, 0xC_6000),
)
FULL_MEMORY_FLAGS = 0x61826  # what procdump -ma writes: WithFullMemory | WithHandleData | ... (0x2 set)
T_CREATED = datetime(2021, 2, 26, 6, 12, 40, tzinfo=UTC)
T_WRITTEN = datetime(2021, 3, 3, 4, 21, 7, tzinfo=UTC)


def _align(buf: bytearray, n: int = 8) -> None:
    buf.extend(bytes(-len(buf) % n))


def minidump(
    modules: Sequence[tuple[str, int, int]] = LSASS_MODULES,
    *,
    pid: int | None = 644,
    created: datetime | None = T_CREATED,
    written: datetime = T_WRITTEN,
    flags: int = FULL_MEMORY_FLAGS,
    os_version: tuple[int, int, int] = (10, 0, 17763),
    memory: Sequence[tuple[int, bytes]] = (),
    comment: str = "",
) -> bytes:
    """The bytes of a minidump holding ``modules`` (the first is the process image) and ``memory`` ranges."""
    streams: list[tuple[int, bytes | None]] = []  # (type, body); bodies placed after the directory
    sysinfo = struct.pack("<HHHBBIIIIIHH", 9, 6, 0x5504, 4, 3, *os_version, 2, 0, 0x110, 0) + bytes(24)
    streams.append((7, sysinfo))
    misc_flags = (1 if pid is not None else 0) | (2 if created is not None else 0)
    misc = struct.pack("<IIIIII", 24, misc_flags, pid or 0, int(created.timestamp()) if created else 0, 3, 12)
    streams.append((15, misc))
    if comment:  # CommentStreamW, as some dumping tools write their name and command line
        streams.append((11, comment.encode("utf-16-le") + b"\x00\x00"))
    streams.append((4, None))  # module list: needs the string RVAs, built below
    if memory:
        streams.append((9, None))

    out = bytearray(32 + 12 * len(streams))
    _align(out)
    placed: dict[int, tuple[int, int]] = {}
    for stype, body in streams:
        if body is not None:
            placed[stype] = (len(out), len(body))
            out.extend(body)
            _align(out)
    # module names first, then the list that points at them
    name_rvas = []
    for name, _base, _size in modules:
        name_rvas.append(len(out))
        raw = name.encode("utf-16-le")
        out.extend(struct.pack("<I", len(raw)) + raw + b"\x00\x00")
        _align(out)
    mod_list = bytearray(struct.pack("<I", len(modules)))
    stamp = int(datetime(2020, 10, 7, tzinfo=UTC).timestamp())
    for (_name, base, size), rva in zip(modules, name_rvas, strict=True):
        mod_list.extend(struct.pack("<QIIII52s8s8sQQ", base, size, 0, stamp, rva, bytes(52), bytes(8), bytes(8), 0, 0))
    placed[4] = (len(out), len(mod_list))
    out.extend(mod_list)
    _align(out)
    if memory:
        header_size = 16 + 16 * len(memory)
        base_rva = len(out) + header_size
        desc = bytearray(struct.pack("<QQ", len(memory), base_rva))
        for start, data in memory:
            desc.extend(struct.pack("<QQ", start, len(data)))
        placed[9] = (len(out), len(desc))
        out.extend(desc)
        for _start, data in memory:
            out.extend(data)
    struct.pack_into("<4sIIIIIQ", out, 0, b"MDMP", 0xA793, len(streams), 32, 0, int(written.timestamp()), flags)
    for i, (stype, _body) in enumerate(streams):
        rva, size = placed[stype]
        struct.pack_into("<III", out, 32 + 12 * i, stype, size, rva)
    return bytes(out)
