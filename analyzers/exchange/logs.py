"""Streaming readers of Exchange (HttpProxy, ECP Server, OAB generator) and IIS W3C text logs.

Files are read in blocks of whole lines (never all at once). Header lines (``#Software``, ``#Version``,
``#Log-type``, ``#Date``, ``#Fields``) may appear anywhere: a ``#Fields`` line switches the column
list for the lines after it, so logs that change layout after an upgrade or a restart read right.
A file without ``#Fields`` takes its first line as the header, as Test-ProxyLogon's ``Import-Csv``
does; when that line is plainly data, the log type's default field list is assumed and a warning
says so. Bytes are decoded as UTF-8 with replacement (a UTF-8 BOM is dropped, a UTF-16 BOM honoured),
lines end in CRLF or LF. A line whose field count does not fit its header is kept (padded or cut)
and counted as malformed; a line without a single delimiter is dropped and counted. Nothing in a
log's content raises.

Two ways to read: :meth:`LogReader.frames` parses every line (pyarrow's CSV reader on each run of
data lines, with an exact per-line fallback whenever line numbers could not be trusted), and
:meth:`LogReader.matching_frames` / :meth:`LogReader.matching_lines` parse only the lines holding
one of a few literals, found case-insensitively in the raw bytes: the ``ServerInfo~`` pre-filter
of Test-ProxyLogon, done per line instead of per file.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from triage.lazyimport import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
else:  # loaded on first use: a host whose evidence gives this module no work skips without them
    np = lazy_module("numpy")
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pacsv = lazy_module("pyarrow.csv")


HTTPPROXY = "httpproxy"
ECP = "ecp"
OAB = "oab"
IIS = "iis"
UNKNOWN = "unknown"

BLOCK_SIZE = 16 << 20
MAX_LINE = 8 << 20  # a "line" longer than this is garbage, not a log record
MAX_WARNINGS = 50
SMALL_RUN = 256  # runs of at most this many lines skip pyarrow's per-call overhead (about 4 ms)
MERGE_ROWS = 65_536  # short runs are handed out together, up to this many rows per frame

# The HttpProxy field list of Exchange 2016 CU19 / 2019 CU8 (the modern layout); older builds have fewer.
HTTPPROXY_FIELDS: tuple[str, ...] = (
    "DateTime", "RequestId", "MajorVersion", "MinorVersion", "BuildVersion", "RevisionVersion", "ClientRequestId",
    "Protocol", "UrlHost", "UrlStem", "ProtocolAction", "AuthenticationType", "IsAuthenticated", "AuthenticatedUser",
    "Organization", "AnchorMailbox", "UserAgent", "ClientIpAddress", "ServerHostName", "HttpStatus", "BackEndStatus",
    "ErrorCode", "Method", "ProxyAction", "TargetServer", "TargetServerVersion", "RoutingType", "RoutingHint",
    "BackEndCookie", "ServerLocatorHost", "ServerLocatorLatency", "RequestBytes", "ResponseBytes",
    "TargetOutstandingRequests", "AuthModulePerfContext", "HttpPipelineLatency", "CalculateTargetBackEndLatency",
    "GlsLatencyBreakup", "TotalGlsLatency", "AccountForestLatencyBreakup", "TotalAccountForestLatency",
    "ResourceForestLatencyBreakup", "TotalResourceForestLatency", "ADLatency", "SharedCacheLatencyBreakup",
    "TotalSharedCacheLatency", "ActivityContextLifeTime", "ModuleToHandlerSwitchingLatency", "ClientReqStreamLatency",
    "BackendReqInitLatency", "BackendReqStreamLatency", "BackendProcessingLatency", "BackendRespInitLatency",
    "BackendRespStreamLatency", "ClientRespStreamLatency", "KerberosAuthHeaderLatency", "HandlerCompletionLatency",
    "RequestHandlerLatency", "HandlerToModuleSwitchingLatency", "ProxyTime", "CoreLatency", "RoutingLatency",
    "HttpProxyOverhead", "TotalRequestTime", "UrlQuery", "BackEndGenericInfo", "GenericInfo", "GenericErrors",
    "EdgeTraceId", "DatabaseGuid", "UserADObjectGuid", "PartitionEndpointLookupLatency", "RoutingStatus",
)  # fmt: skip
ECP_FIELDS: tuple[str, ...] = ("TimeStamp", "ServerName", "EventId", "EventData")
IIS_FIELDS: tuple[str, ...] = (
    "date", "time", "s-ip", "cs-method", "cs-uri-stem", "cs-uri-query", "s-port", "cs-username", "c-ip",
    "cs(User-Agent)", "cs(Referer)", "sc-status", "sc-substatus", "sc-win32-status", "time-taken",
)  # fmt: skip
IIS_EXTRA = ("s-sitename", "s-computername", "cs-version", "cs-host", "cs(Cookie)", "sc-bytes", "cs-bytes",
             "x-forwarded-for", "OriginalIP")  # fmt: skip
IIS_KNOWN = frozenset(f.lower() for f in (*IIS_FIELDS, *IIS_EXTRA))
# each log type's field names as written by the server: a header spelling them in another case
# (Test-ProxyLogon's "ClientIPAddress", an analyst's "clientipaddress") lands in the same column
CANONICAL = {
    HTTPPROXY: {f.lower(): f for f in HTTPPROXY_FIELDS},
    ECP: {f.lower(): f for f in (*ECP_FIELDS, "DateTime")},
    IIS: {f.lower(): f for f in (*IIS_FIELDS, *IIS_EXTRA)},
}
DEFAULT_FIELDS = {HTTPPROXY: HTTPPROXY_FIELDS, ECP: ECP_FIELDS, IIS: IIS_FIELDS}
KNOWN_FIELDS = {
    HTTPPROXY: frozenset(f.lower() for f in HTTPPROXY_FIELDS),
    ECP: frozenset(f.lower() for f in (*ECP_FIELDS, "DateTime")),
    IIS: IIS_KNOWN,
}

_LOGGING = re.compile(r"^(.*?)/Logging/(HttpProxy|ECP/Server|OABGeneratorLog)(/|$)", re.IGNORECASE)
_HTTPPROXY_DIR = re.compile(r"/Logging/HttpProxy/([^/]+)/", re.IGNORECASE)
_IIS_DIR = re.compile(r"/LogFiles/(W3SVC\d+|[^/]+)/[^/]*$", re.IGNORECASE)


# -- paths ----------------------------------------------------------------------------------------
def log_type(logical_path: str, kind: str = "") -> str:
    """Which log a file is, from its path on the source host (``/``-separated) and evidence kind."""
    p = logical_path.replace("\\", "/")
    m = _LOGGING.search(p)
    if m:
        sub = m.group(2).lower()
        return {"httpproxy": HTTPPROXY, "ecp/server": ECP, "oabgeneratorlog": OAB}[sub]
    if kind == "iis_log" or re.search(r"/inetpub/logs/LogFiles/", p, re.IGNORECASE):
        return IIS
    return UNKNOWN


def sniff_log_type(path: str | Path) -> str:
    """The log type from a file's header lines, for logs stored without their original folders."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8", "replace").lower()
    except OSError:
        return UNKNOWN
    if "#log-type: httpproxy" in head or "anchormailbox" in head:
        return HTTPPROXY
    if "#log-type: ecp server" in head:
        return ECP
    if "#log-type: oab generator" in head:
        return OAB
    if "#software: microsoft internet information services" in head or "#fields: date time" in head:
        return IIS
    return UNKNOWN


