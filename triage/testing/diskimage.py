"""Builders of acquired disk images for the tests and benchmarks: NTFS volumes, partitioned disks, containers.

Everything is made here by driving Debian's own tools, never with images downloaded from elsewhere:

- :func:`build_ntfs_volume` formats a raw NTFS volume with ``mkntfs``, mounts it with ``ntfs-3g`` (FUSE) in a
  temporary folder, copies a folder tree in (alternate data streams through ``streams_interface=windows``) and
  then sets the NTFS times by patching the MFT records and directory indexes of the unmounted volume.
- :func:`build_disk` lays volumes out on a whole disk behind an MBR or a GPT (written here, CRCs included).
- :func:`to_format` turns a raw disk into split raw, E01 (``ewfacquire``), VHD, VHDX or VMDK (``qemu-img``).
- bad-image makers: truncated segments, a broken primary GPT header, a garbage MBR, a smashed MFT entry, a
  corrupt EWF chunk.

NTFS times, as checked with ntfsinfo on this ntfs-3g: ``os.utime`` on the mount sets only the $STANDARD_INFORMATION
modification and access times ($FILE_NAME keeps the wall-clock time of the copy, so every file would look
timestomped); the ``system.ntfs_times`` attribute also sets $SI creation, but ntfs-3g then copies the same values
into $FILE_NAME, so no stomp can be shown; the MFT-changed time follows the wall clock either way. So times are
set after the unmount instead, in the raw volume: for every file and folder of the tree the $STANDARD_INFORMATION times
(MFT record) and the $FILE_NAME times (MFT record and the parent folder's index entry) become what
``times`` asks, by default all equal to the file's modification time in the tree. A timestomped web shell is
then ``TimeSpec(si=NtfsTimes.all(old), fn=NtfsTimes.all(real))``.

Command line, for analysts and the benchmark::

    python -m triage.testing.diskimage TREE OUT.E01 --format e01 [--data-tree D] [--scheme gpt|mbr]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Literal

from triage.formats.ewf import EVF1, table_chunks
from triage.formats.times import EPOCH_DELTA_SECONDS, dt_to_filetime

SECTOR = 512
MIB = 1 << 20
FORMATS = ("raw", "split-raw", "e01", "vhd", "vhdx", "vmdk")
BASIC_DATA = uuid.UUID("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")  # Microsoft basic data partition
NTFS_EPOCH_OFFSET = EPOCH_DELTA_SECONDS  # seconds from 1601-01-01 to 1970-01-01
_TOOLS = {"mkntfs": "ntfs-3g", "ntfs-3g": "ntfs-3g", "fusermount": "fuse", "qemu-img": "qemu-utils"}

Format = Literal["raw", "split-raw", "e01", "vhd", "vhdx", "vmdk"]


# -- tools ------------------------------------------------------------------------------------------------
def _run(cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


@functools.cache
def tools_missing() -> str | None:
    """Why the image builders cannot run here (a tool or a usable FUSE is missing), or None when all work.

    The FUSE check mounts a tiny volume once per process: ``/dev/fuse`` existing is not proof that mounting
    is allowed (containers without CAP_SYS_ADMIN, no ``allow_other``).
    """
    for tool, package in {**_TOOLS, "ewfacquire": "ewf-tools"}.items():
        if shutil.which(tool) is None:
            return f"{tool} not found (Debian package {package})"
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing: ntfs-3g cannot mount"
    try:
        with tempfile.TemporaryDirectory(prefix="triage-fuse-") as tmp:
            vol = Path(tmp) / "probe.ntfs"
            _mkntfs(vol, 2 * MIB, label="PROBE")
            with _mounted(vol) as mnt:
                (mnt / "probe.txt").write_bytes(b"ok")
            if _read_file(vol, "probe.txt") != b"ok":
                return "ntfs-3g mounted but the written file did not reach the volume"
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        return f"cannot mount an NTFS volume with ntfs-3g here: {exc}"
    return None


def _mkntfs(out: Path, size: int, *, label: str = "", partition_start: int = 2048) -> None:
    with open(out, "wb") as fh:
        fh.truncate(size)
    cmd = ["mkntfs", "-F", "-Q", "-q", "-s", str(SECTOR), "-p", str(partition_start), "-H", "255", "-S", "63"]
    if label:
        cmd += ["-L", label]
    _run([*cmd, str(out)])


@contextlib.contextmanager
def _mounted(volume: Path) -> Iterator[Path]:
    """ntfs-3g mount of ``volume`` in a temporary folder; unmounted (and the daemon gone) on the way out."""
    mnt = Path(tempfile.mkdtemp(prefix="triage-ntfs-"))
    # no_detach: the process we start is the daemon, so waiting for it proves every write reached the file
    proc = subprocess.Popen(
        ["ntfs-3g", "-o", "streams_interface=windows,no_detach", str(volume), str(mnt)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while not os.path.ismount(mnt):
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"ntfs-3g exited ({proc.returncode}): {err.strip()}")
            if time.monotonic() > deadline:
                raise RuntimeError("ntfs-3g did not mount within 20 s")
            time.sleep(0.01)
        yield mnt
    finally:
        try:
            if os.path.ismount(mnt):
                for _attempt in range(50):
                    if subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True).returncode == 0:
                        break
                    time.sleep(0.1)  # busy: a handle is still closing
                else:
                    subprocess.run(["fusermount", "-u", "-z", str(mnt)], capture_output=True)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        finally:
            if proc.stderr:
                proc.stderr.close()
            with contextlib.suppress(OSError):
                mnt.rmdir()


def _read_file(volume: Path, rel: str, offset: int = 0) -> bytes:
    import pyfsntfs

    with open(volume, "rb") as fh:
        fh.seek(offset)
        vol = pyfsntfs.volume()
        vol.open_file_object(_OffsetReader(fh, offset) if offset else fh)
        try:
            entry = vol.get_file_entry_by_path("\\" + rel.replace("/", "\\"))
            return entry.read() if entry is not None else b""
        finally:
            vol.close()


class _OffsetReader:
    """A read-only file object over ``fh`` starting at ``offset`` (a partition inside a disk)."""

    def __init__(self, fh: BinaryIO, offset: int, size: int | None = None) -> None:
        self.fh, self.offset = fh, offset
        self.size = size if size is not None else os.fstat(fh.fileno()).st_size - offset
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        n = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        self.fh.seek(self.offset + self.pos)
        data = self.fh.read(max(n, 0))
        self.pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else (self.pos + pos if whence == 1 else self.size + pos)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def get_size(self) -> int:
        return self.size


# -- NTFS times ---------------------------------------------------------------------------------------
def to_filetime(ts: datetime) -> int:
    """A datetime as an NTFS FILETIME (100 ns ticks since 1601-01-01 UTC)."""
    if ts.tzinfo is None:
        raise ValueError("NTFS times must be timezone-aware (UTC)")
    return dt_to_filetime(ts)


@dataclass(frozen=True)
class NtfsTimes:
    """The four NTFS times of one attribute, in its on-disk order."""

    created: datetime
    modified: datetime
    changed: datetime  # MFT entry changed
    accessed: datetime

    @classmethod
    def all(cls, ts: datetime) -> NtfsTimes:
        return cls(ts, ts, ts, ts)

    def pack(self) -> bytes:
        return struct.pack("<4Q", *(to_filetime(t) for t in (self.created, self.modified, self.changed, self.accessed)))


@dataclass(frozen=True)
class TimeSpec:
    """$STANDARD_INFORMATION and $FILE_NAME times for one file; ``fn`` None means the same as ``si``."""

    si: NtfsTimes
    fn: NtfsTimes | None = None


def _fixup(rec: bytearray, where: str) -> None:
    """Undo the update-sequence protection of a FILE/INDX record in place (sector ends hold the USN)."""
    usa_off, usa_count = struct.unpack_from("<HH", rec, 4)
    usn = rec[usa_off : usa_off + 2]
    for i in range(1, usa_count):
        end = i * SECTOR
        if rec[end - 2 : end] != usn:
            raise ValueError(f"{where}: update sequence mismatch in sector {i - 1}")
        rec[end - 2 : end] = rec[usa_off + 2 * i : usa_off + 2 * i + 2]


def _protect(rec: bytearray) -> None:
    """Redo the update-sequence protection after a change (same USN)."""
    usa_off, usa_count = struct.unpack_from("<HH", rec, 4)
    usn = rec[usa_off : usa_off + 2]
    for i in range(1, usa_count):
        end = i * SECTOR
        rec[usa_off + 2 * i : usa_off + 2 * i + 2] = rec[end - 2 : end]
        rec[end - 2 : end] = usn


def _attributes(rec: bytearray) -> Iterator[tuple[int, int, int]]:
    """(type, value offset, value length) of the resident attributes of a fixed-up MFT record."""
    off = struct.unpack_from("<H", rec, 0x14)[0]
    while off + 8 <= len(rec):
        atype, alen = struct.unpack_from("<II", rec, off)
        if atype == 0xFFFFFFFF or alen == 0:
            return
        if rec[off + 8] == 0:  # resident
            vlen, voff = struct.unpack_from("<IH", rec, off + 0x10)
            yield atype, off + voff, vlen
        off += alen


def _index_entries(buf: bytearray, node_header: int) -> Iterator[tuple[int, int]]:
    """(entry offset, key offset) of the $I30 entries of one index node (header offset given)."""
    first, total = struct.unpack_from("<II", buf, node_header)
    off, end = node_header + first, node_header + total
    while off + 16 <= min(end, len(buf)):
        elen, klen, flags = struct.unpack_from("<HHI", buf, off + 8)
        if elen == 0:
            return
        if klen >= 0x42:
            yield off, off + 16
        if flags & 2:  # last entry
            return
        off += elen


@dataclass
class _NtfsGeometry:
    cluster: int
    record: int
    index_record: int
    mft_extents: list[tuple[int, int]]  # (volume offset, size)


def _geometry(fh: BinaryIO, base: int) -> _NtfsGeometry:
    import pyfsntfs

    vol = pyfsntfs.volume()
    vol.open_file_object(_OffsetReader(fh, base))
    try:
        mft = vol.get_file_entry(0)
        extents = [(off, size) for off, size, _flags in (mft.get_extent(i) for i in range(mft.number_of_extents))]
        return _NtfsGeometry(vol.cluster_block_size, vol.mft_entry_size, vol.index_entry_size, extents)
    finally:
        vol.close()


def _mft_record_offset(geo: _NtfsGeometry, index: int) -> int:
    pos = index * geo.record
    for off, size in geo.mft_extents:
        if pos < size:
            return off + pos
        pos -= size
    raise ValueError(f"MFT entry {index} is beyond the MFT")


def _file_references(fh: BinaryIO, base: int, rels: list[str]) -> dict[str, int]:
    """Path (``/``-separated, from the volume root) -> 64-bit file reference."""
    import pyfsntfs

    vol = pyfsntfs.volume()
    vol.open_file_object(_OffsetReader(fh, base))
    try:
        out = {}
        for rel in rels:
            entry = vol.get_file_entry_by_path("\\" + rel.replace("/", "\\"))
            if entry is None:
                raise FileNotFoundError(f"{rel} is not on the volume")
            out[rel] = entry.file_reference
        return out
    finally:
        vol.close()


def set_ntfs_times(volume: Path, times: dict[str, TimeSpec], *, offset: int = 0) -> int:
    """Patch SI and FN times of files on an unmounted NTFS volume (or the partition at ``offset`` of a disk).

    $STANDARD_INFORMATION and $FILE_NAME in each file's MFT record and the $FILE_NAME copy in its parent's
    index ($INDEX_ROOT in the parent's record or an INDX record of its $INDEX_ALLOCATION). Returns how many
    attribute copies were changed.
    """
    with open(volume, "r+b") as fh:
        geo = _geometry(fh, offset)
        refs = _file_references(fh, offset, list(times))
        by_index = {ref & 0xFFFFFFFFFFFF: (ref, times[rel]) for rel, ref in refs.items()}
        by_ref = {ref: spec for ref, spec in by_index.values()}
        changed = 0

        def patch_index(buf: bytearray, node_header: int) -> int:
            n = 0
            for entry, key in _index_entries(buf, node_header):
                spec = by_ref.get(struct.unpack_from("<Q", buf, entry)[0])
                if spec is not None:
                    buf[key + 8 : key + 40] = (spec.fn or spec.si).pack()
                    n += 1
            return n

        # MFT records: the files' own SI/FN, and resident index roots of their folders
        total = sum(size for _, size in geo.mft_extents) // geo.record
        for index in range(total):
            pos = offset + _mft_record_offset(geo, index)
            fh.seek(pos)
            rec = bytearray(fh.read(geo.record))
            if rec[:4] != b"FILE":
                continue
            _fixup(rec, f"MFT entry {index}")
            n = 0
            mine = by_index.get(index)
            for atype, voff, vlen in _attributes(rec):
                if mine is not None and atype == 0x10 and vlen >= 32:
                    rec[voff : voff + 32] = mine[1].si.pack()
                    n += 1
                elif mine is not None and atype == 0x30 and vlen >= 0x42:
                    rec[voff + 8 : voff + 40] = (mine[1].fn or mine[1].si).pack()
                    n += 1
                elif atype == 0x90 and vlen >= 0x20:
                    n += patch_index(rec, voff + 0x10)
            if n:
                _protect(rec)
                fh.seek(pos)
                fh.write(rec)
                changed += n
        # INDX records of larger folders: cluster aligned, found by their signature
        end = fh.seek(0, os.SEEK_END)
        step = min(geo.cluster, geo.index_record)
        pos = offset
        fh.seek(pos)
        while pos < end:
            head = fh.read(4)
            if head == b"INDX":
                fh.seek(pos)
                rec = bytearray(fh.read(geo.index_record))
                try:
                    _fixup(rec, f"INDX record at {pos}")
                except ValueError:
                    rec = bytearray()
                n = patch_index(rec, 0x18) if rec else 0
                if n:
                    _protect(rec)
                    fh.seek(pos)
                    fh.write(rec)
                    changed += n
            pos += step
            fh.seek(pos)
    return changed


# -- NTFS volumes ---------------------------------------------------------------------------------------
def _tree_entries(tree: Path) -> tuple[list[Path], list[Path]]:
    dirs, files = [], []
    for root, dnames, fnames in os.walk(tree):
        dnames.sort()
        for d in dnames:
            dirs.append(Path(root, d))
        for f in sorted(fnames):
            files.append(Path(root, f))
    return dirs, files


def volume_size_for(tree: Path, extra: int = 0) -> int:
    """A volume size that holds ``tree`` with headroom: data in 4 KiB clusters, 2 KiB of MFT/index per entry."""
    dirs, files = _tree_entries(tree)
    data = sum((p.stat().st_size + 4095) // 4096 * 4096 for p in files if not p.is_symlink())
    need = int((data + extra) * 1.15) + (len(dirs) + len(files)) * 2048 + 4 * MIB
    return max(8 * MIB, (need + MIB - 1) // MIB * MIB)


def build_ntfs_volume(
    tree: Path,
    out: Path,
    *,
    size: int | None = None,
    label: str = "",
    streams: dict[str, dict[str, bytes]] | None = None,
    times: dict[str, TimeSpec] | None = None,
    partition_start: int = 2048,
) -> Path:
    """A raw NTFS volume at ``out`` holding the folder ``tree`` (regular files and folders; links skipped).

    ``streams`` maps a file's relative path (``/``-separated) to alternate data streams to add
    ({"Zone.Identifier": b"..."}). Every file and folder gets all its SI and FN times set to its modification
    time in the tree; ``times`` overrides that per relative path (see :class:`TimeSpec`).
    ``partition_start`` (sectors) goes into the boot sector's hidden-sectors field; :func:`build_disk`
    rewrites it for the real offset.
    """
    tree, out = Path(tree), Path(out)
    streams = streams or {}
    extra = sum(len(d) for s in streams.values() for d in s.values())
    size = size or volume_size_for(tree, extra)
    out.parent.mkdir(parents=True, exist_ok=True)
    _mkntfs(out, size, label=label, partition_start=partition_start)
    dirs, files = _tree_entries(tree)
    stamps: dict[str, TimeSpec] = {}
    with _mounted(out) as mnt:
        for d in dirs:
            (mnt / d.relative_to(tree)).mkdir(exist_ok=True)
        for f in files:
            if f.is_symlink() or not f.is_file():
                continue
            shutil.copyfile(f, mnt / f.relative_to(tree))
        for rel, named in streams.items():
            target = mnt / rel
            if not target.exists():
                raise FileNotFoundError(f"stream owner {rel} is not in the tree")
            for name, data in named.items():
                with open(f"{target}:{name}", "wb") as fh:  # streams_interface=windows
                    fh.write(data)
    for p in [*dirs, *files]:
        if p.is_symlink() or not (p.is_dir() or p.is_file()):
            continue
        rel = p.relative_to(tree).as_posix()
        stamps[rel] = TimeSpec(NtfsTimes.all(datetime.fromtimestamp(p.stat().st_mtime, UTC)))
    stamps.update(times or {})
    set_ntfs_times(out, stamps)
    return out


# -- partitioned disks --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    """One partition of a built disk."""

    number: int  # 1-based, as Windows numbers them
    offset: int  # bytes from the start of the disk
    size: int  # bytes
    guid: uuid.UUID | None = None  # GPT unique partition GUID
    type_guid: uuid.UUID | None = None
    mbr_type: int | None = None
    name: str = ""

    @property
    def first_lba(self) -> int:
        return self.offset // SECTOR


@dataclass
class DiskLayout:
    """What :func:`build_disk` wrote: scheme, identifiers and partitions (for ``MountedDevices`` values)."""

    path: Path
    scheme: Literal["gpt", "mbr"]
    size: int
    partitions: list[Partition] = field(default_factory=list)
    disk_signature: int | None = None  # MBR
    disk_guid: uuid.UUID | None = None  # GPT

    def mounted_devices_value(self, number: int) -> bytes:
        """The SYSTEM hive's ``MountedDevices\\DosDevices\\X:`` value naming partition ``number``."""
        part = self.partitions[number - 1]
        if self.scheme == "gpt":
            assert part.guid is not None
            return b"DMIO:ID:" + part.guid.bytes_le
        assert self.disk_signature is not None
        return struct.pack("<IQ", self.disk_signature, part.offset)


def _chs(lba: int) -> bytes:
    # CHS of an LBA on a 255-head, 63-sector geometry; saturated past cylinder 1023 as partitioners do
    cyl, rem = divmod(lba, 255 * 63)
    if cyl > 1023:
        return b"\xfe\xff\xff"
    head, sec = divmod(rem, 63)
    return bytes([head, ((sec + 1) & 0x3F) | ((cyl >> 2) & 0xC0), cyl & 0xFF])


def _mbr_entry(boot: bool, ptype: int, lba: int, sectors: int) -> bytes:
    return (
        bytes([0x80 if boot else 0])
        + _chs(lba)
        + bytes([ptype])
        + _chs(lba + sectors - 1)
        + struct.pack("<II", lba, min(sectors, 0xFFFFFFFF))
    )


def _set_hidden_sectors(fh: BinaryIO, offset: int, size: int) -> None:
    """Point an NTFS boot sector (and its backup in the volume's last sector) at its partition offset."""
    for pos in (offset, offset + size - SECTOR):
        fh.seek(pos)
        boot = fh.read(SECTOR)
        if boot[3:11] == b"NTFS    ":
            fh.seek(pos + 0x1C)
            fh.write(struct.pack("<I", offset // SECTOR))


def build_disk(
    volumes: list[Path],
    out: Path,
    *,
    scheme: Literal["gpt", "mbr"] = "gpt",
    disk_signature: int = 0x5EED1E55,
    disk_guid: uuid.UUID | None = None,
    partition_guids: list[uuid.UUID] | None = None,
    names: list[str] | None = None,
    gap: int = 0,
) -> DiskLayout:
    """A whole-disk image at ``out``: a partition table and each raw volume at a 1 MiB-aligned offset.

    GPT: protective MBR, primary header and 128 entries, backup entries and header at the end, CRC32s as
    the UEFI specification defines them. MBR: up to four primary partitions of type 0x07, the first active.
    ``gap`` leaves extra unallocated MiBs between partitions. NTFS hidden-sector fields are set to the offsets.
    """
    if scheme not in ("gpt", "mbr"):
        raise ValueError("scheme must be gpt or mbr")
    if scheme == "mbr" and len(volumes) > 4:
        raise ValueError("an MBR holds four primary partitions")
    rng = random.Random(disk_signature)  # the same signature gives the same GUIDs: reproducible layouts
    disk_guid = disk_guid or uuid.UUID(int=rng.getrandbits(128), version=4)
    partition_guids = partition_guids or [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in volumes]
    names = names or [f"Basic data partition {i + 1}" for i in range(len(volumes))]
    parts: list[Partition] = []
    pos = MIB
    for i, vol in enumerate(volumes):
        vsize = (vol.stat().st_size + SECTOR - 1) // SECTOR * SECTOR
        if scheme == "gpt":
            parts.append(Partition(i + 1, pos, vsize, partition_guids[i], BASIC_DATA, None, names[i]))
        else:
            parts.append(Partition(i + 1, pos, vsize, None, None, 0x07, names[i]))
        pos = (pos + vsize + MIB - 1) // MIB * MIB + gap * MIB
    total = pos + MIB  # room for the backup GPT (33 sectors) and a round size
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w+b") as fh:
        fh.truncate(total)
        for part, vol in zip(parts, volumes, strict=True):
            fh.seek(part.offset)
            with open(vol, "rb") as src:
                shutil.copyfileobj(src, fh, 4 * MIB)
            _set_hidden_sectors(fh, part.offset, part.size)
        mbr = bytearray(SECTOR)
        struct.pack_into("<I", mbr, 0x1B8, disk_signature)
        if scheme == "mbr":
            for i, part in enumerate(parts):
                mbr[0x1BE + 16 * i : 0x1BE + 16 * (i + 1)] = _mbr_entry(
                    i == 0, 0x07, part.first_lba, part.size // SECTOR
                )
        else:
            mbr[0x1BE:0x1CE] = _mbr_entry(False, 0xEE, 1, min(total // SECTOR - 1, 0xFFFFFFFF))
        mbr[510:512] = b"\x55\xaa"
        fh.seek(0)
        fh.write(mbr)
        if scheme == "gpt":
            _write_gpt(fh, total // SECTOR, disk_guid, parts)
    return DiskLayout(
        out,
        scheme,
        total,
        parts,
        disk_signature=disk_signature if scheme == "mbr" else None,
        disk_guid=disk_guid if scheme == "gpt" else None,
    )


def _gpt_header(
    current: int, backup: int, first: int, last: int, disk_guid: uuid.UUID, entries_lba: int, entries_crc: int
) -> bytes:
    head = bytearray(
        struct.pack(
            "<8sIIIIQQQQ16sQIII",
            b"EFI PART",
            0x00010000,
            92,
            0,
            0,
            current,
            backup,
            first,
            last,
            disk_guid.bytes_le,
            entries_lba,
            128,
            128,
            entries_crc,
        )
    )
    struct.pack_into("<I", head, 16, zlib.crc32(head))
    return bytes(head) + bytes(SECTOR - len(head))


def _write_gpt(fh: BinaryIO, sectors: int, disk_guid: uuid.UUID, parts: list[Partition]) -> None:
    entries = bytearray(128 * 128)
    for i, part in enumerate(parts):
        assert part.guid is not None and part.type_guid is not None
        name = part.name.encode("utf-16-le")[:72]
        struct.pack_into(
            "<16s16sQQQ72s",
            entries,
            128 * i,
            part.type_guid.bytes_le,
            part.guid.bytes_le,
            part.first_lba,
            part.first_lba + part.size // SECTOR - 1,
            0,
            name,
        )
    crc = zlib.crc32(entries)
    last_lba = sectors - 1
    first_usable, last_usable = 34, sectors - 34
    fh.seek(SECTOR)
    fh.write(_gpt_header(1, last_lba, first_usable, last_usable, disk_guid, 2, crc))
    fh.write(entries)
    fh.seek((last_lba - 32) * SECTOR)
    fh.write(entries)
    fh.write(_gpt_header(last_lba, 1, first_usable, last_usable, disk_guid, last_lba - 32, crc))


# -- containers ---------------------------------------------------------------------------------------
def to_format(
    raw: Path,
    fmt: Format,
    out_dir: Path,
    *,
    name: str | None = None,
    segment_size: int | None = None,
    subformat: str | None = None,
    compression: str = "deflate:fast",
    case_number: str = "ED2102-TEST",
    examiner: str = "triage tests",
) -> list[Path]:
    """Write the raw disk ``raw`` as ``fmt`` under ``out_dir``; returns the files in segment order.

    ``raw`` copies to ``NAME.dd``; ``split-raw`` cuts ``NAME.001, .002 ...`` of ``segment_size`` bytes
    (default: a third of the disk, so three segments); ``e01`` runs ewfacquire unattended with case
    metadata and an extra SHA-1, ``segment_size`` default 1 MiB (ewfacquire's minimum); ``vhd`` (qemu's
    ``vpc``, subformat ``dynamic`` or ``fixed``), ``vhdx`` and ``vmdk`` (``monolithicSparse``,
    ``streamOptimized``, ``twoGbMaxExtentSparse``, ``monolithicFlat`` ...) through qemu-img.
    """
    raw, out_dir = Path(raw), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or raw.stem
    size = raw.stat().st_size
    if fmt == "raw":
        dest = out_dir / f"{stem}.dd"
        shutil.copyfile(raw, dest)
        return [dest]
    if fmt == "split-raw":
        seg = segment_size or max(SECTOR, -(-size // 3 // SECTOR) * SECTOR)
        paths = []
        with open(raw, "rb") as src:
            for i in range(1, -(-size // seg) + 1):
                dest = out_dir / f"{stem}.{i:03d}"
                with open(dest, "wb") as fh:
                    left = seg
                    while left and (chunk := src.read(min(left, 4 * MIB))):
                        fh.write(chunk)
                        left -= len(chunk)
                paths.append(dest)
        return paths
    if fmt == "e01":
        target = out_dir / stem
        cmd = [
            "ewfacquire", "-u", "-q",
            "-t", str(target),
            "-f", "encase6",
            "-c", compression,
            "-d", "sha1",
            "-S", str(segment_size or MIB),
            "-b", "64",
            "-C", case_number,
            "-D", f"triage test disk {stem}",
            "-E", "1",
            "-e", examiner,
            "-N", "built by triage.testing.diskimage",
            "-m", "fixed",
            "-M", "physical",
            str(raw),
        ]  # fmt: skip
        _run(cmd, timeout=600)
        paths = sorted(out_dir.glob(f"{stem}.E[0-9A-Z][0-9A-Z]"), key=_ewf_order)
        if not paths:
            raise RuntimeError(f"ewfacquire wrote no segments for {raw}")
        return paths
    qemu = {"vhd": ("vpc", "dynamic"), "vhdx": ("vhdx", None), "vmdk": ("vmdk", None)}
    if fmt not in qemu:
        raise ValueError(f"unknown image format {fmt!r}; use one of {', '.join(FORMATS)}")
    driver, default_sub = qemu[fmt]
    options = []
    if subformat or default_sub:
        options.append(f"subformat={subformat or default_sub}")
    if driver == "vpc":
        options.append("force_size=on")  # exact size, not rounded to a CHS geometry
    dest = out_dir / f"{stem}.{fmt}"
    before = set(out_dir.iterdir())
    cmd = ["qemu-img", "convert", "-q", "-f", "raw", "-O", driver]
    if options:
        cmd += ["-o", ",".join(options)]
    _run([*cmd, str(raw), str(dest)], timeout=600)
    extra = sorted(p for p in set(out_dir.iterdir()) - before if p != dest)  # extents of split/flat VMDKs
    return [dest, *extra]


def _ewf_order(path: Path) -> int:
    # E01..E99, then EAA..EZZ, as EnCase names segments past 99
    ext = path.suffix[2:].upper()
    if ext.isdigit():
        return int(ext)
    return 100 + (ord(ext[0]) - 65) * 26 + (ord(ext[1]) - 65)


# -- bad images ---------------------------------------------------------------------------------------
def truncate_segment(path: Path, keep_bytes: int) -> Path:
    """Cut a segment file (or any file) to its first ``keep_bytes`` bytes."""
    os.truncate(path, keep_bytes)
    return path


def corrupt_gpt_header(disk: Path) -> None:
    """Break the primary GPT header's CRC (one byte of its disk GUID changed); the backup stays intact."""
    with open(disk, "r+b") as fh:
        fh.seek(SECTOR)
        head = bytearray(fh.read(92))
        if head[:8] != b"EFI PART":
            raise ValueError(f"{disk}: no GPT header at LBA 1")
        head[56] ^= 0xFF  # inside the disk GUID: CRC no longer matches
        fh.seek(SECTOR)
        fh.write(head)


def garbage_mbr(disk: Path, *, seed: int = 8, keep_signature: bool = False) -> None:
    """Overwrite sector 0 with pseudo-random bytes (the 0x55AA signature too, unless ``keep_signature``)."""
    junk = bytearray(random.Random(seed).randbytes(SECTOR))
    if keep_signature:
        junk[510:512] = b"\x55\xaa"
    elif junk[510:512] == b"\x55\xaa":
        junk[511] = 0
    with open(disk, "r+b") as fh:
        fh.write(junk)


def ntfs_partitions(image: Path) -> list[tuple[int, int]]:
    """(offset, size) of the NTFS volumes in a raw volume or a raw disk with an MBR or a GPT."""
    with open(image, "rb") as fh:
        first = fh.read(SECTOR)
        size = fh.seek(0, os.SEEK_END)
        if first[3:11] == b"NTFS    ":
            return [(0, size)]
        found: list[tuple[int, int]] = []
        fh.seek(SECTOR)
        gpt = fh.read(SECTOR)
        if gpt[:8] == b"EFI PART":
            entries_lba, count, esize = struct.unpack_from("<QII", gpt, 72)
            fh.seek(entries_lba * SECTOR)
            table = fh.read(count * esize)
            spans = []
            for i in range(count):
                lo, hi = struct.unpack_from("<QQ", table, i * esize + 32)
                if any(table[i * esize : i * esize + 16]):
                    spans.append((lo * SECTOR, (hi - lo + 1) * SECTOR))
        else:
            spans = []
            for i in range(4):
                ptype = first[0x1BE + 16 * i + 4]
                lba, n = struct.unpack_from("<II", first, 0x1BE + 16 * i + 8)
                if ptype and n:
                    spans.append((lba * SECTOR, n * SECTOR))
        for off, length in spans:
            fh.seek(off)
            if fh.read(SECTOR)[3:11] == b"NTFS    ":
                found.append((off, length))
        return found


def mft_entry_location(image: Path, path_in_volume: str) -> tuple[int, int, int]:
    """(partition offset, MFT entry index, absolute byte offset of the entry) of a file in a volume/disk image.

    Searches every NTFS partition of a disk for the path; the first holding it wins.
    """
    import pyfsntfs

    rel = path_in_volume.replace("\\", "/").strip("/")
    with open(image, "rb") as fh:
        for off, size in ntfs_partitions(image):
            vol = pyfsntfs.volume()
            vol.open_file_object(_OffsetReader(fh, off, size))
            try:
                entry = vol.get_file_entry_by_path("\\" + rel.replace("/", "\\"))
                index = entry.file_reference & 0xFFFFFFFFFFFF if entry is not None else None
            finally:
                vol.close()
            if index is None:
                continue
            geo = _geometry(fh, off)
            return off, index, off + _mft_record_offset(geo, index)
    raise FileNotFoundError(f"{path_in_volume} is on no NTFS volume of {image}")


def file_data_offset(image: Path, path_in_volume: str) -> tuple[int, int]:
    """(absolute byte offset, size) of the first data run of a non-resident file in a volume or disk image."""
    import pyfsntfs

    rel = path_in_volume.replace("\\", "/").strip("/")
    with open(image, "rb") as fh:
        for off, size in ntfs_partitions(image):
            vol = pyfsntfs.volume()
            vol.open_file_object(_OffsetReader(fh, off, size))
            try:
                entry = vol.get_file_entry_by_path("\\" + rel.replace("/", "\\"))
                if entry is None:
                    continue
                if entry.number_of_extents == 0:
                    raise ValueError(f"{path_in_volume} is resident in its MFT entry: no data run")
                start, length, _flags = entry.get_extent(0)
                return off + start, length
            finally:
                vol.close()
    raise FileNotFoundError(f"{path_in_volume} is on no NTFS volume of {image}")


def corrupt_mft_entry(image: Path, path_in_volume: str, *, how: Literal["signature", "fixup"] = "signature") -> int:
    """Damage the MFT entry of one file; returns the entry's absolute byte offset in ``image``.

    ``signature`` writes ``BAAD`` over ``FILE`` (what NTFS itself marks a bad record with); ``fixup`` breaks
    the update sequence at the end of the entry's first sector, as a torn write does.
    """
    _part, _index, pos = mft_entry_location(image, path_in_volume)
    with open(image, "r+b") as fh:
        fh.seek(pos)
        rec = bytearray(fh.read(SECTOR))
        if rec[:4] != b"FILE":
            raise ValueError(f"{image}: no FILE record at {pos}")
        if how == "signature":
            rec[:4] = b"BAAD"
        else:
            rec[SECTOR - 2] ^= 0xFF
            rec[SECTOR - 1] ^= 0xFF
        fh.seek(pos)
        fh.write(rec)
    return pos


@dataclass(frozen=True)
class EwfChunk:
    """One chunk of an EWF image: where its stored data is."""

    number: int  # chunk number in the whole image
    segment: Path
    offset: int  # in the segment file
    size: int  # stored bytes (compressed, or data plus its Adler-32)
    compressed: bool


def ewf_chunks(segments: list[Path]) -> list[EwfChunk]:
    """Every chunk of an EWF image from the segments' ``table`` sections, in image order."""
    chunks: list[EwfChunk] = []
    for seg in segments:
        with open(seg, "rb") as fh:
            fd = fh.fileno()
            if os.pread(fd, 8, 0) != EVF1:
                raise ValueError("not an EWF (E01) segment file")
            table = table_chunks(fd, os.fstat(fd).st_size)
        if table is None:
            raise ValueError(f"{seg}: chunk tables not understood")
        for offset, size, compressed in table:
            chunks.append(EwfChunk(len(chunks), Path(seg), offset, size, compressed))
    return chunks


def corrupt_ewf_chunk(
    segments: Path | list[Path], *, media_offset: int | None = None, chunk_size: int = 64 * SECTOR
) -> EwfChunk:
    """Flip bytes inside one chunk's stored data so its Adler-32 (or zlib stream) no longer checks out.

    ``media_offset`` picks the chunk holding that disk offset (``segments`` then lists all segments in
    order); otherwise the largest compressed chunk of the given segment(s), i.e. one holding real data.
    Returns the damaged chunk.
    """
    segs = [segments] if isinstance(segments, Path | str) else list(segments)
    chunks = ewf_chunks([Path(s) for s in segs])
    if media_offset is not None:
        target = chunks[media_offset // chunk_size]
    else:
        compressed = [c for c in chunks if c.compressed] or chunks
        target = max(compressed, key=lambda c: c.size)
    with open(target.segment, "r+b") as fh:
        pos = target.offset + target.size // 2
        fh.seek(pos)
        data = bytearray(fh.read(8))
        fh.seek(pos)
        fh.write(bytes(b ^ 0x5A for b in data))
    return target


# -- a ready-made evidence disk -------------------------------------------------------------------------
def data_volume_files(filler_bytes: int = 3 * MIB, seed: int = 21) -> dict[str, bytes]:
    """A D: data volume as Exchange servers often have: transport and HttpProxy logs, a mailbox database.

    The database is ``filler_bytes`` of seeded pseudo-random (incompressible) data so compressed formats
    keep their size and E01 images split into several segments.
    """
    ex = "Program Files/Microsoft/Exchange Server/V15"
    rows = (
        "#Software: Microsoft Exchange Server\r\n#Log-type: HttpProxy Logs\r\n"
        "2021-03-03T02:20:01.113Z,5b1c4d66-2222-4333-8444-555566667777,15,1,2176,2,,Ecp,mail.corp.example,"
        "/ecp/DDI/DDIService.svc/SetObject,,,false,,,ServerInfo~a]@EXCH01.corp.example:444/ecp/,"
        "python-requests/2.25.1,167.99.168.251,EXCH01,200\r\n"
    )
    return {
        f"{ex}/Logging/HttpProxy/Ecp/HttpProxy_2021030302-2.LOG": rows.encode(),
        f"{ex}/TransportRoles/Logs/MessageTracking/MSGTRK2021030301-1.LOG": b"#Software: Microsoft Exchange\r\n",
        "ExchangeDatabases/DB01/DB01.edb": random.Random(seed).randbytes(filler_bytes),
    }


def write_tree(root: Path, files: dict[str, bytes], mtime: datetime) -> Path:
    """Write ``files`` (relative path -> bytes) under ``root`` with modification time ``mtime``."""
    stamp = mtime.timestamp()
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (stamp, stamp))
    return root


def tree_hashes(tree: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file below ``tree``."""
    import hashlib

    _dirs, files = _tree_entries(tree)
    return {
        p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
        if p.is_file() and not p.is_symlink()
    }


def build_image(
    trees: list[Path],
    out: Path,
    fmt: Format = "e01",
    *,
    scheme: Literal["gpt", "mbr"] = "gpt",
    labels: list[str] | None = None,
    segment_size: int | None = None,
    work: Path | None = None,
) -> tuple[list[Path], DiskLayout]:
    """Trees -> NTFS volumes -> one disk -> ``fmt`` next to ``out`` (named after its stem): the CLI's work."""
    out = Path(out)
    labels = labels or [chr(ord("C") + i) for i in range(len(trees))]
    with tempfile.TemporaryDirectory(prefix="triage-img-", dir=work) as tmp:
        vols = [
            build_ntfs_volume(tree, Path(tmp) / f"vol{i}.ntfs", label=label)
            for i, (tree, label) in enumerate(zip(trees, labels, strict=True))
        ]
        layout = build_disk(vols, Path(tmp) / "disk.dd", scheme=scheme)
        paths = to_format(layout.path, fmt, out.parent, name=out.stem, segment_size=segment_size)
    layout.path = paths[0]
    return paths, layout


def main(argv: list[str] | None = None) -> int:
    """``python -m triage.testing.diskimage TREE OUT --format e01``: make an image from folders by hand."""
    p = argparse.ArgumentParser(
        prog="python -m triage.testing.diskimage",
        description="Build a partitioned NTFS disk image from folder trees (needs mkntfs, ntfs-3g with FUSE, "
        "qemu-img, ewfacquire).",
    )
    p.add_argument("tree", type=Path, help="folder that becomes the first NTFS volume (C:)")
    p.add_argument("out", type=Path, help="output file; its stem names the segments (OUT.E01, OUT.E02 ...)")
    p.add_argument("--format", choices=FORMATS, default="e01")
    p.add_argument("--data-tree", type=Path, action="append", default=[], help="more volumes (D:, E: ...)")
    p.add_argument("--scheme", choices=("gpt", "mbr"), default="gpt")
    p.add_argument("--segment-size", type=int, help="bytes per E01 / split raw segment")
    args = p.parse_args(argv)
    reason = tools_missing()
    if reason:
        print(f"cannot build images here: {reason}", file=sys.stderr)
        return 2
    paths, layout = build_image(
        [args.tree, *args.data_tree], args.out, args.format, scheme=args.scheme, segment_size=args.segment_size
    )
    for part in layout.partitions:
        print(f"partition {part.number}: offset {part.offset} size {part.size}", file=sys.stderr)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# -- the shared test disk --------------------------------------------------------------------------------
WEBSHELL = "inetpub/wwwroot/aspnet_client/system_web/Dk2jQ8ab.aspx"
STOMPED_SI = datetime(2016, 9, 15, 10, 0, tzinfo=UTC)  # what the intruder set: the install date
SHELL_FN = datetime(2021, 3, 3, 2, 41, 5, tzinfo=UTC)  # when the page was really written
ZONE_IDENTIFIER = b"[ZoneTransfer]\r\nZoneId=3\r\nHostUrl=http://103.77.192.219/Dk2jQ8ab.aspx\r\n"


def system_hive_with_mounts(hostname: str, letters: dict[str, uuid.UUID]) -> bytes:
    """A small SYSTEM hive naming the host whose ``MountedDevices`` maps drive letters to GPT partition GUIDs.

    Pass the GUIDs to :func:`build_disk` (``partition_guids``) so readers can give each volume its letter.
    """
    from triage.testing.regf import HiveBuilder
    from triage.testing.volume import T0

    system = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SYSTEM", timestamp=T0)
    system.set_value("Select", "Current", 1)
    system.set_value("Select", "Default", 1)
    system.set_value(r"ControlSet001\Control\ComputerName\ComputerName", "ComputerName", hostname)
    system.set_value(r"ControlSet001\Services\Tcpip\Parameters", "Hostname", hostname.lower())
    for letter, guid in letters.items():
        system.set_value("MountedDevices", f"\\DosDevices\\{letter}:", b"DMIO:ID:" + guid.bytes_le)
    return system.to_bytes()


class ImageSet(dict[str, list[Path]]):
    """{format: segment paths} of one evidence disk, plus what a test needs to check a collection from it.

    Attributes: ``layout`` (the raw disk's :class:`DiskLayout`; partition 1 is C:, 2 is D:), ``raw`` (the
    raw disk), ``trees`` ({"C": folder, "D": folder} the volumes were built from), ``hashes`` ({"C": {relpath:
    sha256}, "D": ...}), ``timestomped`` (relpath on C: whose SI times are :data:`STOMPED_SI` while its FN
    times are :data:`SHELL_FN`), ``streams`` ({relpath: {stream name: bytes}} on C:).
    """

    layout: DiskLayout
    raw: Path
    trees: dict[str, Path]
    hashes: dict[str, dict[str, str]]
    timestomped: str
    streams: dict[str, dict[str, bytes]]


def build_image_set(work: Path, *, formats: tuple[str, ...] = FORMATS, filler_bytes: int = 3 * MIB) -> ImageSet:
    """The synthetic compromised Exchange server as one GPT disk in every format, built under ``work``.

    C: is :func:`triage.testing.volume.build_volume`'s default volume (host EXCH01) whose SYSTEM hive also
    maps ``\\DosDevices\\C:`` and ``D:`` to the GPT partitions in ``MountedDevices``; its web shell is
    timestomped and carries a Zone.Identifier stream. D: is :func:`data_volume_files` (Exchange logs and a
    pseudo-random database, so the E01 spans several 1 MiB segments). Takes about a second.
    """
    from triage.testing.volume import T0, VolumeSpec, build_volume

    work = Path(work)
    spec = VolumeSpec()
    c_tree = build_volume(work / "trees" / "C", spec)
    d_tree = write_tree(work / "trees" / "D", data_volume_files(filler_bytes), T0)
    guids = [uuid.UUID("c0c0c0c0-0c0c-4c0c-8c0c-00000000000c"), uuid.UUID("d0d0d0d0-0d0d-4d0d-8d0d-00000000000d")]
    hive = c_tree / "Windows/System32/config/SYSTEM"
    hive.write_bytes(system_hive_with_mounts(spec.hostname, {"C": guids[0], "D": guids[1]}))
    os.utime(hive, (T0.timestamp(), T0.timestamp()))
    streams = {WEBSHELL: {"Zone.Identifier": ZONE_IDENTIFIER}}
    vols = work / "volumes"
    c_vol = build_ntfs_volume(
        c_tree,
        vols / "C.ntfs",
        label="System",
        streams=streams,
        times={WEBSHELL: TimeSpec(si=NtfsTimes.all(STOMPED_SI), fn=NtfsTimes.all(SHELL_FN))},
    )
    d_vol = build_ntfs_volume(d_tree, vols / "D.ntfs", label="Data")
    layout = build_disk([c_vol, d_vol], work / "disk" / "exch01.dd", scheme="gpt", partition_guids=guids)
    images = ImageSet()
    for fmt in formats:
        images[fmt] = to_format(layout.path, fmt, work / fmt, name="exch01")  # type: ignore[arg-type]
    images.layout = layout
    images.raw = layout.path
    images.trees = {"C": c_tree, "D": d_tree}
    images.hashes = {"C": tree_hashes(c_tree), "D": tree_hashes(d_tree)}
    images.timestomped = WEBSHELL
    images.streams = streams
    return images
