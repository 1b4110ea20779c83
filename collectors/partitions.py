"""Partition tables of a disk image: MBR (with extended/EBR chains) and GPT (header and entry CRCs, backup header).

Our own small parser: it reads through a ``read_at(offset, size)`` callable, never writes, and treats every
table as hostile. Chains and entry counts are bounded, so a looping EBR chain or an absurd GPT entry count
cannot hang a collection; every oddity becomes a warning in :attr:`PartitionTable.warnings`. When no table
can be trusted, the caller gets a bare volume at offset 0 or NTFS boot sectors found at the usual alignments.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

SECTOR = 512
MAX_LOGICAL = 128  # logical partitions followed along an EBR chain
MAX_GPT_ENTRIES = 1024  # the spec's minimum is 128; more is legal but never seen on a Windows disk
EXTENDED_TYPES = {0x05, 0x0F, 0x85}
GPT_PROTECTIVE = 0xEE
NTFS_OEM = b"NTFS    "
BITLOCKER_OEM = b"-FVE-FS-"
# Windows' "basic data" and a few types worth naming in the notes
GPT_TYPES = {
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "basic data",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery",
    "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3": "LDM metadata",
    "af9b60a0-1431-4f62-bc68-3311714a69ad": "LDM data",
}
CARVE_LIMIT = 512  # candidate offsets probed when no table can be trusted

ReadAt = Callable[[int, int], bytes]


@dataclass
class Partition:
    """One partition (or the whole disk as a bare volume)."""

    index: int  # 1-based, in table order; logical MBR partitions follow the primaries (5, 6, ...)
    offset: int  # bytes from the start of the disk
    size: int  # bytes
    scheme: str  # 'mbr', 'gpt', 'none' (bare volume) or 'carved' (found by boot sector)
    type: str = ""  # MBR type byte as '0x07', or the GPT type GUID
    guid: bytes = b""  # GPT unique partition GUID, as stored on disk (mixed-endian)
    name: str = ""  # GPT partition name

    @property
    def type_name(self) -> str:
        return GPT_TYPES.get(self.type, self.type)

    @property
    def guid_text(self) -> str:
        return str(uuid.UUID(bytes_le=self.guid)) if len(self.guid) == 16 else ""


@dataclass
class PartitionTable:
    """What was found in front of the volumes, and what was odd about it."""

    scheme: str  # 'mbr', 'gpt', 'none' or 'carved'
    partitions: list[Partition] = field(default_factory=list)
    disk_signature: bytes = b""  # MBR disk signature (4 bytes at 440), as MountedDevices stores it
    disk_guid: str = ""
    warnings: list[str] = field(default_factory=list)


def boot_oem(sector: bytes) -> bytes:
    """The OEM id of a volume boot sector (``NTFS    ``, ``-FVE-FS-`` ...)."""
    return sector[3:11] if len(sector) >= 11 else b""


def is_ntfs_boot(sector: bytes) -> bool:
    """An NTFS boot sector: OEM id plus a sane bytes-per-sector field."""
    if len(sector) < 512 or boot_oem(sector) != NTFS_OEM:
        return False
    bps = struct.unpack_from("<H", sector, 11)[0]
    return bps in (256, 512, 1024, 2048, 4096)


def ntfs_volume_size(sector: bytes) -> int:
    """Bytes covered by an NTFS volume, from its boot sector (total sectors + the backup boot sector)."""
    bps = struct.unpack_from("<H", sector, 11)[0]
    total = struct.unpack_from("<Q", sector, 40)[0]
    return (total + 1) * bps


def _read(read_at: ReadAt, offset: int, size: int) -> bytes:
    try:
        return read_at(offset, size)
    except OSError:
        return b""


def _mbr_entries(sector: bytes) -> list[tuple[int, int, int, int]]:
    """(status, type, first LBA, sector count) of the four slots, empty slots left out."""
    out = []
    for i in range(4):
        status, ptype, lba, count = struct.unpack_from("<B3xB3xII", sector, 446 + 16 * i)
        if ptype and count:
            out.append((status, ptype, lba, count))
    return out


def looks_like_mbr(sector: bytes, disk_size: int) -> bool:
    """A boot signature and at least one plausible entry: how a raw disk is told from other data."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa" or is_ntfs_boot(sector):
        return False
    entries = _mbr_entries(sector)
    if not entries:
        return False
    for status, _ptype, lba, _count in entries:
        if status not in (0x00, 0x80) or lba == 0 or (disk_size and lba * SECTOR >= disk_size):
            return False
    return True


