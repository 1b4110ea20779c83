"""Recognising what the analyst pointed us at, and opening it as volume roots by drive letter.

Kinds: a mounted or extracted Windows volume; a KAPE target output folder (``<tdest>/C/...``);
a Velociraptor offline collection, unzipped or as the zip (``uploads/<accessor>/C%3A/...``), encrypted too
(see ``encrypted``); a KAPE ``--zip``/``--vhdx``/``--vhd`` container or a zip of a volume; an acquired disk image
(E01, raw/dd, VMDK, VHD, VHDX; see ``collectors.images``); a memory image; loose files and zip members, each
recognised by its bytes (:mod:`triage.formats.recognize`). Zips are opened in place, bounded
(:class:`~collectors.vfs.ZipLimits`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from collectors.images.container import IMAGE_EXTENSIONS, DiskImage, detect_format, open_image
from collectors.images.ntfs import NtfsVolume
from collectors.images.volumes import open_volumes
from collectors.toolrecords import kape_records, velociraptor_records
from collectors.vfs import (
    DIR,
    FILE,
    ContainerLimit,
    VNode,
    ZipLimits,
    ZipTree,
    dir_node,
    merged,
    resolve,
    url_decode,
)
from triage.errors import InsufficientEvidence, UsageError
from triage.formats.recognize import HEAD, TAIL, Recognition, kind_by_name, recognize_bytes, recognize_path

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
    image: DiskImage | None = None  # for disk image sources
    volumes: list[NtfsVolume] = field(default_factory=list)  # its opened NTFS volumes
    partitions: list[dict[str, Any]] = field(default_factory=list)  # what the partition table holds
    # loose members of a container (zip of loose artifacts): (path parts inside it, node)
    members: list[tuple[tuple[str, ...], VNode]] = field(default_factory=list)
    # what the collection tool recorded per file (KAPE CopyLog, Velociraptor uploads.json), by (drive, path)
    tool_records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    recognized: dict[str, Recognition] = field(default_factory=dict)  # loose files already recognised
    depth: int = 0  # containers above this one
    stored_loose: int = 0  # loose files or members stored from this source (set while collecting)
    open_containers: bool = True  # False with --as files: zips and images among the files are stored as they are
    _zip: ZipTree | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
        while self._closers:
            with contextlib.suppress(Exception):  # closing what we only read: nothing to lose
                self._closers.pop()()
        for vol in self.volumes:
            vol.close()
        self.volumes = []
        if self.image is not None:
            self.image.close()
            self.image = None


def _child_names(node: VNode) -> set[str]:
    try:
        return {c.name.casefold() for c in node.children() if c.kind == DIR}
    except OSError:  # a folder we may not list is no volume root; its files are reported when walked
        return set()


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


def _velociraptor_host(read_json) -> str | None:
    for name in ("client_info.json", "collection_context.json"):
        try:
            info = read_json(name)
        except (OSError, KeyError, ValueError, RecursionError):
            continue
        if isinstance(info, list) and info:
            info = info[0]
        if isinstance(info, dict):
            for key in ("Hostname", "hostname", "Fqdn", "fqdn"):
                if info.get(key):
                    return str(info[key]).split(".")[0]
    return None


def _walk_files(node: VNode, failures: list[tuple[str, str]] | None = None) -> list[str]:
    """Every non-folder entry below ``node``, links not followed; unlistable folders go to ``failures``.

    Listed through O_NOATIME handles: ``os.walk`` would move the access times of the source's folders.
    """
    out: list[str] = []
    try:
        kids = node.children()
    except OSError as exc:
        if failures is None:
            raise
        failures.append((node.source_path, f"folder cannot be listed: {exc.strerror or exc}"))
        return out
    for child in sorted(kids, key=lambda c: c.name):
        if child.kind == DIR:
            out.extend(_walk_files(child, failures))
        else:
            out.append(child.source_path)
    return out


def _image_source(path: str, *, force: bool) -> Source | None:
    """A disk image as a source of drives (None when ``path`` is not one and not ``force``)."""
    if detect_format(path, force=force) is None:
        ext = Path(path).suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            size = os.path.getsize(path)
            raise UsageError(
                f"{path}: named like a {IMAGE_EXTENSIONS[ext]} but it is not one ("
                + ("an empty file" if size == 0 else f"{size:,} bytes without its signature")
                + "); give the real image, or --as files to collect it as a loose file"
            )
        return None
    image = open_image(path, force=force)
    src = Source("image", path, image=image, notes=list(image.notes))
    try:
        found = open_volumes(image, src.failures)
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


def _read_json_node(root: VNode):
    def read_json(name: str):
        node = root.child(name)
        if node is None or node.kind != FILE:
            raise KeyError(name)
        with node.open() as fh:
            return json.loads(fh.read(1 << 20).decode("utf-8", "replace"))

    return read_json


VELOCIRAPTOR_FILES = ("collection_context.json", "uploads.json", "log.json", "client_info.json")


def _has_upload_drive(uploads: VNode) -> bool:
    """``uploads/<accessor>/<drive>`` (``C%3A``): Velociraptor's layout, even without its json files."""
    for accessor in uploads.children():
        if accessor.kind == DIR and any(
            d.kind == DIR and _drive_letter(url_decode(d.name)) for d in accessor.children()
        ):
            return True
    return False


