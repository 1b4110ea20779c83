"""A read-only view of a Windows volume, whatever holds it: a folder, a KAPE or Velociraptor tree, a zip.

Names are matched case-insensitively, as NTFS does. Links are reported, never followed, so a
collection cannot leave its source; zip members that try to climb out (``../``) are marked unsafe.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import io
import lzma
import os
import re
import stat
import struct
import urllib.parse
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from triage.hashing import open_readonly, open_source

DIR, FILE, LINK, OTHER, UNSAFE = "dir", "file", "link", "other", "unsafe"
CORRUPT = "corrupt"  # an image file system entry that cannot be read (corrupt MFT record): a failure row, with why
LINK_DETAIL = "symbolic link not followed (its target is not read: that would change the link's access time)"


@dataclass
class VNode:
    """One entry of a source tree."""

    name: str
    kind: str
    source_path: str
    size: int | None = None
    mtime: float | None = None
    atime: float | None = None
    detail: str = ""
    lister: Callable[[], list[VNode]] | None = field(default=None, repr=False)
    opener: Callable[[], contextlib.AbstractContextManager[BinaryIO]] | None = field(default=None, repr=False)
    _children: list[VNode] | None = field(default=None, repr=False)
    # image file systems only: facts for the manifest row (NTFS times, MFT entry) and alternate data streams
    extra_fn: Callable[[], dict[str, Any]] | None = field(default=None, repr=False)
    streams_fn: Callable[[], list[VNode]] | None = field(default=None, repr=False)
    on_disk: bool = False  # a plain file of a folder on disk: opened by path, safe to copy from several threads

    def children(self) -> list[VNode]:
        """The entries of a directory (cached; listing errors surface as OSError)."""
        if self.kind != DIR or self.lister is None:
            return []
        if self._children is None:
            self._children = self.lister()
        return self._children

    def child(self, name: str) -> VNode | None:
        folded = name.casefold()
        for c in self.children():
            if c.name.casefold() == folded:
                return c
        return None

    def open(self) -> contextlib.AbstractContextManager[BinaryIO]:
        if self.opener is None:
            raise OSError(f"{self.source_path}: not a regular file ({self.kind})")
        return self.opener()


# -- folders on disk ---------------------------------------------------------------------------------
def dir_node(path: str, name: str = "", *, decode: Callable[[str], str] | None = None) -> VNode:
    """A folder on disk as a VNode tree; ``decode`` maps stored names to logical ones (URL decoding)."""
    st = os.lstat(path)
    return _disk_node(path, name or os.path.basename(os.path.normpath(path)), st, decode)


def _disk_node(path: str, name: str, st: os.stat_result, decode: Callable[[str], str] | None) -> VNode:
    mode = st.st_mode
    common: dict[str, Any] = dict(name=name, source_path=path, mtime=st.st_mtime, atime=st.st_atime)
    if stat.S_ISLNK(mode):
        # the target is deliberately not read: readlink(2) updates the link's own access time
        return VNode(kind=LINK, detail=LINK_DETAIL, **common)
    if stat.S_ISDIR(mode):
        return VNode(kind=DIR, lister=lambda: _list_disk(path, decode), **common)
    if stat.S_ISREG(mode):
        return VNode(kind=FILE, size=st.st_size, opener=lambda: open_source(path), on_disk=True, **common)
    return VNode(kind=OTHER, detail="not a regular file (device, fifo or socket)", **common)


def _list_disk(path: str, decode: Callable[[str], str] | None) -> list[VNode]:
    # list through an O_NOATIME descriptor so the listing does not touch the folder's atime
    fd = open_readonly(path, directory=True)
    try:
        out = []
        with os.scandir(fd) as it:
            for entry in it:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    out.append(
                        VNode(
                            name=entry.name,
                            kind=OTHER,
                            source_path=os.path.join(path, entry.name),
                            detail=f"cannot stat: {exc}",
                        )
                    )
                    continue
                logical = decode(entry.name) if decode else entry.name
                out.append(_disk_node(os.path.join(path, entry.name), logical, st, decode))
        return out
    finally:
        os.close(fd)


def listdir_noatime(path: str) -> list[str]:
    """``os.listdir`` through an O_NOATIME descriptor: finding an image's segments leaves its folder's atime.

    Where the kernel refuses O_NOATIME (a folder we do not own, without CAP_FOWNER) the listing falls back to
    a plain one, which on a relatime mount may move the folder's access time.
    """
    fd = open_readonly(path or ".", directory=True)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def url_decode(name: str) -> str:
    """Velociraptor stores names URL-encoded (``C%3A``); decode, keeping undecodable bytes."""
    return urllib.parse.unquote(name, encoding="utf-8", errors="surrogateescape")


# -- zip containers ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what one zip may make us read (zip bombs, hostile member tables).

    ``members``: entries in the central directory; ``expanded``: the sum of the declared member sizes;
    ``ratio``: a member's declared size over its compressed size (members above ``ratio_floor`` bytes only);
    ``depth``: containers inside containers. Each can be raised through the environment
    (``TRIAGE_ZIP_MAX_MEMBERS``, ``TRIAGE_ZIP_MAX_BYTES``, ``TRIAGE_ZIP_MAX_RATIO``, ``TRIAGE_MAX_DEPTH``).
    """

    members: int = 1_000_000
    expanded: int = 1 << 40  # 1 TiB
    ratio: int = 1000
    ratio_floor: int = 16 << 20
    depth: int = 3

    @classmethod
    def from_env(cls) -> ZipLimits:
        def num(name: str, default: int) -> int:
            try:
                return max(0, int(os.environ.get(name, "") or default))
            except ValueError:
                return default

        d = cls()
        return cls(
            members=num("TRIAGE_ZIP_MAX_MEMBERS", d.members),
            expanded=num("TRIAGE_ZIP_MAX_BYTES", d.expanded),
            ratio=num("TRIAGE_ZIP_MAX_RATIO", d.ratio),
            depth=num("TRIAGE_MAX_DEPTH", d.depth),
        )


