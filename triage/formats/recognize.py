"""What a file is, from its bytes: one recogniser for loose files, container members and ``triage list``.

The signatures are data (``signatures/formats.yaml``); what a byte pattern cannot say (the shape of a JSON
event record, a log's header line, a PE header, ASP markers) is a small named probe here. The name of a file
only breaks ties (``ExSetup.exe`` is the Exchange build source, a raw memory image has no header) or, for
formats without a signature, is the only clue (then ``by == "name"``).

Reads at most :data:`HEAD` bytes from the start and :data:`TAIL` from the end of a file; compressed event
exports are sniffed through a bounded decompressor. Never raises on hostile bytes: an unreadable file is a
:class:`Recognition` with ``error`` set.
"""

from __future__ import annotations

import bz2
import codecs
import fnmatch
import functools
import json
import lzma
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from triage.formats import yamldoc
from triage.formats.eventjson import json_flavour, unwrap_export
from triage.indicators import server_pages

HEAD = 64 * 1024  # enough for a log header, a JSON record, a PE header, an MBR + GPT header
TAIL = 512  # a VHD footer
SNIFF_DECOMPRESSED = 64 * 1024  # how much of a compressed export is inflated to see its first record
EXAMINABLE_NONE = ("file",)  # kinds that alone say nothing was recognised
MEMORY_MIN = 1 << 20
PAGE = 4096


@dataclass(frozen=True)
class Recognition:
    """The verdict on one file: its format (None when nothing matched), the evidence kind and how it was decided."""

    format: str | None
    kind: str
    by: str  # content | name | none | error
    description: str = ""
    error: str = ""

    @property
    def container(self) -> bool:
        """A disk image or zip: opened as a source, its content collected."""
        return self.kind == "container"

    @property
    def examinable(self) -> bool:
        """Something an analyzer reads as evidence (not unknown bytes or plain text)."""
        return self.format is not None and self.by in ("content", "name")

    def as_extra(self) -> dict[str, str]:
        """What a manifest row records about the recognition."""
        out = {"format": self.format or "unknown", "recognised_by": self.by}
        if self.error:
            out["recognition_error"] = self.error
        return out


@dataclass(frozen=True)
class _Magic:
    at: int
    data: bytes


@dataclass(frozen=True)
class Format:
    """One entry of ``formats.yaml``."""

    name: str
    kind: str
    description: str
    magic: tuple[_Magic, ...] = ()
    tail: tuple[_Magic, ...] = ()
    probe: str | None = None
    names: tuple[str, ...] = ()
    only_names: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        how = []
        if self.magic:
            how.append("magic " + " | ".join(f"{m.data!r}@{m.at}" for m in self.magic))
        if self.tail:
            how.append("tail " + " | ".join(f"{m.data!r}@-{m.at}" for m in self.tail))
        if self.probe:
            how.append(f"probe {self.probe}")
        if self.only_names:
            how.append("name " + " ".join(self.only_names))
        return {"name": self.name, "kind": self.kind, "how": "; ".join(how), "description": self.description}


def _magics(entries: Any, origin: str) -> tuple[_Magic, ...]:
    out = []
    for m in entries or ():
        if "hex" in m:
            data = bytes.fromhex(str(m["hex"]))
        elif "bytes" in m:
            data = str(m["bytes"]).encode("latin-1")
        else:
            raise ValueError(f"{origin}: a magic entry needs 'bytes' or 'hex': {m!r}")
        out.append(_Magic(int(m.get("at", 0)), data))
    return tuple(out)