def _letter_drives(root: VNode) -> dict[str, VNode]:
    letters = {
        _drive_letter(c.name + ":"): c
        for c in root.children()
        if c.kind == DIR and len(c.name) == 1 and c.name.isalpha()
    }
    return {k: v for k, v in sorted((k, v) for k, v in letters.items() if k)}


def _classify_tree(
    root: VNode,
    location: str,
    as_type: str,
    *,
    redecode: Callable[[VNode, tuple[str, ...]], VNode],
) -> Source | None:
    """What a folder-like tree holds: a Velociraptor collection, a KAPE tdest tree or a volume (None: loose files).

    Used for folders, zips and the volumes of KAPE ``--vhdx``/``--vhd`` containers alike; one wrapping folder
    (``exch01-kape/C/...``, as zipping a folder makes) is looked through. ``redecode`` gives the same node with
    Velociraptor's URL-encoded names decoded.
    """
    node, prefix = root, cast(tuple[str, ...], ())
    for _ in range(3):
        if (
            as_type in ("auto", "velociraptor")
            and node.child("uploads") is not None
            and (
                as_type == "velociraptor"
                or any(node.child(n) for n in VELOCIRAPTOR_FILES)
                or _has_upload_drive(node.child("uploads"))  # type: ignore[arg-type]
            )
        ):
            vroot = redecode(node, prefix)
            drives, notes = _velociraptor_drives(vroot)
            records, more = velociraptor_records(node)
            return Source(
                "velociraptor",
                location,
                drives=drives,
                host_hint=_velociraptor_host(_read_json_node(node)),
                notes=notes + more,
                tool_records=records,
            )
        if as_type in ("auto", "kape"):
            letters = _letter_drives(node)
            volumes = {k: v for k, v in letters.items() if _looks_like_volume(v)}
            copylog = any(c.name.lower().endswith("_copylog.csv") for c in node.children())
            if volumes and (copylog or as_type == "kape" or not _looks_like_volume(node)):
                # once one letter folder holds a Windows volume, the other letters are the same machine's
                # other drives (Exchange is often installed on D:) even without a Windows folder of their own
                records, notes = kape_records(node)
                return Source("kape", location, drives=letters, notes=notes, tool_records=records)
        if as_type in ("auto", "volume") and _looks_like_volume(node):
            return Source("volume", location, drives={"C": node})
        try:
            kids = node.children()
        except OSError:
            break
        dirs = [k for k in kids if k.kind == DIR]
        if len(dirs) == 1 and len(kids) == 1:
            node, prefix = dirs[0], (*prefix, dirs[0].name)
            continue
        break
    return None


