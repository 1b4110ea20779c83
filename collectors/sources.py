"""Recognising what the analyst pointed us at, and opening it as volume roots by drive letter.

Kinds: a mounted or extracted Windows volume; a KAPE target output folder (``<tdest>/C/...``);
a Velociraptor offline collection, unzipped or as the zip (``uploads/<accessor>/C%3A/...``);
an acquired disk image (E01, raw/dd, VMDK, VHD, VHDX; see ``diskimage``); a memory image; loose files.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triage.collectors.vfs import DIR, VNode, ZipTree, dir_node, merged, url_decode
from triage.errors import UsageError
from triage.hashing import open_source

MEMORY_EXTENSIONS = {".raw", ".mem", ".vmem", ".dmp", ".lime", ".bin"}
VOLUME_MARKERS = ("windows", "program files", "inetpub", "programdata", "users")
SOURCE_TYPES = ("auto", "volume", "kape", "velociraptor", "image", "memory", "files")


@dataclass
class Source:
    """A recognised source: volume roots by drive letter, or loose/memory files."""

    source_type: str
    location: str
    drives: dict[str, VNode] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    host_hint: str | None = None
    notes: list[str] = field(default_factory=list)
    # problems found while reading (corrupt MFT entries ...): the collector records each as a failure row
    failures: list[tuple[str, str]] = field(default_factory=list)
    image: Any = None  # a diskimage.DiskImage for disk image sources
    volumes: list[Any] = field(default_factory=list)  # its opened NTFS volumes
    partitions: list[dict[str, Any]] = field(default_factory=list)  # what the partition table holds
    _zip: ZipTree | None = None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        for vol in self.volumes:
            vol.close()
        self.volumes = []
        if self.image is not None:
            self.image.close()
            self.image = None


def _child_names(node: VNode) -> set[str]:
    return {c.name.casefold() for c in node.children() if c.kind == DIR}


def _looks_like_volume(node: VNode) -> bool:
    names = _child_names(node)
    return "windows" in names or sum(m in names for m in VOLUME_MARKERS) >= 2


def _drive_letter(name: str) -> str | None:
    # 'C:', '\\.\C:', '\\?\C:' as Velociraptor names devices
    m = re.match(r"^(?:\\\\[.?]\\)?([A-Za-z]):$", name)
    return m.group(1).upper() if m else None


def _velociraptor_drives(root: VNode) -> tuple[dict[str, VNode], list[str]]:
    uploads = root.child("uploads")
    by_letter: dict[str, list[VNode]] = {}
    notes = []
    if uploads is None:
        return {}, ["no uploads/ folder"]
    for accessor in uploads.children():
        if accessor.kind != DIR:
            continue
        for dev in accessor.children():
            letter = _drive_letter(dev.name) if dev.kind == DIR else None
            if letter:
                by_letter.setdefault(letter, []).append(dev)
            else:
                notes.append(f"uploads/{accessor.name}/{dev.name}: not a drive letter, not collected")
    return {k: merged(v, f"{k}:") for k, v in sorted(by_letter.items())}, notes


def _velociraptor_host(read_json) -> str | None:  # type: ignore[no-untyped-def]
    for name in ("client_info.json", "collection_context.json"):
        try:
            info = read_json(name)
        except (OSError, KeyError, ValueError):
            continue
        if isinstance(info, list) and info:
            info = info[0]
        if isinstance(info, dict):
            for key in ("Hostname", "hostname", "Fqdn", "fqdn"):
                if info.get(key):
                    return str(info[key]).split(".")[0]
    return None


def is_velociraptor_zip(path: str) -> bool:
    try:
        with open_source(path) as fh, zipfile.ZipFile(fh) as zf:  # type: ignore[arg-type]
            return any(n.startswith("uploads/") for n in zf.namelist()[:50000])
    except (OSError, zipfile.BadZipFile):
        return False


def _walk_files(node: VNode) -> list[str]:
    """Every non-folder entry below ``node``, links not followed.

    Listed through O_NOATIME handles: ``os.walk`` would move the access times of the source's folders.
    """
    out: list[str] = []
    for child in sorted(node.children(), key=lambda c: c.name):
        if child.kind == DIR:
            out.extend(_walk_files(child))
        else:
            out.append(child.source_path)
    return out


def _image_source(path: str, *, force: bool) -> Source | None:
    """A disk image as a source of drives (None when ``path`` is not one and not ``force``)."""
    from triage.collectors import diskimage

    if diskimage.detect_format(path, force=force) is None:
        ext = Path(path).suffix.lower()
        if ext in diskimage.IMAGE_EXTENSIONS:
            size = os.path.getsize(path)
            raise UsageError(
                f"{path}: named like a {diskimage.IMAGE_EXTENSIONS[ext]} but it is not one ("
                + ("an empty file" if size == 0 else f"{size:,} bytes without its signature")
                + "); give the real image, or --as files to collect it as a loose file"
            )
        return None
    image = diskimage.open_image(path, force=force)
    src = Source("image", path, image=image, notes=list(image.notes))
    try:
        found = diskimage.open_volumes(image, src.failures)
    except BaseException:
        src.close()
        raise
    src.drives = found.drives
    src.volumes = found.volumes
    src.partitions = found.listing
    src.notes += [
        f"{os.path.basename(path)}: {image.format_name}, {image.disk.size:,} bytes, "
        f"{len(image.segments)} file(s); partition table: {found.table.scheme}",
        *found.notes,
    ]
    return src


def open_source_path(location: str, as_type: str = "auto") -> Source:
    """Recognise ``location`` and open it; unrecognisable input is a usage error with advice."""
    if as_type not in SOURCE_TYPES:
        raise UsageError(f"unknown source type {as_type!r}; use one of {', '.join(SOURCE_TYPES)}")
    path = os.path.abspath(location)
    if not os.path.lexists(path):
        raise UsageError(f"source {location} does not exist")
    if os.path.islink(path):
        raise UsageError(f"source {location} is a symbolic link; give the real path (links are never followed)")
    if os.path.isfile(path):
        ext = Path(path).suffix.lower()
        if as_type in ("auto", "image"):
            image_source = _image_source(path, force=as_type == "image")
            if image_source is not None:
                return image_source
        if as_type == "memory" or (as_type == "auto" and ext in MEMORY_EXTENSIONS):
            return Source("memory", path, files=[path])
        if as_type in ("auto", "velociraptor") and ext == ".zip" and is_velociraptor_zip(path):
            tree = ZipTree(path, decode=url_decode)
            drives, notes = _velociraptor_drives(tree.root)

            def read_json(name: str):  # type: ignore[no-untyped-def]
                with tree.zf.open(name) as fh:
                    return json.loads(fh.read().decode("utf-8", "replace"))

            return Source(
                "velociraptor-zip",
                path,
                drives=drives,
                host_hint=_velociraptor_host(read_json),
                notes=notes,
                _zip=tree,
            )
        if as_type in ("auto", "files"):
            return Source("files", path, files=[path])
        raise UsageError(f"{location} is a file; --as {as_type} needs a folder")
    if as_type == "image":
        raise UsageError(f"{location} is a folder; --as image needs a disk image file (its first segment)")
    root = dir_node(path)
    if (
        as_type in ("auto", "velociraptor")
        and root.child("uploads") is not None
        and (
            as_type == "velociraptor"
            or any(root.child(n) for n in ("collection_context.json", "uploads.json", "log.json", "client_info.json"))
        )
    ):
        # Velociraptor stores names URL-encoded on disk too (uploads/auto/C%3A/...): decode them
        drives, notes = _velociraptor_drives(dir_node(path, decode=url_decode))

        def read_json_dir(name: str):  # type: ignore[no-untyped-def]
            node = root.child(name)
            if node is None:
                raise KeyError(name)
            with node.open() as fh:
                return json.loads(fh.read().decode("utf-8", "replace"))

        return Source("velociraptor", path, drives=drives, host_hint=_velociraptor_host(read_json_dir), notes=notes)
    if as_type in ("auto", "kape"):
        letters = {
            _drive_letter(c.name + ":"): c
            for c in root.children()
            if c.kind == DIR and len(c.name) == 1 and c.name.isalpha()
        }
        volumes = {k: v for k, v in letters.items() if k and _looks_like_volume(v)}
        copylog = any(c.name.lower().endswith("_copylog.csv") for c in root.children())
        if volumes and (copylog or as_type == "kape" or not _looks_like_volume(root)):
            # once one letter folder holds a Windows volume, the other letters are the same machine's
            # other drives (Exchange is often installed on D:) even without a Windows folder of their own
            return Source("kape", path, drives=dict(sorted((k, v) for k, v in letters.items() if k)))
        if as_type == "kape":
            raise UsageError(f"{location}: no drive-letter folder (C/, D/ ...) holding a Windows volume")
    if as_type in ("auto", "volume") and (as_type == "volume" or _looks_like_volume(root)):
        return Source("volume", path, drives={"C": root})
    if as_type == "files":
        return Source("files", path, files=_walk_files(root))
    raise UsageError(
        f"{location}: not recognised as a Windows volume (no Windows/, Program Files/, inetpub/ ...), a KAPE "
        "output folder or a Velociraptor collection; use --as volume|kape|velociraptor|files to say what it is"
    )