@functools.lru_cache(maxsize=4)
def load_formats(path: str | None = None) -> tuple[Format, ...]:
    """The format table (``signatures/formats.yaml`` unless ``path``); a malformed entry is a clear error."""
    if path is None:  # the installed signatures/ folder (not via triage.registry: that imports pandas)
        from importlib import resources

        path = str(resources.files("signatures").joinpath("formats.yaml"))
    with open(path, encoding="utf-8") as fh:
        doc = yamldoc.safe_load(fh)
    out: list[Format] = []
    for i, entry in enumerate((doc or {}).get("formats", [])):
        origin = f"{os.path.basename(path)} format #{i + 1} ({entry.get('name', '?')})"
        if not entry.get("name") or not entry.get("kind"):
            raise ValueError(f"{origin}: needs name and kind")
        probe = entry.get("probe")
        if probe is not None and probe not in PROBES:
            raise ValueError(f"{origin}: unknown probe {probe!r}; known: {', '.join(sorted(PROBES))}")
        fmt = Format(
            name=entry["name"],
            kind=entry["kind"],
            description=" ".join(str(entry.get("description", "")).split()),
            magic=_magics(entry.get("magic"), origin),
            tail=_magics(entry.get("tail"), origin),
            probe=probe,
            names=tuple(entry.get("names") or ()),
            only_names=tuple(entry.get("only_names") or ()),
        )
        if not (fmt.magic or fmt.tail or fmt.probe or fmt.only_names):
            raise ValueError(f"{origin}: says nothing about how to recognise it")
        out.append(fmt)
    return tuple(out)


def table() -> list[dict[str, Any]]:
    """The recogniser's table for ``triage list``."""
    return [f.describe() for f in load_formats()]


# -- probes -------------------------------------------------------------------------------------------------
@dataclass
class _Sample:
    head: bytes
    name: str  # lower-cased base name
    size: int | None
    tail: bytes
    read_at: Callable[[int, int], bytes] | None

    @functools.cached_property
    def text(self) -> str:
        return _decode_text(self.head)