def _zip_source(
    path: str,
    *,
    as_type: str,
    fh: BinaryIO | None = None,
    label: str | None = None,
    depth: int = 0,
    limits: ZipLimits | None = None,
) -> Source:
    """A zip (a file, or a member stream ``fh`` of another container) as a source.

    Raises ``zipfile.BadZipFile``/``OSError`` when it cannot be read as a zip and :class:`ContainerLimit`
    when it breaks a bound; an encrypted Velociraptor collection without its key is a :class:`UsageError`.
    """
    label = label or path
    limits = limits or ZipLimits.from_env()
    tree = ZipTree(path, fh=fh, label=label, limits=limits)
    try:
        root = tree.root
        files = {c.name: c for c in root.children() if c.kind == FILE}
        data_info = next((i for i in tree.zf.infolist() if i.filename == "data.zip"), None)
        if "metadata.json" in files and data_info is not None and data_info.flag_bits & 0x1:
            from collectors.encrypted import FORMAT, open_data_zip

            data = open_data_zip(path, tree._fh if tree._fh is not None else fh, label, limits)  # type: ignore[arg-type]
            inner_label = f"{label}!data.zip"
            try:
                src = _zip_source(path, as_type=as_type, fh=data, label=inner_label, depth=depth, limits=limits)
            except (zipfile.BadZipFile, OSError) as exc:
                data.close()
                raise UsageError(f"{label}: the decrypted data.zip is not a readable zip ({exc})") from None
            src._closers.append(data.close)
            src._closers.append(tree.close)
            src.notes.insert(0, f"{os.path.basename(path)}: {FORMAT}, decrypted with the key or password given")
            return src

        def redecode(node: VNode, prefix: tuple[str, ...]) -> VNode:
            tree.reindex(url_decode)
            return resolve(tree.root, [url_decode(p) for p in prefix]) or tree.root

        tree_src = _classify_tree(root, label, as_type, redecode=redecode)
        if tree_src is not None:
            src = tree_src
            src.source_type = f"{src.source_type}-zip"
            src._closers.append(tree.close)
            src.depth = depth
            return src
        if tree.encrypted:
            raise UsageError(
                f"{label}: a password-protected zip ({tree.encrypted} encrypted members) that is not a Velociraptor "
                "collection; decrypt it first"
            )
        src = Source("zip", label, members=_walk_members(tree.root), depth=depth)
        src._closers.append(tree.close)
        if not src.members:
            src.notes.append(f"{os.path.basename(path)}: the zip holds no files")
        return src
    except BaseException:
        tree.close()
        raise


def _walk_members(node: VNode, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], VNode]]:
    out: list[tuple[tuple[str, ...], VNode]] = []
    for child in node.children():
        parts = (*prefix, child.name)
        if child.kind == DIR:
            out.extend(_walk_members(child, parts))
        else:
            out.append((parts, child))
    return out


def _kape_inside_image(src: Source) -> Source:
    """A KAPE ``--vhdx``/``--vhd`` container: an NTFS volume whose root holds the tdest tree (``C/...``)."""
    if any(r.child("Windows") is not None for r in src.drives.values()):
        return src
    for letter, root in src.drives.items():
        inner = _classify_tree(root, src.location, "kape", redecode=lambda n, p: n)
        if inner is not None and inner.drives:
            src.notes.append(
                f"{os.path.basename(src.location)}: volume {letter}: holds a KAPE target tree "
                f"({', '.join(d + ':' for d in inner.drives)}); collected as KAPE output"
            )
            src.notes += inner.notes
            src.drives = inner.drives
            src.tool_records = inner.tool_records
            src.source_type = "kape-image"
            break
    return src