class ContainerLimit(ValueError):
    """A container exceeds one of the :class:`ZipLimits` (the message names the limit and how to raise it)."""


# what a damaged member raises while it is opened or read; each becomes an OSError with a short reason
MEMBER_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    RuntimeError,  # encrypted member without (or with a wrong) password
    NotImplementedError,  # compression method zipfile cannot read
    struct.error,
    ValueError,
    lzma.LZMAError,
)


def _short(exc: BaseException) -> str:
    # zipfile puts raw header bytes into some messages (name mismatch): keep a printable, bounded reason
    text = str(exc).encode("ascii", "backslashreplace").decode("ascii")
    text = re.sub(r"""b(['"]).*?\1""", "(bytes)", text)  # header bytes as Python shows them
    return f"{type(exc).__name__}: {text[:160]}"


class MemberReader(io.RawIOBase):
    """A zip member's stream whose damage surfaces as ``OSError`` (what ``Case.store`` records as a failure)."""

    def __init__(self, opener: Callable[[], BinaryIO], label: str) -> None:
        super().__init__()
        self._label = label
        try:
            self._fh = opener()
        except MEMBER_ERRORS as exc:
            raise OSError(f"damaged zip member: {_short(exc)}") from None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._fh.seekable())

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._fh.seek(offset, whence)
        except MEMBER_ERRORS as exc:
            raise OSError(f"damaged zip member: {_short(exc)}") from None

    def tell(self) -> int:
        return self._fh.tell()

    def read(self, size: int = -1) -> bytes:
        try:
            return self._fh.read(size)
        except MEMBER_ERRORS as exc:
            raise OSError(f"damaged zip member: {_short(exc)}") from None

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._fh.close()
        finally:
            super().close()