def _decode_text(data: bytes) -> str:
    """Text of a head: UTF-8 (BOM or not) or UTF-16 (BOM, or NULs every other byte, as PowerShell 5 writes)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace")
    sample = data[:512]
    if len(sample) >= 4 and sample[1::2].count(0) > len(sample) // 4 and sample[0::2].count(0) < len(sample) // 8:
        return data[: len(data) // 2 * 2].decode("utf-16-le", "replace")
    return data.decode("utf-8", "replace")


def _is_text(data: bytes) -> bool:
    sample = data[:4096]
    if not sample:
        return False
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF8)):
        return True
    text = _decode_text(sample)
    bad = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\r\n\t\f") or ch == "\ufffd")
    return bad <= len(text) // 50


def _inflate_head(head: bytes) -> bytes | None:
    """The first bytes of a gzip/xz/bz2 stream, bounded (a bomb yields only SNIFF_DECOMPRESSED bytes)."""
    try:
        if head.startswith(b"\x1f\x8b"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, SNIFF_DECOMPRESSED)
        if head.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor().decompress(head, SNIFF_DECOMPRESSED)
        if head.startswith(b"BZh"):
            return bz2.BZ2Decompressor().decompress(head, SNIFF_DECOMPRESSED)
    except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError):
        return None
    return None


_EVENT_KEY = re.compile(r'"(winlog|EventID|EventId|EventCode|System|EventData|Channel|_source|result|_raw)"\s*:')


def _first_record(text: str) -> Any:
    """The first JSON value of a JSON document or JSON-lines file (the first element of an array)."""
    s = text.lstrip("\ufeff \t\r\n")
    if s.startswith("["):
        s = s[1:].lstrip()
    if not s.startswith("{"):
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(s)
        return value
    except (ValueError, RecursionError):
        return None


def event_record_shape(doc: Any) -> str | None:
    """Which event export a JSON record looks like (None when it is not an event record): the reader's own
    shapes (``triage.formats.eventjson``), inside any export envelope."""
    return next((f for item in unwrap_export(doc) if (f := json_flavour(item))), None)


def _probe_event_json(s: _Sample) -> bool:
    data = _inflate_head(s.head)
    if data is None:
        data = s.head
    text = _decode_text(data)
    if not text.lstrip("\ufeff \t\r\n").startswith(("{", "[")):
        return False
    record = _first_record(text)
    if record is not None:
        return event_record_shape(record) is not None
    # a first record longer than the sample: its keys still show what it is
    return len(set(_EVENT_KEY.findall(text[:SNIFF_DECOMPRESSED]))) >= 2


def _first_line(text: str) -> str:
    return text.lstrip("\ufeff").split("\n", 1)[0].strip()


_EXCHANGE_HEADERS = ("DateTime,RequestId,", "date-time,", "DateTime,Server", "DateTime,ClientIp")


def _probe_exchange_log(s: _Sample) -> bool:
    if not _is_text(s.head):
        return False
    text = s.text
    if text.lstrip("\ufeff").startswith("#Software: Microsoft Exchange"):
        return True
    return _first_line(text).startswith(_EXCHANGE_HEADERS) and text.count(",") > 10


# Test-ProxyLogon.ps1's output files (the testproxylogon_output analyzer parses them by the same names)
TPL_OUTPUT_NAME = re.compile(
    r"^(?P<computer>.+?)-(?P<what>Cve-2021-26855|Cve-2021-26857|Cve-2021-26858-DownloadPaths|Cve-2021-26858|"
    r"Cve-2021-27065-ResetVDir|Cve-2021-27065|LogAgeDays|other)\.(?P<ext>csv|log|txt)$",
    re.IGNORECASE,
)
_TPL_LOOSE_NAME = re.compile(r"^(cve-2021-\d{5}|.*proxylogon.*)\.csv$", re.IGNORECASE)


def _probe_test_proxylogon_csv(s: _Sample) -> bool:
    if not _is_text(s.head):
        return False
    line = _first_line(s.text)
    if line.startswith("#TYPE"):  # Export-Csv in Windows PowerShell 5 writes a type line first
        line = _first_line(s.text.lstrip("\ufeff").split("\n", 1)[-1])
    quoted_csv = line.startswith('"') and '","' in line
    if TPL_OUTPUT_NAME.match(s.name):
        return True  # text under one of the script's own output names (the .log files are copied log lines)
    if _TPL_LOOSE_NAME.match(s.name):
        return quoted_csv or "," in line
    return quoted_csv and all(col in line for col in ('"AnchorMailbox"', '"RoutingHint"'))


def _probe_iis_log(s: _Sample) -> bool:
    if not _is_text(s.head):
        return False
    text = s.text.lstrip("\ufeff")
    if text.startswith("#Software: Microsoft Internet Information Services"):
        return True
    head = text[:8192]
    return text.startswith("#") and "#Fields:" in head and ("cs-uri-stem" in head or "s-ip" in head)


def _probe_pe(s: _Sample) -> bool:
    if not s.head.startswith(b"MZ") or len(s.head) < 0x40:
        return False
    (e_lfanew,) = struct.unpack_from("<I", s.head, 0x3C)
    if e_lfanew + 4 <= len(s.head):
        return s.head[e_lfanew : e_lfanew + 4] == b"PE\x00\x00"
    if s.read_at is None or e_lfanew > (1 << 24):
        return False
    try:
        return s.read_at(e_lfanew, 4) == b"PE\x00\x00"
    except OSError:
        return False


_ASP = re.compile(
    r"<%@\s*(Page|WebHandler|WebService|Control|Master|Application|Import|Assembly)\b|<script[^>]*runat\s*=\s*[\"']?server"
    r"|<%\s*(eval|execute|response\.|request|Set |Dim |If |Function )|<%=|<%\s*\n",
    re.IGNORECASE,
)
SERVER_PAGE_EXTENSIONS = server_pages()  # the one list: signatures/indicators/exchange_web.yaml


def _probe_server_page(s: _Sample) -> bool:
    if not _is_text(s.head):
        return False
    if _ASP.search(s.text[:SNIFF_DECOMPRESSED]):
        return True
    return s.name.endswith(SERVER_PAGE_EXTENSIONS) and "<%" in s.text


def _probe_raw_memory(s: _Sample) -> bool:
    # no header to go by: a memory-like name, a size of whole pages, and not text
    if s.size is None or s.size < MEMORY_MIN or s.size % PAGE:
        return False
    if not any(fnmatch.fnmatchcase(s.name, p) for p in ("*.raw", "*.mem", "*.vmem", "*.bin", "*.lime", "*.dmp")):
        return False
    return not _is_text(s.head)


def _probe_vmware_vmem(s: _Sample) -> bool:
    # a .vmem has no header either: the raw memory rules, and the name
    return s.name.endswith(".vmem") and _probe_raw_memory(s)


def _probe_crash_dump_bitmap(s: _Sample) -> bool:
    # a crash dump whose DumpType says bitmap and whose summary header (after the dump header pages) says so too
    head = s.head
    if head[:8] == b"PAGEDU64":
        type_at, summary_at = 3992, 0x2000
    elif head[:8] == b"PAGEDUMP":
        type_at, summary_at = 3976, 0x1000
    else:
        return False
    if len(head) < summary_at + 8 or struct.unpack_from("<I", head, type_at)[0] not in (5, 6, 7, 8):
        return False
    return head[summary_at + 4 : summary_at + 8] == b"DUMP"


def _probe_elf_core(s: _Sample) -> bool:
    # ELF64 little-endian with e_type ET_CORE: a program's ELF binary is not memory
    head = s.head
    return len(head) >= 64 and head[:5] == b"\x7fELF\x02" and struct.unpack_from("<H", head, 16)[0] == 4


def _probe_raw_disk(s: _Sample) -> bool:
    head = s.head
    if len(head) < 1024:
        return False
    if head[3:11] == b"NTFS    " and head[510:512] == b"\x55\xaa":
        return True  # a bare NTFS volume
    if head[510:512] != b"\x55\xaa":
        return False
    if head[512:520] == b"EFI PART":
        return True
    for i in range(4):
        entry = head[446 + 16 * i : 462 + 16 * i]
        status, ptype = entry[0], entry[4]
        (lba, count) = struct.unpack_from("<II", entry, 8)
        if status in (0, 0x80) and ptype in (0x07, 0xEE, 0x0C, 0x0B, 0x05, 0x0F, 0x27) and lba and count:
            return True
    return False


PROBES: dict[str, Callable[[_Sample], bool]] = {
    "event_json": _probe_event_json,
    "exchange_log": _probe_exchange_log,
    "test_proxylogon_csv": _probe_test_proxylogon_csv,
    "iis_log": _probe_iis_log,
    "pe": _probe_pe,
    "server_page": _probe_server_page,
    "raw_memory": _probe_raw_memory,
    "vmware_vmem": _probe_vmware_vmem,
    "crash_dump_bitmap": _probe_crash_dump_bitmap,
    "elf_core": _probe_elf_core,
    "raw_disk": _probe_raw_disk,
}


NAMED_PROBES = ("raw_memory", "vmware_vmem")  # formats without a header: decided by name and size


# -- name rules: kinds within a format, and the old name-only filing for files without a signature ------------
HIVE_NAMES = {"system", "software", "sam", "security", "default", "ntuser.dat", "usrclass.dat", "amcache.hve"}


def _refine_kind(fmt: Format, name: str) -> str:
    if fmt.name == "pe":
        if name == "exsetup.exe":
            return "exchange_binary"
        if name.startswith("app_web_") and name.endswith(".dll"):
            return "web_file"
    return fmt.kind


def kind_by_name(name: str) -> str:
    """A file's kind from its name alone, as an analyst would file it (the fallback for unrecognised bytes)."""
    name = name.lower()
    ext = os.path.splitext(name)[1]
    if ext == ".evtx":
        return "evtx"
    if name.endswith((".jsonl", ".ndjson", ".json.xz", ".json.gz", ".jsonl.gz", ".jsonl.xz", ".json.bz2")):
        return "event_json"
    if name in HIVE_NAMES or ext == ".hve" or (name.endswith(".dat") and name.startswith(("ntuser", "usrclass"))):
        return "registry_hive"
    if ext in (".log1", ".log2") and name.split(".")[0] in {n.split(".")[0] for n in HIVE_NAMES}:
        return "registry_hive"
    if ext in (".raw", ".mem", ".vmem", ".dmp", ".lime", ".bin", ".vmss", ".vmsn"):
        return "memory_image"
    if re.match(r"^(u_)?(ex|nc|in)\d{6,8}(_x)?(_\d+)?\.log$", name):  # W3C/NCSA/IIS naming of IIS logs
        return "iis_log"
    if name.startswith(("httpproxy_", "ecpserver", "oabgeneratorlog")) or (ext == ".log" and "proxy" in name):
        return "exchange_log"
    if ext in (".aspx", ".ashx", ".asmx", ".asp", ".asax", ".config", ".js", ".css", ".htm", ".html", ".dll"):
        return "web_file"
    if ext in (".zip", ".7z", ".rar"):
        return "suspicious_file"
    return "file"