def install_root(logical_path: str) -> str | None:
    r"""The Exchange install folder a log lives under, Windows style with a trailing backslash.

    ``C:/Program Files/Microsoft/Exchange Server/V15/Logging/OABGeneratorLog/x.LOG`` gives
    ``C:\Program Files\Microsoft\Exchange Server\V15\`` (what ``MsiInstallPath`` holds).
    """
    m = _LOGGING.search(logical_path.replace("\\", "/"))
    if not m:
        return None
    return m.group(1).replace("/", "\\") + "\\"


def httpproxy_folder(logical_path: str) -> str:
    """The protocol folder of an HttpProxy log (``Ecp``, ``Owa`` ...), as written on disk."""
    m = _HTTPPROXY_DIR.search(logical_path.replace("\\", "/"))
    return m.group(1) if m else ""


def iis_site(logical_path: str) -> str:
    """The IIS log folder (``W3SVC1`` ...) of an IIS log."""
    m = _IIS_DIR.search(logical_path.replace("\\", "/"))
    return m.group(1) if m else ""


# -- statistics -----------------------------------------------------------------------------------
@dataclass
class ParseStats:
    """What reading one log gave; kept as data (unit warnings, coverage attributes), never raised."""

    path: str = ""
    log_type: str = ""
    bytes: int = 0
    lines: int = 0  # physical lines, headers included
    header_lines: int = 0
    empty_lines: int = 0
    rows: int = 0  # rows handed out (all of them for frames(), the matches for matching_*)
    malformed_lines: int = 0  # ragged rows (kept) + dropped lines
    ragged_rows: int = 0
    dropped_lines: int = 0
    replaced_chars: int = 0  # undecodable bytes replaced by U+FFFD
    encoding: str = "utf-8"
    bom: bool = False
    header_source: str = ""  # '#Fields' | 'first line' | 'assumed default' | 'none'
    field_sets: list[list[str]] = field(default_factory=list)
    date_headers: list[str] = field(default_factory=list)
    slow_segments: int = 0  # runs of lines that needed the exact per-line parser
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Keep a warning (the first ``MAX_WARNINGS`` of them)."""
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append("(further warnings not recorded)")

    def malformed(self, line_no: int | None, why: str, text: str = "", dropped: bool = False) -> None:
        """Count a line whose fields do not fit its header (kept) or that has none (dropped)."""
        self.malformed_lines += 1
        if dropped:
            self.dropped_lines += 1
        else:
            self.ragged_rows += 1
        where = f"line {line_no}: " if line_no else ""
        self.warn(where + why + (f": {text[:120]!r}" if text else ""))

    def coverage(self) -> dict[str, Any]:
        """The counts for a finding's attributes."""
        return {
            "bytes": self.bytes,
            "lines": self.lines,
            "header_lines": self.header_lines,
            "empty_lines": self.empty_lines,
            "rows": self.rows,
            "malformed_lines": self.malformed_lines,
            "ragged_rows": self.ragged_rows,
            "dropped_lines": self.dropped_lines,
            "replaced_chars": self.replaced_chars,
            "encoding": self.encoding,
            "bom": self.bom,
            "header_source": self.header_source,
            "field_sets": len(self.field_sets),
            "fields": len(self.field_sets[-1]) if self.field_sets else 0,
            "date_headers": self.date_headers[:5],
        }


# -- header state ---------------------------------------------------------------------------------
def _delimiter(logtype: str) -> str:
    return " " if logtype == IIS else ","


def _unique(names: Sequence[str], logtype: str = "") -> tuple[str, ...]:
    canonical = CANONICAL.get(logtype, {})
    out: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        name = name.strip() or f"field{i + 1}"
        name = canonical.get(name.lower(), name)
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        out.append(name)
    return tuple(out)


def split_fields(text: str, logtype: str) -> list[str]:
    """One data line into fields: CSV with double-quote quoting, or IIS's space separated values."""
    if logtype == IIS:
        return text.split(" ")
    try:
        return next(csv.reader((text,), strict=False))
    except (csv.Error, StopIteration):
        return [text]


