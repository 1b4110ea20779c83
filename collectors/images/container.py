"""Recognising and opening the container of a disk image: E01/Ex01, raw/dd (split too), VMDK, VHD, VHDX."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from collectors.images.disk import Disk, LibyalDisk, RawDisk, first_line
from collectors.images.ewf import ewf_disk, ewf_segments
from collectors.partitions import BITLOCKER_OEM, boot_oem, carve_ntfs, is_ntfs_boot, looks_like_mbr
from collectors.vfs import listdir_noatime
from triage.errors import UsageError
from triage.formats.ewf import EVF1, EVF2, LVF, segment_problems
from triage.hashing import open_source

log = logging.getLogger(__name__)

FORMAT_NAMES = {
    "ewf": "EnCase image (E01)",
    "ewf2": "EnCase 7 image (Ex01)",
    "vhdx": "VHDX",
    "vhd": "VHD",
    "vmdk": "VMDK",
    "raw": "raw (dd) image",
    "split-raw": "split raw (dd) image",
}
MAX_SEGMENTS = 10000
IMAGE_EXTENSIONS = {  # names that promise a container format: without its magic, a usage error, not a loose file
    ".e01": "EnCase image (E01)",
    ".ex01": "EnCase 7 image (Ex01)",
    ".s01": "SMART image (s01)",
    ".vhd": "VHD",
    ".vhdx": "VHDX",
    ".vmdk": "VMDK",
}
RAW_EXTENSIONS = {".dd", ".img", ".001", ".000", ".aa", ".image", ".ima"}  # names worth a boot sector search


def _head_tail(path: str) -> tuple[bytes, bytes, int]:
    with open_source(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        head = os.pread(fh.fileno(), 4096, 0)
        tail = os.pread(fh.fileno(), 512, max(0, size - 512)) if size >= 512 else b""
    return head, tail, size


_SPLIT_NUM = re.compile(r"^(?P<base>.+)\.(?P<num>\d{3})$")
_SPLIT_ALPHA = re.compile(r"^(?P<base>.+)\.(?P<alpha>[a-z]{2})$")


def _split_segments(path: str) -> list[str] | None:
    """The segments of a split raw image that ``path`` belongs to, first to last; None if not split."""
    folder, name = os.path.split(path)
    m = _SPLIT_NUM.match(name)
    if m:
        base = m.group("base")
        first = 0 if os.path.lexists(os.path.join(folder, f"{base}.000")) else 1
        names = [f"{base}.{i:03d}" for i in range(first, first + MAX_SEGMENTS)]
    else:
        m = _SPLIT_ALPHA.match(name)
        if not m:
            return None
        base = m.group("base")
        letters = "abcdefghijklmnopqrstuvwxyz"
        names = [f"{base}.{a}{b}" for a in letters for b in letters]
    present = set(listdir_noatime(folder or "."))
    if names[0] not in present or not any(n in present for n in names[1:]):
        return None
    out = []
    for n in names:
        if n not in present:
            break
        out.append(os.path.join(folder, n))
    later = [n for n in names[len(out) :] if n in present]
    if later:
        raise UsageError(
            f"{path}: split raw image is missing segment {names[len(out)]} ({later[0]} and later exist); "
            "copy the missing segment next to the others"
        )
    return out


def detect_format(path: str, *, force: bool = False) -> str | None:
    """The container format of ``path`` by its magic ('ewf', 'vhdx', 'vhd', 'vmdk', 'raw', 'split-raw').

    None when it does not look like a disk image (unless ``force``: then anything else is raw).
    """
    try:
        head, tail, size = _head_tail(path)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    if head.startswith(EVF1):
        return "ewf"
    if head.startswith(EVF2):
        return "ewf2"
    if head.startswith(LVF):
        raise UsageError(f"{path}: a logical evidence file (L01/Lx01) holds files, not a disk; export its files")
    if head.startswith(b"vhdxfile"):
        return "vhdx"
    if tail.startswith(b"conectix") or head.startswith(b"conectix"):
        return "vhd"
    if head.startswith((b"KDMV", b"COWD")) or head.lstrip().startswith(b"# Disk DescriptorFile"):
        return "vmdk"
    gap: UsageError | None = None
    try:
        split = _split_segments(path)
    except UsageError as exc:  # a gap: an error only if what we hold looks like a disk (below)
        split, gap = None, exc
    if split:
        if split[0] != path:
            head, _t, size = _head_tail(split[0])
        size = sum(os.path.getsize(p) for p in split)
    sector0 = head[:512]
    gpt_only = head[512:520] == b"EFI PART" or head[4096:4104] == b"EFI PART"
    if (
        is_ntfs_boot(sector0)
        or boot_oem(sector0) == BITLOCKER_OEM
        or looks_like_mbr(sector0, size)
        or gpt_only
        or force
    ):
        if gap is not None:
            raise gap
        return "split-raw" if split else "raw"
    if Path(path).suffix.lower() in RAW_EXTENSIONS and gap is None:
        # named like a disk but sector 0 is unusable (wiped or garbage MBR): a disk if NTFS boot sectors are there
        probe = RawDisk(split or [path])
        try:
            if carve_ntfs(probe.read_at, probe.size):
                return "split-raw" if split else "raw"
        finally:
            probe.close()
    return None


@dataclass
class DiskImage:
    """An opened disk image: its format, segment files, disk view and what the format stores about itself."""

    path: str
    format: str
    segments: list[str]
    disk: Disk
    stored_hashes: dict[str, str] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def format_name(self) -> str:
        return FORMAT_NAMES.get(self.format, self.format)

    def close(self) -> None:
        self.disk.close()

    def describe(self) -> dict[str, Any]:
        """What the custody log records about the image."""
        segs = []
        for p in self.segments:
            try:
                st = os.stat(p)
                segs.append({"path": p, "size": st.st_size, "mtime": st.st_mtime_ns})
            except OSError as exc:
                segs.append({"path": p, "error": str(exc)})
        return {
            "image": self.path,
            "format": self.format,
            "media_size": self.disk.size,
            "segments": segs,
            "stored_hashes": self.stored_hashes,
            "info": self.info,
        }


def _open_files(paths: list[str]) -> list[BinaryIO]:
    files: list[BinaryIO] = []
    try:
        for p in paths:
            files.append(open_source(p))
    except OSError:
        for f in files:
            f.close()
        raise
    return files


def open_image(path: str, *, force: bool = False) -> DiskImage:
    """Open a disk image read-only; unreadable or incomplete images are usage errors with advice."""
    fmt = detect_format(path, force=force)
    if fmt is None:
        raise UsageError(f"{path}: not recognised as a disk image (E01, VHD, VHDX, VMDK or a raw disk)")
    notes: list[str] = []
    files: list[BinaryIO] = []
    try:
        if fmt in ("raw", "split-raw"):
            segments = _split_segments(path) or [path]
            if segments[0] != path:
                notes.append(f"{os.path.basename(path)} is not the first segment; read from {segments[0]}")
            return DiskImage(path, fmt, segments, RawDisk(segments), notes=notes)
        if fmt in ("ewf", "ewf2"):
            import pyewf

            segments, notes = ewf_segments(path)
            problems = segment_problems(segments)
            files = _open_files(segments)
            handle = pyewf.handle()
            try:
                handle.open_file_objects(files)
            except Exception as exc:
                if not problems:
                    raise
                raise UsageError(
                    f"{path}: cannot open this EWF set ({first_line(exc)}): {'; '.join(problems)}. Copy the "
                    "segments again from the original media and check them with ewfverify"
                ) from None
            for problem in problems:
                log.warning("%s: %s", path, problem)
                notes.append(f"DAMAGED: {problem}; chunks past the damage read as zeros")
            hashes = {k.lower(): v.lower() for k, v in (handle.get_hash_values() or {}).items() if v}
            info = {k: str(v) for k, v in (handle.get_header_values() or {}).items()}
            return DiskImage(path, fmt, segments, ewf_disk(handle, files), hashes, info, notes)
        if fmt in ("vhd", "vhdx"):
            import pyvhdi

            files = _open_files([path])
            handle = pyvhdi.file()
            handle.open_file_object(files[0])
            if handle.disk_type == 4 or handle.parent_identifier:
                raise UsageError(
                    f"{path}: a differencing {fmt.upper()} (changes against a parent disk); merge it first, "
                    f"e.g. qemu-img convert -O raw {os.path.basename(path)} merged.raw"
                )
            info = {"disk_type": str(handle.disk_type), "format_version": str(handle.format_version)}
            return DiskImage(path, fmt, [path], LibyalDisk(handle, files, handle.media_size), info=info)
        if fmt == "vmdk":
            import pyvmdk

            files = _open_files([path])
            handle = pyvmdk.handle()
            handle.open_file_object(files[0])
            if handle.parent_content_identifier not in (None, 0xFFFFFFFF):
                raise UsageError(
                    f"{path}: a VMDK snapshot (delta of a parent disk); convert the chain first, e.g. "
                    f"qemu-img convert -O raw {os.path.basename(path)} merged.raw"
                )
            folder = os.path.dirname(path)
            extents = []
            for i in range(handle.number_of_extents):
                name = handle.get_extent_descriptor(i).filename
                if not name:
                    continue
                ext = os.path.join(folder, os.path.basename(name.replace("\\", "/")))
                if not os.path.isfile(ext):
                    raise UsageError(f"{path}: extent file {name} is missing; keep the extents next to the descriptor")
                extents.append(ext)
            ext_files = _open_files(extents)
            files += ext_files
            handle.open_extent_data_files_as_file_objects(ext_files)
            info = {"disk_type": str(handle.disk_type), "extents": str(len(extents))}
            segments = list(dict.fromkeys([path, *extents]))
            return DiskImage(path, fmt, segments, LibyalDisk(handle, files, handle.media_size), info=info)
    except UsageError:
        for f in files:
            f.close()
        raise
    except Exception as exc:
        for f in files:
            f.close()
        raise UsageError(
            f"{path}: cannot open this {FORMAT_NAMES.get(fmt, fmt)}: {first_line(exc)}. The image may be "
            "truncated or corrupt: check it (ewfverify / qemu-img check) or re-export it"
        ) from None
    raise UsageError(f"{path}: unsupported image format {fmt}")  # pragma: no cover