# -- the recogniser -----------------------------------------------------------------------------------------
def _magic_hit(magics: tuple[_Magic, ...], data: bytes, *, from_end: bool = False) -> bool:
    for m in magics:
        if from_end:
            start = len(data) - m.at
            if start >= 0 and data[start : start + len(m.data)] == m.data:
                return True
        elif data[m.at : m.at + len(m.data)] == m.data:
            return True
    return False


def recognize_bytes(
    head: bytes,
    *,
    name: str = "",
    size: int | None = None,
    tail: bytes = b"",
    read_at: Callable[[int, int], bytes] | None = None,
) -> Recognition:
    """Decide what a file is from its first bytes (``head``), its last (``tail``), its size and name."""
    base = os.path.basename(name.replace("\\", "/")).lower()
    sample = _Sample(head, base, size, tail, read_at)
    formats = load_formats()
    error = ""
    for fmt in formats:
        try:
            hit = (
                _magic_hit(fmt.magic, head)
                or (bool(tail) and _magic_hit(fmt.tail, tail, from_end=True))
                or (fmt.probe is not None and PROBES[fmt.probe](sample))
            )
        except Exception as exc:  # a probe must never cost the file: hostile bytes are normal
            hit = False
            error = error or f"{fmt.name} probe: {type(exc).__name__}: {exc}"
        if hit:
            by = "name" if fmt.probe in NAMED_PROBES else "content"  # no header: the name and size decided
            return Recognition(fmt.name, _refine_kind(fmt, base), by, fmt.description, error=error)
    for fmt in formats:
        if fmt.only_names and any(fnmatch.fnmatchcase(base, p) for p in fmt.only_names):
            return Recognition(fmt.name, fmt.kind, "name", fmt.description)
    kind = kind_by_name(base)
    if kind in ("event_json", "registry_hive", "evtx", "iis_log", "exchange_log") and size:
        # the name promises a format the bytes do not show: filed by name, but not counted as recognised
        return Recognition(None, kind, "none", "named like one but its bytes do not show it", error=error)
    return Recognition(None, kind if kind != "memory_image" else "file", "none", error=error)