def read_partitions(read_at: ReadAt, disk_size: int) -> PartitionTable:
    """Find the volumes of a disk: GPT, MBR, a bare volume, or (when all fails) NTFS boot sectors by scan."""
    sector0 = _read(read_at, 0, SECTOR)
    if len(sector0) < SECTOR:
        return PartitionTable("none", warnings=[f"disk is too small to hold a volume ({disk_size} bytes)"])
    if is_ntfs_boot(sector0) or boot_oem(sector0) == BITLOCKER_OEM:
        return PartitionTable("none", [Partition(1, 0, disk_size, "none")])
    warnings: list[str] = []
    if sector0[510:512] == b"\x55\xaa":
        entries = _mbr_entries(sector0)
        if any(e[1] == GPT_PROTECTIVE for e in entries):
            table = _read_gpt(read_at, disk_size, warnings)
            if table is not None:
                table.disk_signature = sector0[440:444]
                return table
            warnings.append("protective MBR but no usable GPT header (primary or backup)")
        elif looks_like_mbr(sector0, disk_size):
            table = _read_mbr(read_at, sector0, disk_size, warnings)
            if table.partitions:
                return table
        else:
            warnings.append("sector 0 has a boot signature but no plausible partition entry (garbage MBR)")
    else:
        warnings.append("no partition table (no boot signature in sector 0)")
    if not any(e[1] == GPT_PROTECTIVE for e in _mbr_entries(sector0)):
        # a GPT disk whose protective MBR was overwritten still has its headers at LBA 1 and the end
        table = _read_gpt(read_at, disk_size, [])
        if table is not None and table.partitions:
            table.warnings[:0] = [*warnings, "a GPT was found behind the unusable MBR and used"]
            return table
    carved = carve_ntfs(read_at, disk_size)
    if carved:
        warnings.append(
            f"partition table unusable: {len(carved)} NTFS volume(s) found by their boot sectors "
            f"at offset(s) {', '.join(str(p.offset) for p in carved)}"
        )
        return PartitionTable("carved", carved, warnings=warnings)
    warnings.append("no NTFS boot sector found at the usual partition offsets either")
    return PartitionTable("none", [], warnings=warnings)


def _read_mbr(read_at: ReadAt, sector0: bytes, disk_size: int, warnings: list[str]) -> PartitionTable:
    table = PartitionTable("mbr", disk_signature=sector0[440:444])
    table.warnings = warnings
    extended: list[tuple[int, int]] = []
    for i, (_status, ptype, lba, count) in enumerate(_mbr_entries(sector0), start=1):
        if ptype in EXTENDED_TYPES:
            extended.append((lba, count))
            continue
        part = _checked(Partition(i, lba * SECTOR, count * SECTOR, "mbr", f"0x{ptype:02x}"), disk_size, warnings)
        if part:
            table.partitions.append(part)
    index = 5
    for ext_lba, ext_count in extended[:1]:  # one extended partition per disk
        ebr_lba = ext_lba
        seen: set[int] = set()
        while ebr_lba and index < 5 + MAX_LOGICAL:
            if ebr_lba in seen:
                warnings.append(f"EBR chain loops back to sector {ebr_lba}; stopped")
                break
            seen.add(ebr_lba)
            ebr = _read(read_at, ebr_lba * SECTOR, SECTOR)
            if len(ebr) < SECTOR or ebr[510:512] != b"\x55\xaa":
                warnings.append(f"EBR at sector {ebr_lba} is unreadable or has no boot signature; chain stopped")
                break
            slots = [struct.unpack_from("<B3xB3xII", ebr, 446 + 16 * k) for k in range(2)]
            _s, ptype, rel, count = slots[0]
            if ptype and count:
                part = _checked(
                    Partition(index, (ebr_lba + rel) * SECTOR, count * SECTOR, "mbr", f"0x{ptype:02x}"),
                    disk_size,
                    warnings,
                )
                if part:
                    table.partitions.append(part)
                index += 1
            _s, ntype, nrel, _n = slots[1]
            ebr_lba = ext_lba + nrel if ntype in EXTENDED_TYPES else 0  # rel 0 is the first EBR: a loop
            if ebr_lba and ebr_lba >= ext_lba + ext_count:
                warnings.append(f"EBR chain points outside its extended partition (sector {ebr_lba}); stopped")
                break
        else:
            if ebr_lba:
                warnings.append(f"more than {MAX_LOGICAL} logical partitions; the rest were not read")
    return table


def _checked(part: Partition, disk_size: int, warnings: list[str]) -> Partition | None:
    if disk_size and part.offset >= disk_size:
        warnings.append(f"partition {part.index} starts at {part.offset}, beyond the end of the disk; skipped")
        return None
    if disk_size and part.offset + part.size > disk_size:
        warnings.append(
            f"partition {part.index} ends beyond the disk ({part.offset + part.size} > {disk_size} bytes); "
            "truncated image? reading what is there"
        )
        part.size = disk_size - part.offset
    return part