class ZipTree:
    """An index of a zip's members as VNodes, read through one O_NOATIME handle (or a given file object).

    ``label`` prefixes the members' source paths (``outer.zip!inner.zip!C/Windows/...`` for nested zips).
    Damaged members open and read as ``OSError``; duplicate names are kept apart (``(duplicate #2)``);
    members whose compression ratio exceeds the limit are refused; a member table or declared total over the
    limits raises :class:`ContainerLimit`.
    """

    def __init__(
        self,
        path: str,
        *,
        decode: Callable[[str], str] | None = None,
        fh: BinaryIO | None = None,
        label: str | None = None,
        limits: ZipLimits | None = None,
        zf: zipfile.ZipFile | None = None,
    ) -> None:
        self.path = path
        self.label = label or path
        self.limits = limits or ZipLimits.from_env()
        self._own = fh is None and zf is None
        self._fh = open_source(path) if fh is None and zf is None else fh
        try:
            self.zf = zf if zf is not None else zipfile.ZipFile(self._fh)  # type: ignore[arg-type]
        except BaseException:
            if self._own and self._fh is not None:
                self._fh.close()
            raise
        infos = self.zf.infolist()
        self.notes: list[str] = []
        if len(infos) > self.limits.members:
            self.close()
            raise ContainerLimit(
                f"{self.label}: {len(infos):,} members, over the limit of {self.limits.members:,} "
                "(TRIAGE_ZIP_MAX_MEMBERS raises it)"
            )
        declared = sum(i.file_size for i in infos)
        if declared > self.limits.expanded:
            self.close()
            raise ContainerLimit(
                f"{self.label}: members declare {declared:,} bytes expanded, over the limit of "
                f"{self.limits.expanded:,} (a zip bomb?; TRIAGE_ZIP_MAX_BYTES raises it)"
            )
        self.encrypted = sum(1 for i in infos if i.flag_bits & 0x1)
        self.root = self._index(infos, decode)

    def _index(self, infos: list[zipfile.ZipInfo], decode: Callable[[str], str] | None) -> VNode:
        root = VNode(name="", kind=DIR, source_path=f"{self.label}!", lister=lambda: [])
        root._children = []
        dirs: dict[tuple[str, ...], VNode] = {(): root}
        seen: dict[str, int] = {}
        for info in infos:
            raw = info.filename.replace("\\", "/")
            parts = [p for p in raw.split("/") if p not in ("", ".")]
            unsafe = raw.startswith("/") or ".." in parts or (len(raw) > 1 and raw[1] == ":" and raw[0].isalpha())
            if decode:
                parts = [decode(p) for p in parts]
            if not parts:
                continue
            parent = self._ensure_dirs(dirs, tuple(parts[:-1]))
            mtime = _zip_time(info)
            src = f"{self.label}!{info.filename}"
            if not info.is_dir():
                n = seen.get(info.filename, 0) + 1
                seen[info.filename] = n
                if n > 1:  # a second member of the same name: collected too, under its own source path
                    src += f" (duplicate #{n})"
            ratio = info.file_size / max(1, info.compress_size)
            if unsafe:
                node = VNode(
                    name=parts[-1],
                    kind=UNSAFE,
                    source_path=src,
                    detail="zip member path escapes the container (path traversal); refused",
                )
            elif info.is_dir():
                self._ensure_dirs(dirs, tuple(parts))
                continue
            elif stat.S_ISLNK(info.external_attr >> 16):
                node = VNode(name=parts[-1], kind=LINK, source_path=src, detail="symbolic link member not followed")
            elif info.file_size > self.limits.ratio_floor and ratio > self.limits.ratio:
                node = VNode(
                    name=parts[-1],
                    kind=UNSAFE,
                    source_path=src,
                    detail=f"zip member expands {ratio:,.0f}:1 to {info.file_size:,} bytes, over the ratio limit of "
                    f"{self.limits.ratio}:1 (a zip bomb?; TRIAGE_ZIP_MAX_RATIO raises it); refused",
                )
            else:
                node = VNode(
                    name=parts[-1],
                    kind=FILE,
                    source_path=src,
                    size=info.file_size,
                    mtime=mtime,
                    opener=self._opener(info, src),
                )
            assert parent._children is not None
            parent._children.append(node)
        return root

    def reindex(self, decode: Callable[[str], str] | None) -> None:
        """Rebuild the tree with another name decoding (Velociraptor's URL-encoded names)."""
        self.root = self._index(self.zf.infolist(), decode)

    def _opener(self, info: zipfile.ZipInfo, src: str) -> Callable[[], contextlib.AbstractContextManager[BinaryIO]]:
        return functools.partial(self._open_member, info, src)  # type: ignore[return-value]

    def _open_member(self, info: zipfile.ZipInfo, src: str) -> MemberReader:
        return MemberReader(functools.partial(self.zf.open, info), src)  # type: ignore[arg-type]

    def _ensure_dirs(self, dirs: dict[tuple[str, ...], VNode], parts: tuple[str, ...]) -> VNode:
        if parts in dirs:
            return dirs[parts]
        parent = self._ensure_dirs(dirs, parts[:-1])
        if parent.kind != DIR:
            return parent
        node = VNode(name=parts[-1], kind=DIR, source_path=f"{self.label}!{'/'.join(parts)}/", lister=lambda: [])
        node._children = []
        assert parent._children is not None
        parent._children.append(node)
        dirs[parts] = node
        return node

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.zf.close()
        if self._own and self._fh is not None:
            self._fh.close()


def _zip_time(info: zipfile.ZipInfo) -> float | None:
    return _dos_time(info.date_time)