def recognize_stream(fh: BinaryIO, *, name: str = "", size: int | None = None) -> Recognition:
    """Recognise an open, readable file object (seekable ones also give a tail and random reads)."""
    try:
        head = fh.read(HEAD) or b""
        tail = b""
        read_at = None
        seekable = False
        try:
            seekable = bool(fh.seekable())
        except (OSError, ValueError):
            seekable = False
        if seekable:
            if size is None:
                size = fh.seek(0, os.SEEK_END)
            if size > len(head):
                fh.seek(max(0, size - TAIL))
                tail = fh.read(TAIL)
            else:
                tail = head[-TAIL:]

            def read_at(offset: int, length: int) -> bytes:
                fh.seek(offset)
                return fh.read(length)

        else:
            size = len(head) if size is None else size
            tail = head[-TAIL:] if size <= len(head) else b""
    except (OSError, ValueError, EOFError, RuntimeError) as exc:
        return Recognition(None, kind_by_name(name), "error", error=f"{type(exc).__name__}: {exc}")
    return recognize_bytes(head, name=name, size=size, tail=tail, read_at=read_at)


def recognize_path(path: str | os.PathLike[str]) -> Recognition:
    """Recognise a file on disk, read through an O_NOATIME handle (its access time stays as it was)."""
    from triage.hashing import open_source

    name = os.path.basename(os.fspath(path))
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):  # opening a fifo would block: never read what is not a file
            return Recognition(None, kind_by_name(name), "error", error="not a regular file")
        with open_source(path) as fh:
            return recognize_stream(fh, name=name, size=os.fstat(fh.fileno()).st_size)
    except OSError as exc:
        return Recognition(None, kind_by_name(name), "error", error=f"{type(exc).__name__}: {exc}")