def _gpt_header(raw: bytes) -> tuple[dict[str, int | bytes], str] | None:
    """Parse and check a GPT header; returns (fields, problem) with problem '' when sound."""
    if len(raw) < 92 or raw[:8] != b"EFI PART":
        return None
    (hsize,) = struct.unpack_from("<I", raw, 12)
    (crc,) = struct.unpack_from("<I", raw, 16)
    problem = ""
    if not 92 <= hsize <= len(raw):
        problem = f"header size {hsize} is invalid"
    else:
        check = bytearray(raw[:hsize])
        check[16:20] = b"\0\0\0\0"
        if zlib.crc32(check) & 0xFFFFFFFF != crc:
            problem = "header CRC mismatch"
    current, backup, first, last = struct.unpack_from("<QQQQ", raw, 24)
    entries_lba, count, esize, ecrc = struct.unpack_from("<QIII", raw, 72)
    return (
        {
            "current": current,
            "backup": backup,
            "first": first,
            "last": last,
            "disk_guid": raw[56:72],
            "entries_lba": entries_lba,
            "count": count,
            "esize": esize,
            "ecrc": ecrc,
        },
        problem,
    )


def _gpt_entries(read_at: ReadAt, hdr: dict[str, int | bytes], sector: int) -> tuple[bytes, str]:
    count, esize = int(hdr["count"]), int(hdr["esize"])
    if esize < 128 or esize % 8 or esize > 4096:
        return b"", f"entry size {esize} is invalid"
    if count > MAX_GPT_ENTRIES:
        return b"", f"{count} entries declared (more than {MAX_GPT_ENTRIES})"
    raw = _read(read_at, int(hdr["entries_lba"]) * sector, count * esize)
    if len(raw) < count * esize:
        return b"", "entry array unreadable"
    if zlib.crc32(raw) & 0xFFFFFFFF != hdr["ecrc"]:
        return raw, "entry array CRC mismatch"
    return raw, ""


def _read_gpt(read_at: ReadAt, disk_size: int, warnings: list[str]) -> PartitionTable | None:
    for sector in (SECTOR, 4096):  # 512-byte sectors, or 4Kn disks
        primary = _gpt_header(_read(read_at, sector, sector))
        if primary is not None:
            break
    else:
        sector = SECTOR
    candidates: list[tuple[str, tuple[dict[str, int | bytes], str] | None]] = [("primary", primary)]
    backup_lbas = []
    if primary is not None and 0 < int(primary[0]["backup"]) * sector < disk_size:
        backup_lbas.append(int(primary[0]["backup"]))
    if disk_size >= 2 * sector:
        backup_lbas.append(disk_size // sector - 1)
    for lba in dict.fromkeys(backup_lbas):
        candidates.append(("backup", _gpt_header(_read(read_at, lba * sector, sector))))
    for which, parsed in candidates:
        if parsed is None:
            if which == "primary":
                warnings.append("primary GPT header missing (no 'EFI PART' signature)")
            continue
        hdr, problem = parsed
        entries = b""
        if not problem:
            entries, problem = _gpt_entries(read_at, hdr, sector)
        if problem:
            warnings.append(f"{which} GPT header unusable: {problem}")
            continue
        if which == "backup":
            warnings.append("using the backup GPT header at the end of the disk")
        table = PartitionTable("gpt", disk_guid=str(uuid.UUID(bytes_le=bytes(hdr["disk_guid"]))))
        table.warnings = warnings
        esize = int(hdr["esize"])
        for i in range(int(hdr["count"])):
            e = entries[i * esize : (i + 1) * esize]
            type_guid = e[:16]
            if type_guid == bytes(16):
                continue
            first, last = struct.unpack_from("<QQ", e, 32)
            if last < first:
                warnings.append(f"GPT entry {i + 1}: last LBA {last} before first {first}; skipped")
                continue
            name = e[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
            part = Partition(
                i + 1,
                first * sector,
                (last - first + 1) * sector,
                "gpt",
                str(uuid.UUID(bytes_le=type_guid)),
                e[16:32],
                name,
            )
            checked = _checked(part, disk_size, warnings)
            if checked:
                table.partitions.append(checked)
        return table
    return None


def carve_ntfs(read_at: ReadAt, disk_size: int) -> list[Partition]:
    """NTFS volumes found by boot sector at offset 0, sector 63, and 1 MiB boundaries (bounded probes)."""
    found: list[Partition] = []
    offsets = [0, 63 * SECTOR, 128 * SECTOR] + [k << 20 for k in range(1, CARVE_LIMIT)]
    probes = 0
    i = 0
    end_of_last = 0
    while i < len(offsets) and probes < CARVE_LIMIT:
        off = offsets[i]
        i += 1
        if off < end_of_last or off + SECTOR > disk_size:
            continue
        probes += 1
        boot = _read(read_at, off, SECTOR)
        if is_ntfs_boot(boot):
            size = min(ntfs_volume_size(boot), disk_size - off)
            found.append(Partition(len(found) + 1, off, size, "carved", "ntfs"))
            end_of_last = off + size
            # keep probing after this volume: the next one starts at a MiB boundary behind it
            nxt = ((end_of_last + (1 << 20) - 1) >> 20) << 20
            offsets[i:] = sorted({o for o in offsets[i:] if o >= nxt} | {nxt + (k << 20) for k in range(64)})
    return found