def open_source_path(location: str, as_type: str = "auto", *, depth: int = 0) -> Source:
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
                image_source.depth = depth
                return _kape_inside_image(image_source)
        if as_type == "memory":
            return Source("memory", path, files=[path], depth=depth)
        rec = recognize_path(path)
        if as_type in ("auto", "velociraptor") and rec.format == "zip":
            try:
                return _zip_source(path, as_type=as_type, depth=depth)
            except ContainerLimit as exc:
                raise UsageError(str(exc)) from None
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                if as_type == "velociraptor":
                    raise UsageError(f"{location}: not a readable zip ({exc})") from None
                reason = f"damaged zip ({type(exc).__name__}: {str(exc)[:120]}); stored as a loose file"
                src = Source("files", path, files=[path], notes=[f"{location}: {reason}"], depth=depth)
                src.failures.append((path, f"container cannot be opened: {reason}"))
                src.recognized[path] = rec
                return src
        if as_type == "auto" and (rec.kind == "memory_image" or (rec.format is None and ext in MEMORY_EXTENSIONS)):
            return Source("memory", path, files=[path], depth=depth, recognized={path: rec})
        if as_type in ("auto", "files"):
            src = Source("files", path, files=[path], depth=depth, recognized={path: rec})
            src.open_containers = as_type == "auto"
            return src
        raise UsageError(f"{location} is a file; --as {as_type} needs a folder")
    if not os.path.isdir(path):
        raise UsageError(f"source {location} is neither a regular file nor a folder (a device, fifo or socket)")
    if as_type == "image":
        raise UsageError(f"{location} is a folder; --as image needs a disk image file (its first segment)")
    root = dir_node(path)
    try:
        root.children()
    except OSError as exc:
        raise UsageError(f"{location}: the folder cannot be listed ({exc.strerror or exc})") from None

    def redecode_dir(node: VNode, prefix: tuple[str, ...]) -> VNode:
        # Velociraptor stores names URL-encoded on disk too (uploads/auto/C%3A/...): decode them
        return dir_node(node.source_path, decode=url_decode)

    if as_type != "files":
        tree_src = _classify_tree(root, path, as_type if as_type != "auto" else "auto", redecode=redecode_dir)
        if tree_src is not None:
            src = tree_src
            src.depth = depth
            return src
        if as_type == "kape":
            raise UsageError(f"{location}: no drive-letter folder (C/, D/ ...) holding a Windows volume")
        if as_type == "volume":
            return Source("volume", path, drives={"C": root}, depth=depth)
        if as_type == "velociraptor":
            raise UsageError(f"{location}: no uploads/ folder of a Velociraptor collection")
    # a folder of loose artifacts, whatever their names: each is recognised by its bytes when collected
    failures: list[tuple[str, str]] = []
    files = _walk_files(root, failures)
    if not files and not failures:
        raise InsufficientEvidence(
            f"{location}: nothing examinable: not a Windows volume, KAPE or Velociraptor output, and it holds no files"
        )
    src = Source("files", path, files=files, depth=depth, failures=failures)
    src.open_containers = as_type == "auto"
    return src


def recognize_node(node: VNode) -> Recognition:
    """A container member from its first bytes only: seeking to its end would inflate all of it."""
    try:
        with node.open() as fh:
            head = fh.read(HEAD) or b""
    except OSError as exc:
        return Recognition(None, kind_by_name(node.name), "error", error=str(exc)[:200])
    return recognize_bytes(head, name=node.name, size=node.size, tail=head[-TAIL:] if len(head) == node.size else b"")


def precheck_examinable(sources: list[Source]) -> None:
    """Before anything is written: sources that can only be loose files, none of them examinable, are refused.

    Volumes, collections and images pass (their own collection tells); loose files and zip members are
    recognised here (the verdicts are kept for the collection) and one examinable artifact or container is
    enough. Raises :class:`InsufficientEvidence` (exit 4) with a one-line reason.
    """
    looked = 0
    for src in sources:
        if src.drives or src.image is not None or src.source_type == "memory" or src.failures:
            return  # volumes and collections speak for themselves; read failures are reported by the collection
        for path in src.files:
            rec = src.recognized.get(path) or recognize_path(path)
            src.recognized[path] = rec
            looked += 1
            if rec.examinable or rec.container:
                return
        for _parts, node in src.members:
            if node.kind != FILE:
                continue
            rec = recognize_node(node)
            if rec.by == "error":
                return  # a member that cannot be read is a failure row of its own: let the collection say so
            src.recognized[node.source_path] = rec
            looked += 1
            if rec.examinable or rec.container:
                return
    names = ", ".join(s.location for s in sources)
    raise InsufficientEvidence(
        f"nothing examinable in {names}: {looked} file(s), none an event log, hive, web or Exchange log, memory "
        "image, program, server page or container"
    )