@functools.lru_cache(maxsize=4096)
def _dos_time(date_time: tuple[int, ...]) -> float | None:
    # members of one collection share a handful of timestamps: convert each once
    import calendar

    try:
        return float(calendar.timegm((*date_time, 0, 0, 0)))
    except (TypeError, ValueError, OverflowError):
        return None


# -- merging (Velociraptor keeps 'auto' and 'ntfs' uploads side by side) ---------------------------------
def merged(nodes: list[VNode], name: str = "") -> VNode:
    """One directory showing the union of several; the first node wins a name clash."""
    if len(nodes) == 1:
        return nodes[0]

    def lister() -> list[VNode]:
        seen: dict[str, list[VNode]] = {}
        order: list[str] = []
        for n in nodes:
            for c in n.children():
                key = c.name.casefold()
                if key not in seen:
                    seen[key] = []
                    order.append(key)
                seen[key].append(c)
        out = []
        for key in order:
            group = seen[key]
            dirs = [g for g in group if g.kind == DIR]
            out.append(merged(dirs, dirs[0].name) if len(dirs) > 1 else group[0])
        return out

    return VNode(
        name=name or nodes[0].name,
        kind=DIR,
        source_path=" + ".join(n.source_path for n in nodes),
        lister=lister,
    )


# -- globbing ----------------------------------------------------------------------------------------------
def expand_braces(pattern: str) -> list[str]:
    """``a.{x,y}`` -> ``[a.x, a.y]`` (one level per pass, recursively)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    out: list[str] = []
    for alt in m.group(1).split(","):
        out.extend(expand_braces(pattern[: m.start()] + alt + pattern[m.end() :]))
    return out


def _match(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())


@dataclass
class Match:
    node: VNode
    parts: tuple[str, ...]


MAX_FOLDER_DEPTH = 64  # Windows paths (260 characters by default) stop far sooner: deeper is a loop or hostile


def glob(root: VNode, pattern: str, *, errors: list[str] | None = None) -> Iterator[Match]:
    """Yield nodes under ``root`` matching a ``/``-separated, case-insensitive pattern.

    ``**`` matches any depth (files below it, not the directories themselves). Non-file entries
    that match (links, unsafe members, devices) are yielded too so the caller can record them.
    """
    for pat in expand_braces(pattern):
        segs = [s for s in pat.replace("\\", "/").split("/") if s]
        yield from _glob(root, segs, (), errors if errors is not None else [], set())


def _glob(node: VNode, segs: list[str], prefix: tuple[str, ...], errors: list[str], seen: set[int]) -> Iterator[Match]:
    if not segs:
        yield Match(node, prefix)
        return
    seg, rest = segs[0], segs[1:]
    if len(prefix) >= MAX_FOLDER_DEPTH and node.kind == DIR:
        # a folder that holds itself (a bind mount, a corrupt image index) would otherwise be walked forever
        why = f"nested {len(prefix)} folders deep (a loop?); not walked further"
        errors.append(f"{node.source_path}: cannot list: {why}")
        return
    try:
        kids = node.children()
    except OSError as exc:
        errors.append(f"{node.source_path}: cannot list: {exc}")
        return
    if seg == "**":
        if not rest:
            for kid in kids:
                if kid.kind == DIR:
                    yield from _glob(kid, ["**"], (*prefix, kid.name), errors, seen)
                else:
                    yield Match(kid, (*prefix, kid.name))
            return
        yield from _glob(node, rest, prefix, errors, seen)
        for kid in kids:
            if kid.kind == DIR:
                yield from _glob(kid, segs, (*prefix, kid.name), errors, seen)
        return
    literal = not any(ch in seg for ch in "*?[")
    for kid in kids:
        if (kid.name.casefold() == seg.casefold()) if literal else _match(kid.name, seg):
            if rest:
                if kid.kind == DIR:
                    yield from _glob(kid, rest, (*prefix, kid.name), errors, seen)
                elif kid.kind in (LINK, UNSAFE, CORRUPT):
                    yield Match(kid, (*prefix, kid.name))
            else:
                yield Match(kid, (*prefix, kid.name))


def resolve(root: VNode, parts: list[str] | tuple[str, ...]) -> VNode | None:
    """Walk literal parts case-insensitively."""
    node: VNode | None = root
    for p in parts:
        if node is None or node.kind != DIR:
            return None
        try:
            node = node.child(p)
        except OSError:
            return None
    return node