@dataclass
class HeaderState:
    """The header lines seen so far in one file: the current field list and the #Date values."""

    logtype: str
    stats: ParseStats
    fields: tuple[str, ...] | None = None
    log_type_header: str = ""

    def header_line(self, line_no: int, raw: bytes) -> None:
        """Take in one ``#`` line: ``#Fields`` sets the field list, ``#Date`` is remembered."""
        self.stats.header_lines += 1
        text = raw.decode("utf-8", "replace").strip().lstrip("\ufeff")
        key, _, value = text.partition(":")
        key = key.lower()
        value = value.strip()
        if key == "#fields":
            names = value.split() if (self.logtype == IIS or ("," not in value and " " in value)) else value.split(",")
            fields = _unique(names, self.logtype)
            if not fields:
                self.stats.warn(f"line {line_no}: empty #Fields header")
                return
            if self.fields is not None and fields != self.fields:
                self.stats.warn(f"line {line_no}: field list changes ({len(self.fields)} -> {len(fields)} fields)")
            self.fields = fields
            self.stats.header_source = self.stats.header_source or "#Fields"
            if list(fields) not in self.stats.field_sets:
                self.stats.field_sets.append(list(fields))
        elif key == "#date":
            if len(self.stats.date_headers) < 1000:
                self.stats.date_headers.append(value)
        elif key == "#log-type":
            self.log_type_header = value

    def first_data_line(self, line_no: int, raw: bytes) -> bool:
        """Decide the header of a file without ``#Fields``; True when this line was the header."""
        text = raw.decode("utf-8", "replace").rstrip("\r\n").lstrip("\ufeff")
        values = split_fields(text, self.logtype)
        known = KNOWN_FIELDS.get(self.logtype)
        if known is not None:
            is_header = sum(v.strip().lower() in known for v in values) >= 2
        else:
            is_header = len(values) >= 2 and all(re.fullmatch(r"[A-Za-z][\w().\-]*", v.strip()) for v in values)
        if is_header:
            self.fields = _unique(values, self.logtype)
            self.stats.header_source = "first line"
            self.stats.warn(f"no #Fields header; line {line_no} taken as the header (as Import-Csv does)")
        elif self.logtype in DEFAULT_FIELDS:
            self.fields = DEFAULT_FIELDS[self.logtype]
            self.stats.header_source = "assumed default"
            self.stats.warn(
                f"no header at all; the default {self.logtype} field list ({len(self.fields)} fields) is "
                "assumed (Test-ProxyLogon would have read line 1 as the header)"
            )
        else:
            self.stats.header_source = "none"
            return False
        self.stats.field_sets.append(list(self.fields))
        return is_header


