"""NTFS volumes of an image as VNode trees: entries with their NTFS facts ($STANDARD_INFORMATION and
$FILE_NAME times, MFT entry, alternate data streams) for the manifest rows.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from collectors.images.disk import Disk, StreamReader, WindowIO, first_line
from collectors.partitions import Partition
from collectors.vfs import CORRUPT, DIR, FILE, LINK, VNode
from triage.formats.times import filetime_to_epoch, filetime_to_iso

log = logging.getLogger(__name__)

ATTR_SYSTEM, ATTR_REPARSE = 0x4, 0x400
LINK_DETAIL = "NTFS reparse point (symbolic link, junction or mount point): reported, not followed"


def stream_opener(obj: Any, size: int, label: str) -> Callable[[], contextlib.AbstractContextManager[BinaryIO]]:
    """A VNode opener over a pyfsntfs entry or data stream (a fresh positional reader on each open)."""
    return lambda: cast(BinaryIO, StreamReader(obj, size, label))


def _times(attr: Any) -> dict[str, str | None]:
    return {
        "created": filetime_to_iso(attr.get_creation_time_as_integer()),
        "modified": filetime_to_iso(attr.get_modification_time_as_integer()),
        "mft_modified": filetime_to_iso(attr.get_entry_modification_time_as_integer()),
        "accessed": filetime_to_iso(attr.get_access_time_as_integer()),
    }


def ntfs_facts(entry: Any) -> dict[str, Any]:
    """$STANDARD_INFORMATION and $FILE_NAME times, MFT entry and sequence, attributes and ADS of one entry."""
    facts: dict[str, Any] = {}
    try:
        ref = int(entry.file_reference)
        facts["mft_entry"] = ref & 0xFFFFFFFFFFFF
        facts["mft_sequence"] = ref >> 48
        facts["file_attributes"] = f"0x{int(entry.file_attribute_flags or 0):08x}"
    except Exception as exc:
        facts["error"] = f"entry header: {first_line(exc)}"
    names: list[tuple[int, str, dict[str, str | None]]] = []
    try:
        for attr in entry.attributes:
            kind = attr.attribute_type
            if kind == 0x10:
                facts["si"] = _times(attr)
            elif kind == 0x30:
                names.append((int(attr.name_space), str(attr.name), _times(attr)))
    except Exception as exc:
        facts["error"] = f"attributes: {first_line(exc)}"
    if names:
        # the Win32 (1) or Win32+DOS (3) name is the one Explorer shows; POSIX (0) next; DOS 8.3 (2) last
        rank = {1: 0, 3: 0, 0: 1, 2: 2}
        _ns, name, times = sorted(names, key=lambda n: rank.get(n[0], 3))[0]
        facts["fn"] = times
        facts["fn_name"] = name
    try:
        facts["ads"] = [{"name": s.name, "size": int(s.size)} for s in entry.alternate_data_streams]
    except Exception as exc:
        facts["ads_error"] = first_line(exc)
    return facts


Failure = tuple[str, str]  # (source path, what went wrong)


class NtfsVolume:
    """One NTFS volume of an image, as a VNode tree (read through the image handle, nothing mounted)."""

    def __init__(self, disk: Disk, part: Partition, image_path: str, failures: list[Failure]) -> None:
        import pyfsntfs

        self.part = part
        self.prefix = f"{image_path}#p{part.index}:"
        self._failures = failures
        self._io = WindowIO(disk, part.offset, part.size)
        self.fs = pyfsntfs.volume()
        try:
            self.fs.open_file_object(self._io)
        except Exception as exc:
            raise OSError(first_line(exc)) from None
        try:
            self.label = str(self.fs.name or "")
        except Exception:
            self.label = ""

    def root(self) -> VNode:
        entry = self.fs.get_root_directory()
        return VNode(
            name="", kind=DIR, source_path=self.prefix + "/", lister=lambda: self._list(entry, "", frozenset({5}))
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing after a read error may complain; nothing to keep
            self.fs.close()

    def _fail(self, path: str, message: str) -> None:
        log.warning("%s: %s", path, message)
        self._failures.append((path, message))

    def _list(self, entry: Any, path: str, ancestors: frozenset[int]) -> list[VNode]:
        here = f"{self.prefix}/{path}"
        try:
            count = int(entry.number_of_sub_file_entries)
        except Exception as exc:
            raise OSError(f"cannot read the directory index: {first_line(exc)}") from None
        out: list[VNode] = []
        refs: dict[int, int] = {}
        for i in range(count):
            try:
                sub = entry.get_sub_file_entry(i)
                name = sub.name
                ref = int(sub.file_reference)
            except Exception as exc:
                self._fail(
                    here, f"directory entry {i + 1} of {count} unreadable (corrupt MFT entry?): {first_line(exc)}"
                )
                continue
            if name is None or name in (".", ".."):
                continue
            if ref in refs and self._dos_name(sub):
                continue  # the 8.3 alias of an entry already listed
            refs[ref] = i
            try:
                out.append(self._node(sub, name, f"{path}{name}", ancestors))
            except Exception as exc:
                self._fail(f"{here}{name}", f"MFT entry {ref & 0xFFFFFFFFFFFF} unreadable: {first_line(exc)}")
        return out

    @staticmethod
    def _dos_name(sub: Any) -> bool:
        try:
            idx = sub.name_attribute_index
            return int(sub.get_attribute(idx).name_space) == 2
        except Exception:
            return False

    def _node(self, sub: Any, name: str, path: str, ancestors: frozenset[int]) -> VNode:
        src = f"{self.prefix}/{path}"
        if not sub.number_of_attributes or not sub.is_allocated():
            # the directory index names it, but its MFT record is unusable (BAAD signature, torn fixup)
            ref = int(sub.get_i30_file_reference()) if sub.has_i30_entry() else int(sub.file_reference)
            detail = (
                f"MFT entry {ref & 0xFFFFFFFFFFFF} is corrupt (no readable attributes: bad signature or update "
                "sequence); its data cannot be located"
            )
            log.warning("%s: %s", src, detail)
            return VNode(name=name, kind=CORRUPT, source_path=src, detail=detail)
        flags = int(sub.file_attribute_flags or 0)
        mtime = filetime_to_epoch(sub.get_modification_time_as_integer())
        atime = filetime_to_epoch(sub.get_access_time_as_integer())
        common: dict[str, Any] = dict(name=name, source_path=src, mtime=mtime, atime=atime)
        if flags & ATTR_REPARSE:
            return VNode(kind=LINK, detail=LINK_DETAIL, **common)
        if sub.has_directory_entries_index():
            entry_no = int(sub.file_reference) & 0xFFFFFFFFFFFF
            if entry_no in ancestors:  # a corrupt index pointing back up: walking it would never end
                detail = f"directory loop: MFT entry {entry_no} is one of its own parent folders; not entered"
                log.warning("%s: %s", src, detail)
                return VNode(name=name, kind=CORRUPT, source_path=src, detail=detail)
            inner = ancestors | {entry_no}
            return VNode(kind=DIR, lister=lambda: self._list(sub, path + "/", inner), **common)
        size = int(sub.size or 0)
        if flags & ATTR_SYSTEM and 8 <= size <= 4096 and self._interix_link(sub):
            return VNode(kind=LINK, detail="Interix symbolic link (as ntfs-3g writes them): not followed", **common)
        node = VNode(kind=FILE, size=size, opener=stream_opener(sub, size, src), **common)
        node.extra_fn = lambda: {"ntfs": ntfs_facts(sub)}
        node.streams_fn = lambda: self._streams(sub, name, src, mtime, atime)
        return node

    @staticmethod
    def _interix_link(sub: Any) -> bool:
        try:
            return bytes(sub.read_buffer_at_offset(8, 0)) == b"IntxLNK\x01"
        except Exception:
            return False

    def _streams(self, sub: Any, name: str, src: str, mtime: float | None, atime: float | None) -> list[VNode]:
        out = []
        try:
            streams = list(sub.alternate_data_streams)
        except Exception as exc:
            self._fail(src, f"alternate data streams unreadable: {first_line(exc)}")
            return []
        for s in streams:
            sname = str(s.name)
            ssize = int(s.size or 0)
            ssrc = f"{src}:{sname}"
            node = VNode(
                name=f"{name}:{sname}",
                kind=FILE,
                source_path=ssrc,
                size=ssize,
                mtime=mtime,
                atime=atime,
                opener=stream_opener(s, ssize, ssrc),
            )
            node.extra_fn = lambda sname=sname, ssize=ssize: {
                "ntfs": {"stream_of": src, "stream": sname, "stream_size": ssize}
            }
            out.append(node)
        return out