# -- reading --------------------------------------------------------------------------------------
def _raw_chunks(path: Path, stats: ParseStats, block_size: int) -> Iterator[bytes]:
    """The file as UTF-8 bytes chunks (BOMs handled; UTF-16 transcoded)."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head.startswith(codecs.BOM_UTF8):
            stats.bom, start = True, 3
        elif head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            stats.bom = True
            stats.encoding = "utf-16-le" if head.startswith(codecs.BOM_UTF16_LE) else "utf-16-be"
            fh.seek(2)
            dec = codecs.getincrementaldecoder(stats.encoding)(errors="replace")
            while chunk := fh.read(block_size):
                stats.bytes += len(chunk)
                text = dec.decode(chunk)
                stats.replaced_chars += text.count("\ufffd")
                yield text.encode("utf-8")
            stats.bytes += 2
            yield dec.decode(b"", final=True).encode("utf-8")
            return
        else:
            start = 0
        fh.seek(start)
        stats.bytes += start
        while chunk := fh.read(block_size):
            stats.bytes += len(chunk)
            yield chunk


def iter_blocks(
    path: Path, stats: ParseStats, block_size: int = BLOCK_SIZE, count: bool = True
) -> Iterator[tuple[int, bytes, int]]:
    """``(number of the first line, bytes, number of lines)`` for runs of whole lines.

    Lines longer than ``MAX_LINE`` are dropped (and counted as malformed). With ``count=False`` the
    caller counts lines itself: the first item is then the number of lines dropped just before the
    block and the last is 0.
    """
    line_no, dropped = 1, 0
    carry = b""
    skipping = False  # inside an overlong line: drop bytes up to its end
    for chunk in _raw_chunks(path, stats, block_size):
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                continue
            chunk, skipping = chunk[nl + 1 :], False
            stats.lines += 1
            line_no += 1
            dropped += 1
        buf = carry + chunk if carry else chunk
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
            if len(carry) > MAX_LINE:
                stats.malformed(line_no if count else None, f"line longer than {MAX_LINE} bytes dropped", dropped=True)
                carry, skipping = b"", True
            continue
        block, carry = buf[: cut + 1], buf[cut + 1 :]
        n = block.count(b"\n") if count else 0
        stats.lines += n
        yield (line_no if count else dropped), block, n
        line_no, dropped = line_no + n, 0
    if carry:
        stats.lines += 1 if count else 0
        yield (line_no if count else dropped), carry, 1 if count else 0


def _header_starts(block: bytes) -> list[int]:
    """Offsets of lines starting with '#' (found with memchr: '#' is rare in data lines)."""
    out = []
    i = block.find(b"#")
    while i >= 0:
        if i == 0 or block[i - 1] == 10:
            out.append(i)
        i = block.find(b"#", i + 1)
    return out


def _segments(first: int, block: bytes, n_block: int) -> Iterator[tuple[str, int, bytes, int]]:
    """Split a block into header lines and runs of data lines: ``(kind, first line, bytes, lines)``."""
    heads = _header_starts(block)
    if not heads:
        yield "data", first, block, n_block
        return
    pos, line = 0, first
    size = len(block)
    for h in heads:
        if h > pos:  # data lines before this header
            seg = block[pos:h]
            n = seg.count(b"\n")
            yield "data", line, seg, n
            line += n
        end = block.find(b"\n", h)
        end = size if end < 0 else end + 1
        yield "header", line, block[h:end], 1
        line += 1
        pos = end
    if pos < size:  # the rest of the block: its line count follows from the block's, no recount
        yield "data", line, block[pos:], first + n_block - line


def needle_pattern(needles: Sequence[bytes]) -> str:
    """One RE2 alternation matching any needle in raw log bytes, whatever bytes the needles hold.

    Attacker-chosen values (a web shell ``shéll.aspx``, a client address with odd bytes) become
    needles, so nothing here assumes ASCII: every byte outside printable ASCII is written ``\\xNN``
    (Arrow matches binary data byte by byte). ``ignore_case`` folds ASCII letters only, so a needle
    that decodes as UTF-8 also goes in lower and upper case (``shéll`` finds ``SHÉLL``).
    """
    variants: set[bytes] = set()
    for n in needles:
        variants.add(n)
        try:
            text = n.decode("utf-8")
        except UnicodeDecodeError:
            continue
        variants.update((text.lower().encode("utf-8"), text.upper().encode("utf-8")))
    alts = []
    for v in sorted(variants):
        alts.append("".join(re.escape(chr(b)) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in v))
    return "|".join(alts) if alts else "$.^"  # no needle: a pattern that never matches


def _lines(seg: bytes) -> list[bytes]:
    lines = seg.split(b"\n")
    if seg.endswith(b"\n"):
        lines.pop()
    return lines


def _decode(raw: bytes, stats: ParseStats) -> str:
    text = raw.decode("utf-8", "replace")
    if "\ufffd" in text:
        stats.replaced_chars += text.count("\ufffd") - raw.count("\ufffd".encode())
    return text.rstrip("\r")


def _rows_frame(chunks: Sequence[tuple[list[str], list[list[str]], list[int]]]) -> pd.DataFrame:
    """One frame from split rows of one or more field lists (a column a chunk lacks is missing there)."""
    names = list(dict.fromkeys(c for cols, _, _ in chunks for c in cols))
    data: dict[str, list[str | None]] = {c: [] for c in names}
    for cols, rows, _ in chunks:
        pos = {c: i for i, c in enumerate(cols)}
        for c in names:
            i = pos.get(c)
            data[c].extend([r[i] for r in rows] if i is not None else [None] * len(rows))
    df = pd.DataFrame({c: pd.Series(v, dtype="str") for c, v in data.items()})
    df["_line"] = np.array([n for _, _, nums in chunks for n in nums], dtype="int64")
    return df


class LogReader:
    """Reads one Exchange or IIS log; see the module docstring for what it tolerates."""

    def __init__(
        self, path: str | Path, logtype: str, stats: ParseStats | None = None, block_size: int = BLOCK_SIZE
    ) -> None:
        self.path = Path(path)
        self.logtype = logtype
        self.stats = stats or ParseStats(path=str(path), log_type=logtype)
        self.stats.log_type = self.stats.log_type or logtype
        self.block_size = block_size
        self.header = HeaderState(logtype, self.stats)
        self._decided = False
        self._placeholders = 0  # header lines standing as empty lines in a merged run (not empty lines)

    def _settle_placeholders(self) -> None:
        """Take back the header lines a parse of a merged run counted as empty lines."""
        self.stats.empty_lines = max(0, self.stats.empty_lines - self._placeholders)
        self._placeholders = 0

    # the shared walk: header lines update the state, data runs are handed out with their field list
    def _data(self) -> Iterator[tuple[int, bytes, int, tuple[str, ...] | None]]:
        """Runs of data lines ``(first line, bytes, number of lines, field list)``.

        Header lines update the state. A header that leaves the field list as it was (IIS repeats
        ``#Software ... #Fields`` at every restart) does not end a run: it stands in the run as an
        empty line, so line numbers stay exact and one parse covers thousands of such blocks.
        """
        pending: list[bytes] = []
        p_first, p_lines, p_bytes, p_blank = 0, 0, 0, 0
        p_fields: tuple[str, ...] | None = None

        def flush() -> Iterator[tuple[int, bytes, int, tuple[str, ...] | None]]:
            nonlocal pending, p_lines, p_bytes, p_blank
            if pending:
                seg = b"".join(pending)
                self._placeholders += p_blank
                yield p_first, seg, p_lines, p_fields
            pending, p_lines, p_bytes, p_blank = [], 0, 0, 0

        for first, block, n_block in iter_blocks(self.path, self.stats, self.block_size):
            for kind, line_no, seg, n in _segments(first, block, n_block):
                if kind == "header":
                    before = self.header.fields
                    self.header.header_line(line_no, seg)
                    if pending and self.header.fields == before and p_first + p_lines == line_no:
                        pending.append(b"\n")  # runs before a header end with a newline
                        p_lines += 1
                        p_blank += 1
                    else:
                        yield from flush()
                    continue
                if not self._decided and self.header.fields is None and self.logtype in DEFAULT_FIELDS:
                    # the first data line of a file without #Fields: header or data?
                    stripped = seg.lstrip(b"\r\n")
                    skipped = seg[: len(seg) - len(stripped)].count(b"\n")
                    if not stripped:
                        self.stats.empty_lines += skipped
                        continue
                    self._decided = True
                    end = stripped.find(b"\n")
                    first_line = stripped if end < 0 else stripped[: end + 1]
                    if self.header.first_data_line(line_no + skipped, first_line):
                        self.stats.empty_lines += skipped
                        seg, line_no, n = stripped[len(first_line) :], line_no + skipped + 1, n - skipped - 1
                        if not seg:
                            continue
                self._decided = True
                if pending and (p_fields != self.header.fields or p_first + p_lines != line_no):
                    yield from flush()
                if not pending:
                    p_first, p_fields = line_no, self.header.fields
                pending.append(seg)
                p_lines += n
                p_bytes += len(seg)
                if p_bytes >= self.block_size:
                    yield from flush()
        yield from flush()

    # -- full parse -------------------------------------------------------------------------------
    def frames(self, columns: Iterable[str] | None = None) -> Iterator[pd.DataFrame]:
        """Every data row, as frames of string columns (the file's field names) plus ``_line``.

        ``columns`` limits the columns converted (faster); absent ones are simply not in the frame.
        A run of lines under one field list becomes one frame (at most one block), so memory stays
        bounded. Short runs (a log whose field list keeps changing) are parsed line by line and
        handed out together, up to ``MERGE_ROWS`` rows per frame: a column a run lacks is then
        missing (NaN) in its rows.
        """
        wanted = None if columns is None else list(dict.fromkeys(columns))
        small: list[tuple[list[str], list[list[str]], list[int]]] = []
        small_rows = 0
        for line_no, seg, n, fields in self._data():
            if fields is not None and n <= SMALL_RUN:
                include = None if wanted is None else [c for c in wanted if c in fields] or [fields[0]]
                chunk = self._split_lines([(line_no + i, raw) for i, raw in enumerate(_lines(seg))], fields, include)
                self._settle_placeholders()
                small.append(chunk)
                small_rows += len(chunk[2])
                if small_rows >= MERGE_ROWS:
                    yield self._merged(small)
                    small, small_rows = [], 0
                continue
            if small_rows:  # keep the order of rows
                yield self._merged(small)
            small, small_rows = [], 0
            # OAB and unknown logs without #Fields come out as raw lines
            df = self._raw_frame(line_no, seg) if fields is None else self._parse(line_no, seg, n, fields, wanted)
            self._settle_placeholders()
            if len(df):
                self.stats.rows += len(df)
                yield df
        if small_rows:
            yield self._merged(small)

    def _merged(self, chunks: list[tuple[list[str], list[list[str]], list[int]]]) -> pd.DataFrame:
        df = _rows_frame(chunks)
        self.stats.rows += len(df)
        return df

    def _raw_frame(self, first: int, seg: bytes) -> pd.DataFrame:
        nums, texts = [], []
        for i, raw in enumerate(_lines(seg)):
            if raw in (b"", b"\r"):
                self.stats.empty_lines += 1
                continue
            nums.append(first + i)
            texts.append(_decode(raw, self.stats))
        return pd.DataFrame({"Line": pd.Series(texts, dtype="str"), "_line": np.array(nums, dtype="int64")})

    def _parse(
        self, first: int, seg: bytes, n_phys: int, fields: tuple[str, ...], wanted: list[str] | None
    ) -> pd.DataFrame:
        include = None if wanted is None else [c for c in wanted if c in fields] or [fields[0]]
        try:
            fast = self._parse_fast(first, seg, n_phys, fields, include)
        except (pa.ArrowInvalid, ValueError) as exc:
            if "UTF8" in str(exc) or "utf8" in str(exc).lower():
                seg = self._sanitize(seg)
                try:
                    fast = self._parse_fast(first, seg, n_phys, fields, include)
                except (pa.ArrowInvalid, ValueError):
                    fast = None
            else:
                fast = None
        if fast is not None:
            return fast
        self.stats.slow_segments += 1
        lines = [(first + i, raw) for i, raw in enumerate(_lines(seg))]
        return self._parse_lines(lines, fields, include)

    def _sanitize(self, seg: bytes) -> bytes:
        text = seg.decode("utf-8", "replace")
        self.stats.replaced_chars += text.count("\ufffd") - seg.count("\ufffd".encode())
        return text.encode("utf-8")

    def _parse_fast(
        self, first: int, seg: bytes, n_phys: int, fields: tuple[str, ...], include: list[str] | None
    ) -> pd.DataFrame | None:
        """pyarrow over a run of lines; None when rows cannot be tied to line numbers exactly."""
        invalid: list[tuple[int | None, str]] = []

        def on_invalid(row: Any) -> str:
            invalid.append((row.number, row.text))
            return "skip"

        quoting = self.logtype != IIS
        table = pacsv.read_csv(
            io.BytesIO(seg),
            read_options=pacsv.ReadOptions(column_names=list(fields), use_threads=False, block_size=len(seg) + 1),
            parse_options=pacsv.ParseOptions(
                delimiter=_delimiter(self.logtype),
                quote_char='"' if quoting else False,
                double_quote=True,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=True,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={f: pa.string() for f in fields},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                include_columns=include,
            ),
        )
        if any(num is None for num, _ in invalid):
            return None
        extra = [text.count("\n") for _, text in invalid]
        parsed = table.num_rows + len(invalid) + sum(extra)
        # pyarrow skips empty lines: only look for them when the counts say some were skipped
        empty = _empty_line_indices(seg) if parsed != n_phys else np.array([], dtype="int64")
        if parsed != n_phys - len(empty):
            return None  # a quoted value spanning lines, or a bare CR: use the exact per-line parser
        nonempty = np.setdiff1d(np.arange(n_phys), empty) if len(empty) else np.arange(n_phys)
        self.stats.empty_lines += len(empty)
        total = table.num_rows + len(invalid)
        inv_sorted = sorted((int(num), e, text) for (num, text), e in zip(invalid, extra, strict=True))  # type: ignore[arg-type]
        inv_nums = np.array([n for n, _, _ in inv_sorted], dtype="int64")
        cum = np.cumsum([e for _, e, _ in inv_sorted]) if inv_sorted else np.array([], dtype="int64")
        valid_nums = np.setdiff1d(np.arange(1, total + 1), inv_nums) if len(inv_nums) else np.arange(1, total + 1)
        before = np.searchsorted(inv_nums, valid_nums)
        shift = np.where(before > 0, cum[np.maximum(before - 1, 0)] if len(cum) else 0, 0)
        df = table.to_pandas()
        df["_line"] = first + nonempty[valid_nums - 1 + shift]
        if inv_sorted:
            bad: list[tuple[int, bytes]] = []
            for num, _e, text in inv_sorted:
                k = int(np.searchsorted(inv_nums, num))
                start = int(nonempty[num - 1 + (int(cum[k - 1]) if k > 0 else 0)])
                for j, part in enumerate(text.split("\n")):
                    bad.append((first + start + j, part.encode("utf-8")))
            fixed = self._parse_lines(bad, fields, include)
            df = pd.concat([df, fixed], ignore_index=True).sort_values("_line", kind="stable", ignore_index=True)
        return df

    def _parse_lines(
        self, lines: Sequence[tuple[int, bytes]], fields: tuple[str, ...], include: list[str] | None
    ) -> pd.DataFrame:
        """The exact parser: one physical line at a time, ragged rows padded or cut and counted."""
        cols, rows, nums = self._split_lines(lines, fields, include)
        return _rows_frame([(cols, rows, nums)])

    def _split_lines(
        self, lines: Sequence[tuple[int, bytes]], fields: tuple[str, ...], include: list[str] | None
    ) -> tuple[list[str], list[list[str]], list[int]]:
        """``(columns, rows of those columns, line numbers)`` of lines split one at a time."""
        n = len(fields)
        rows: list[list[str]] = []
        nums: list[int] = []
        for line_no, raw in lines:
            if raw in (b"", b"\r"):
                self.stats.empty_lines += 1
                continue
            text = _decode(raw, self.stats)
            values = split_fields(text, self.logtype)
            if len(values) < 2:
                self.stats.malformed(line_no, "no field separator; line dropped", text, dropped=True)
                continue
            if len(values) != n:
                self.stats.malformed(line_no, f"{len(values)} fields where the header has {n}", text)
                values = (values + [""] * n)[:n]
            rows.append(values)
            nums.append(line_no)
        cols = list(fields) if include is None else include
        if include is not None:
            idx = [fields.index(c) for c in cols]
            rows = [[r[i] for i in idx] for r in rows]
        return cols, rows, nums

    # -- pre-filtered reads -----------------------------------------------------------------------
    def matching_lines(self, needles: Sequence[bytes]) -> Iterator[tuple[int, str]]:
        """``(line number, text)`` of data lines holding any of ``needles`` (ASCII literals, any case)."""
        for line_no, raw, _fields in self._matching_raw(needles):
            yield line_no, _decode(raw, self.stats)

    def matching_frames(self, needles: Sequence[bytes], columns: Iterable[str] | None = None) -> Iterator[pd.DataFrame]:
        """Parsed rows of the data lines holding any of ``needles`` only.

        Rows under different field lists go into one frame (up to ``MERGE_ROWS`` rows; a column a
        field list lacks is missing in its rows), so a log whose header keeps changing costs no more
        than one that does not.
        """
        wanted = None if columns is None else list(dict.fromkeys(columns))
        batch: list[tuple[int, bytes]] = []
        batch_fields: tuple[str, ...] | None = None
        chunks: list[tuple[list[str], list[list[str]], list[int]]] = []
        rows = 0
        for line_no, raw, fields in self._matching_raw(needles):
            if fields != batch_fields and batch:
                if batch_fields is None:  # raw lines (no field list) go out on their own, in order
                    yield from self._flush_chunks(chunks)
                    chunks, rows = [], 0
                    yield from self._emit(batch, None, wanted)
                else:
                    chunks.append(self._chunk(batch, batch_fields, wanted))
                    rows += len(batch)
                batch = []
                if rows >= MERGE_ROWS:
                    yield from self._flush_chunks(chunks)
                    chunks, rows = [], 0
            batch_fields = fields
            batch.append((line_no, raw))
        if batch and batch_fields is not None:
            chunks.append(self._chunk(batch, batch_fields, wanted))
            batch = []
        yield from self._flush_chunks(chunks)
        if batch:
            yield from self._emit(batch, None, wanted)

    def _chunk(
        self, batch: list[tuple[int, bytes]], fields: tuple[str, ...], wanted: list[str] | None
    ) -> tuple[list[str], list[list[str]], list[int]]:
        include = None if wanted is None else [c for c in wanted if c in fields] or [fields[0]]
        return self._split_lines(batch, fields, include)

    def _flush_chunks(self, chunks: list[tuple[list[str], list[list[str]], list[int]]]) -> Iterator[pd.DataFrame]:
        if any(nums for _, _, nums in chunks):
            df = _rows_frame(chunks)
            self.stats.rows += len(df)
            yield df

    def _emit(
        self, batch: list[tuple[int, bytes]], fields: tuple[str, ...] | None, wanted: list[str] | None
    ) -> Iterator[pd.DataFrame]:
        if fields is None:
            df = pd.DataFrame(
                {
                    "Line": pd.Series([_decode(r, self.stats) for _, r in batch], dtype="str"),
                    "_line": np.array([n for n, _ in batch], dtype="int64"),
                }
            )
        else:
            include = None if wanted is None else [c for c in wanted if c in fields] or [fields[0]]
            df = self._parse_lines(batch, fields, include)
        if len(df):
            self.stats.rows += len(df)
            yield df

    def _matching_raw(self, needles: Sequence[bytes]) -> Iterator[tuple[int, bytes, tuple[str, ...] | None]]:
        # each block is split into lines and searched by Arrow kernels (RE2, case-insensitive) over the
        # raw bytes: no Python work per line, no lower-cased copy, line numbers are array indices
        pattern = needle_pattern(needles)
        first = 1
        for dropped, block, _n in iter_blocks(self.path, self.stats, self.block_size, count=False):
            first += dropped
            whole = pa.array([block], pa.large_binary())
            # most blocks hold no match at all: one RE2 pass over the whole block says so, no split needed
            if (
                self._decided
                and not _header_starts(block)
                and not pc.match_substring_regex(whole, pattern, ignore_case=True)[0].as_py()
            ):
                n_lines = block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
                self.stats.lines += n_lines
                first += n_lines
                continue
            lines = pc.split_pattern(whole, b"\n").flatten()
            n_lines = len(lines) - 1 if block.endswith(b"\n") else len(lines)  # the split's last item is ''
            self.stats.lines += n_lines
            hits = np.flatnonzero(pc.match_substring_regex(lines, pattern, ignore_case=True).to_numpy(False))
            heads = np.flatnonzero(pc.starts_with(lines, b"#").to_numpy(False))
            events = [(int(i), 0) for i in heads] + [(int(i), 1) for i in np.setdiff1d(hits, heads)]
            if not self._decided:
                first_data = self._first_data_index(lines, heads)
                if first_data is not None:
                    events.append((first_data, -1))  # decided after the headers before it, before its match
            skip = -1
            for i, kind in sorted(events, key=lambda e: (e[0], e[1])):
                if kind == 0:
                    self.header.header_line(first + i, lines[i].as_py())
                elif kind == -1:
                    self._decided = True
                    undecided = self.header.fields is None and self.logtype in DEFAULT_FIELDS
                    if undecided and self.header.first_data_line(first + i, lines[i].as_py()):
                        skip = i
                elif i != skip:
                    self._decided = True
                    yield first + i, lines[i].as_py(), self.header.fields
            first += n_lines

    @staticmethod
    def _first_data_index(lines: pa.Array, heads: np.ndarray) -> int | None:
        head_set = set(heads.tolist())
        for i in range(len(lines)):
            if i in head_set:
                continue
            if lines[i].as_py() not in (b"", b"\r"):
                return i
        return None

    def count(self) -> None:
        """Read through the file for its counts and headers only."""
        for _ in self._data():
            self._placeholders = 0


def _empty_line_indices(seg: bytes) -> np.ndarray:
    if not (seg.startswith((b"\n", b"\r\n")) or b"\n\n" in seg or b"\n\r\n" in seg):
        return np.array([], dtype="int64")
    return np.array([i for i, raw in enumerate(_lines(seg)) if raw in (b"", b"\r")], dtype="int64")


# -- wildcard matching ----------------------------------------------------------------------------
def like_regex(pattern: str) -> str:
    """PowerShell ``-like`` wildcards as an anchored regex: ``*`` any run, ``?`` one char, ``[a-z]`` a set.

    A backtick escapes the next character, as in PowerShell. Matching is case-insensitive (``-like``).
    """
    out, i = ["(?s)^"], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "`" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j > i + 1:
                body = pattern[i + 1 : j].replace("\\", "\\\\").replace("[", "\\[")
                out.append("[" + body + "]")
                i = j + 1
                continue
            out.append(re.escape(c))
        else:
            out.append(re.escape(c))
        i += 1
    out.append("$")
    return "".join(out)


def like(series: pd.Series, pattern: str) -> pd.Series:
    """Vectorised, case-insensitive PowerShell ``-like`` over a string column (missing values: False)."""
    arr = pc.fill_null(pa.array(series, type=pa.large_string(), from_pandas=True), "")
    hit = pc.match_substring_regex(arr, like_regex(pattern), ignore_case=True)
    return pd.Series(hit.to_numpy(zero_copy_only=False), index=series.index, dtype=bool)


# -- normalised columns ---------------------------------------------------------------------------
NORMALIZED = (
    "ts", "log", "source", "client_ip", "method", "uri_stem", "uri_query", "uri_file", "status", "user_agent",
    "username", "host", "request_id", "anchor_mailbox", "routing_hint", "protocol", "cmd", "event_data",
)  # fmt: skip
HTTPPROXY_MAP = {
    "client_ip": "ClientIpAddress", "method": "Method", "uri_stem": "UrlStem", "uri_query": "UrlQuery",
    "status": "HttpStatus", "user_agent": "UserAgent", "username": "AuthenticatedUser", "host": "UrlHost",
    "request_id": "RequestId", "anchor_mailbox": "AnchorMailbox", "routing_hint": "RoutingHint",
    "protocol": "Protocol",
}  # fmt: skip
IIS_MAP = {
    "client_ip": "c-ip", "method": "cs-method", "uri_stem": "cs-uri-stem", "uri_query": "cs-uri-query",
    "status": "sc-status", "user_agent": "cs(User-Agent)", "username": "cs-username", "host": "cs-host",
}  # fmt: skip
# the columns each normaliser reads (so callers can ask frames() for these only)
SOURCE_COLUMNS = {
    HTTPPROXY: ("DateTime", *HTTPPROXY_MAP.values()),
    IIS: ("date", "time", "s-ip", "s-port", *IIS_MAP.values()),
    ECP: ("TimeStamp", "DateTime", "ServerName", "EventId", "EventData"),
}
_CAFE_REQ = r"(?i)cafeReqId=(?P<v>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
_IPV4_PORT = r"^(\d{1,3}(?:\.\d{1,3}){3}):\d+$"


def _col(df: pd.DataFrame, name: str) -> pa.Array:
    """A frame column as an Arrow string array with nulls as ''."""
    if name in df.columns:
        return pc.fill_null(pa.array(df[name], type=pa.large_string(), from_pandas=True), "")
    return _const("", len(df))


def _const(value: str, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.large_string()), n)


def _extract(arr: pa.Array, pattern: str) -> pa.Array:
    """The named group ``v`` of an RE2 pattern, '' where it does not match."""
    return pc.fill_null(pc.struct_field(pc.extract_regex(arr, pattern), [0]), "")


def _ecp_value(data: pa.Array, key: str) -> pa.Array:
    """A ``S:KEY=value`` item of ECP EventData, quoted (``'S:KEY=..''..'``) or not."""
    quoted = _extract(data, r"(?:^|;)'S:" + key + r"=(?P<v>(?:[^']|'')*)'")
    plain = _extract(data, r"(?:^|;)S:" + key + r"=(?P<v>[^;]*)")
    value = pc.if_else(pc.not_equal(quoted, ""), quoted, plain)
    return pc.replace_substring(value, "''", "'")


def normalize(df: pd.DataFrame, logtype: str, logical_path: str = "", date_header: str | None = None) -> pd.DataFrame:
    """Add the shared columns (``ts``, ``client_ip``, ``uri_stem`` ...) that rules and joins use.

    The original columns stay. ``ts`` is UTC; ``user_agent`` has IIS's ``+`` turned back into spaces;
    ``request_id`` is HttpProxy's RequestId, IIS's ``cafeReqId`` or ECP's ``S:ACTID``. The string work
    is done by Arrow kernels over whole columns.
    """
    n = len(df)
    blank = _const("", n)
    norm: dict[str, pa.Array] = {c: blank for c in NORMALIZED if c != "ts"}
    if logtype == HTTPPROXY:
        for new, old in HTTPPROXY_MAP.items():
            norm[new] = _col(df, old)
        if not pc.any(pc.not_equal(norm["protocol"], "")).as_py():
            norm["protocol"] = _const(httpproxy_folder(logical_path), n)
        ts_text = _col(df, "DateTime")
    elif logtype == IIS:
        for new, old in IIS_MAP.items():
            norm[new] = _col(df, old)
        norm["user_agent"] = pc.replace_substring(norm["user_agent"], "+", " ")
        for c in ("uri_query", "username", "user_agent", "host"):
            norm[c] = pc.if_else(pc.equal(norm[c], "-"), "", norm[c])
        norm["request_id"] = _extract(norm["uri_query"], _CAFE_REQ)
        norm["protocol"] = _const(iis_site(logical_path), n)
        date = _col(df, "date")
        if date_header:  # rows of a field list without 'date' take the day of the #Date header
            date = pc.if_else(pc.equal(date, ""), pa.scalar(date_header[:10], pa.large_string()), date)
        ts_text = pc.binary_join_element_wise(date, _col(df, "time"), pa.scalar(" ", pa.large_string()))
    elif logtype == ECP:
        data = _col(df, "EventData")
        norm["event_data"] = data
        norm["cmd"] = _ecp_value(data, "CMD")
        url = _ecp_value(data, "URL")
        norm["uri_stem"] = pc.replace_substring_regex(url, r"\?.*$", "")
        norm["uri_query"] = _extract(url, r"\?(?P<v>.*)$")
        actid = _ecp_value(data, "ACTID")
        norm["request_id"] = pc.if_else(pc.not_equal(actid, ""), actid, _ecp_value(data, "REQID"))
        norm["client_ip"] = _ecp_value(data, "IP")
        norm["user_agent"] = _ecp_value(data, "UA")
        norm["host"] = _col(df, "ServerName")
        ts_text = _col(df, "TimeStamp")
        if not pc.any(pc.not_equal(ts_text, "")).as_py():
            ts_text = _col(df, "DateTime")
    else:
        ts_text = blank
    norm["client_ip"] = pc.utf8_trim_whitespace(pc.replace_substring_regex(norm["client_ip"], _IPV4_PORT, r"\1"))
    norm["uri_file"] = pc.replace_substring_regex(norm["uri_stem"], r"^.*/", "")
    norm["log"] = _const(logtype, n)
    norm["source"] = _const(logical_path, n)
    out = pa.table(norm).to_pandas()
    out.index = df.index
    # positional: to_pandas() carries a 0-based index, and Series(series, index=...) would realign (all NaT)
    text = pd.Series(pc.utf8_trim_whitespace(ts_text).to_numpy(zero_copy_only=False), index=df.index)
    out["ts"] = pd.to_datetime(text.where(text != "", None), utc=True, format="ISO8601", errors="coerce").astype(
        "datetime64[ms, UTC]"
    )
    keep = df.drop(columns=[c for c in NORMALIZED if c in df.columns])
    return pd.concat([keep, out[list(NORMALIZED)]], axis=1)


# -- cheap first/last timestamps (log age) --------------------------------------------------------
_ISO = re.compile(r"^\s*\"?(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?Z?)")
_IIS_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})")


def _ts(text: str) -> pd.Timestamp | None:
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def line_time(text: str, logtype: str) -> pd.Timestamp | None:
    """The timestamp a data line starts with (``DateTime``/``TimeStamp`` first, or IIS ``date time``)."""
    m = _IIS_TS.match(text) if logtype == IIS else None
    if m:
        return _ts(f"{m.group(1)}T{m.group(2)}Z")
    m = _ISO.match(text)
    return _ts(m.group(1)) if m else None


@dataclass
class TimeSpan:
    """First and last times of one log, from its ``#Date`` headers and its first and last records."""

    first: pd.Timestamp | None = None
    first_source: str = ""
    last: pd.Timestamp | None = None
    date_header: str | None = None


def time_span(path: str | Path, logtype: str, probe: int = 64 << 10) -> TimeSpan:
    """Read the head and tail of a log (``probe`` bytes each) for its time span; cheap on any size."""
    path = Path(path)
    span = TimeSpan()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(probe)
        fh.seek(max(0, size - probe))
        tail = fh.read(probe)
    for enc_bom, enc in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(enc_bom):
            head_text = head[2:].decode(enc, "replace")
            tail_text = tail.decode(enc, "replace") if size > probe else head_text
            break
    else:
        head_text = head.decode("utf-8", "replace").lstrip("\ufeff")
        tail_text = tail.decode("utf-8", "replace")
    head_lines = head_text.splitlines()
    if size > probe and head_lines:
        head_lines = head_lines[:-1]  # the last one may be cut
    candidates: list[tuple[pd.Timestamp, str]] = []
    records = 0
    for line in head_lines:
        if line.startswith("#"):
            if line.lower().startswith("#date:"):
                value = line.split(":", 1)[1].strip()
                span.date_header = span.date_header or value
                ts = _ts(value)
                if ts is not None:
                    candidates.append((ts, "#Date header"))
            continue
        ts = line_time(line, logtype)
        if ts is not None:
            candidates.append((ts, "first record"))
            records += 1
            if records >= 20:
                break
    if candidates:
        span.first, span.first_source = min(candidates, key=lambda c: c[0])
    tail_lines = tail_text.splitlines()
    if size > probe and tail_lines:
        tail_lines = tail_lines[1:]  # the first one may be cut
    for line in reversed(tail_lines):
        ts = None if line.startswith("#") else line_time(line, logtype)
        if ts is not None:
            span.last = ts
            break
    if span.last is None and candidates:
        span.last = max(c[0] for c in candidates)
    return span


__all__ = [
    "ECP",
    "ECP_FIELDS",
    "HTTPPROXY",
    "HTTPPROXY_FIELDS",
    "IIS",
    "IIS_FIELDS",
    "NORMALIZED",
    "OAB",
    "SOURCE_COLUMNS",
    "UNKNOWN",
    "HeaderState",
    "LogReader",
    "ParseStats",
    "TimeSpan",
    "httpproxy_folder",
    "iis_site",
    "install_root",
    "iter_blocks",
    "like",
    "like_regex",
    "line_time",
    "log_type",
    "needle_pattern",
    "normalize",
    "sniff_log_type",
    "split_fields",
    "time_span",
]
