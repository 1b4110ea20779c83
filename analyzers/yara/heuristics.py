"""The ``webshell_heuristics`` analyzer: what server pages do, and signals that YARA strings do not catch.

* Behaviour (:mod:`.behaviour`, rules in ``signatures/webshell/behaviour.yaml``): request input reaching code
  evaluation, assembly loading, a process, a socket, a file write, reflection or an outbound connection,
  directly or through variables (``TRIAGE-WSH-030`` .. ``036``), in any file that holds server code, whatever
  its name or place: pages, handlers, ``.cs``/``.vb`` generated code, renamed pages found by their directive.
* Configuration: ``web.config`` handler/build-provider remaps of odd extensions to script engines, server script
  carried in a config file, request filtering that unblocks ``.config`` (``TRIAGE-WSH-040`` .. ``042``); and
  Temporary ASP.NET Files ``.compiled`` records of pages in web shell places (``TRIAGE-WSH-043``).
* A server page (``.aspx``, ``.ashx``, ``.asmx``) in a web folder whose source modification time falls inside
  the directive's window, 2021-01-01 to 2021-04-30: when ProxyLogon web shells were written. Exchange's own
  March/April 2021 security updates also rewrote stock pages in that window, so on its own this is a low
  severity pointer for the timeline, raised to high when the same page also shows obfuscation. In the stock
  trees of ``locations.yaml`` (Exchange virtual directories outside the auth folders, hundreds of stock pages
  rewritten by every update) the time alone raises nothing.
* Obfuscation in the server-side code of any server page (``<% %>`` blocks, ``<script runat="server">``, the
  body of handlers): Shannon entropy of the code, very long lines, long base64 blobs, and strings built from
  character codes (``Chr(..)&Chr(..)``, ``String.fromCharCode``, ``(char)NN``, ``\\xNN`` escapes).

Windows hidden/system attributes (``attrib +h +s`` on planted pages) are not checked: the collection manifest
does not record file attributes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

import yaml

from analyzers.yara import behaviour
from triage.finding import Finding, RuleMeta
from triage.indicators import server_pages, stock_names
from triage.registry import Analyzer, Unit, register, signature_path

WINDOW_START = datetime(2021, 1, 1, tzinfo=UTC)
WINDOW_END = datetime(2021, 5, 1, tzinfo=UTC)  # exclusive: the window ends with 2021-04-30
# narrower on purpose: the handler pages ProxyLogon shells were written as, for the time-only pointer
WINDOW_EXTS = frozenset({".aspx", ".ashx", ".asmx"})
PAGE_EXTS = frozenset(server_pages())
CODE_ONLY_EXTS = frozenset({".ashx", ".asmx", ".asax", ".svc"})  # the whole file after the directive is code
# code files: code-behind and the C#/VB that ASP.NET generates into Temporary ASP.NET Files
SOURCE_EXTS = frozenset({".cs", ".vb"})
CONFIG_EXTS = frozenset({".config"})
COMPILED_EXTS = frozenset({".compiled"})
MAX_READ = 8 * 1024 * 1024

# Thresholds. Hand-written C#/VB/JScript sits around 4.3-5.2 bits per byte, minified JavaScript 5.3-5.5 and
# AspxSpy (random identifiers) 5.6; base64 of encrypted or compressed payloads is 6.0.
ENTROPY_MIN_BYTES = 512
ENTROPY_THRESHOLD = 5.7
LONG_LINE = 1500
BASE64_MIN = 200
CHARCODE_MIN = 16
ESCAPE_MIN = 64

_DIRECTIVE_OPEN = re.compile(rb"<%\s{0,8}@")
_CODE_OPEN = re.compile(rb"<%(?!\s{0,8}@)(?!--)")
_SCRIPT_OPEN = re.compile(rb"<script\b[^<>]{0,400}\brunat\s{0,4}=\s{0,4}[\"']?server[\"']?[^<>]{0,400}>", re.I)
# a page whatever its name: a directive, a code block or a server script (sniffed in files of other extensions)
_SERVER_MARK = re.compile(
    rb"<%\s{0,8}@\s{0,8}(?:page|webhandler|webservice|control|master|application|language)\b|"
    rb"<script\b[^>]{0,200}\brunat\s{0,4}=\s{0,4}[\"']?server",
    re.I,
)
_HANDLER_DIRECTIVE = re.compile(rb"<%\s{0,8}@\s{0,8}(webhandler|webservice)\b", re.I)
SNIFF_BYTES = 1024 * 1024
_BASE64 = re.compile(rb"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{%d,}={0,2}" % BASE64_MIN)
_DATA_URI = re.compile(rb"data:[\w.+-]+/[\w.+-]+;base64,$", re.I)
_CHARCODE = re.compile(
    rb"\b(?:Chr[WB]?\s*\(\s*\d+|fromCharCode\s*\(|Convert\.ToChar\s*\(\s*\d+)|\(\s*char\s*\)\s*\d+", re.I
)
_ESCAPE = re.compile(rb"\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}")


def shannon_entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte (0 for empty input)."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in Counter(data).values())


def _blocks(data: bytes, lower: bytes, opener: re.Pattern[bytes], close: bytes) -> list[bytes]:
    """Bodies from each ``opener`` match to the next ``close`` (an unclosed one runs to the end); linear time."""
    out: list[bytes] = []
    pos = 0
    while len(out) < 100000:
        m = opener.search(data, pos)
        if not m:
            break
        j = lower.find(close, m.end())
        out.append(data[m.end() : j if j >= 0 else len(data)])
        if j < 0:
            break
        pos = j + len(close)
    return out


def _strip_directives(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        m = _DIRECTIVE_OPEN.search(data, pos)
        if not m:
            out.append(data[pos:])
            break
        out.append(data[pos : m.start()])
        j = data.find(b"%>", m.end())
        if j < 0:
            break
        pos = j + 2
    return b"".join(out)


def server_code(data: bytes, ext: str) -> bytes:
    """The server-side code of a page: script blocks and ``<% %>`` blocks (handlers: all but the directive)."""
    if ext in CODE_ONLY_EXTS or ext in SOURCE_EXTS or _HANDLER_DIRECTIVE.search(data[:4096]):
        return _strip_directives(data).strip()
    lower = data.lower()
    parts = _blocks(data, lower, _CODE_OPEN, b"%>")
    parts += _blocks(data, lower, _SCRIPT_OPEN, b"</script")
    return b"\n".join(p.strip() for p in parts if p.strip())


@dataclass
class PageSignals:
    """What the obfuscation checks measured on one page."""

    code_bytes: int = 0
    entropy: float = 0.0
    longest_line: int = 0
    long_lines: int = 0
    base64_longest: int = 0
    base64_blobs: int = 0
    base64_sample: str = ""
    charcodes: int = 0
    escapes: int = 0
    hits: list[str] = field(default_factory=list)  # rule ids that fired

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "hits"}


def measure(data: bytes, ext: str) -> PageSignals:
    """Measure the obfuscation signals of a page's server-side code and say which fired."""
    code = server_code(data, ext)
    s = PageSignals(code_bytes=len(code))
    if not code:
        return s
    s.entropy = round(shannon_entropy(code), 3)
    lengths = [len(line) for line in code.splitlines()]
    s.longest_line = max(lengths, default=0)
    s.long_lines = sum(1 for n in lengths if n > LONG_LINE)
    for m in _BASE64.finditer(code):
        blob = m.group(0)
        # inline images and fonts in markup are not payloads; a blob needs mixed case and digits to be one
        if _DATA_URI.search(code[max(0, m.start() - 80) : m.start()]):
            continue
        if not (re.search(rb"[a-z]", blob) and re.search(rb"[A-Z]", blob) and re.search(rb"[0-9]", blob)):
            continue
        s.base64_blobs += 1
        if len(blob) > s.base64_longest:
            s.base64_longest, s.base64_sample = len(blob), blob[:60].decode("ascii")
    s.charcodes = len(_CHARCODE.findall(code))
    s.escapes = len(_ESCAPE.findall(code))
    if s.code_bytes >= ENTROPY_MIN_BYTES and s.entropy >= ENTROPY_THRESHOLD:
        s.hits.append("TRIAGE-WSH-010")
    if s.long_lines:
        s.hits.append("TRIAGE-WSH-011")
    if s.base64_blobs:
        s.hits.append("TRIAGE-WSH-012")
    if s.charcodes >= CHARCODE_MIN or s.escapes >= ESCAPE_MIN:
        s.hits.append("TRIAGE-WSH-013")
    return s


WINDOW_CVES = ("CVE-2021-27065", "CVE-2021-26858")  # the file-write CVEs of ProxyLogon


@dataclass(frozen=True)
class Signal:
    """A heuristic's declaration: id, title, severity and what to tell the analyst."""

    id: str
    title: str
    severity: str
    confidence: str
    description: str
    mitre: tuple[str, ...] = ("T1505.003",)
    cve: tuple[str, ...] = ()  # the window signals: the CVEs whose web shells were planted then
    meta: RuleMeta = field(init=False, repr=False, compare=False)  # what its findings share: steps 8 and 10

    def __post_init__(self) -> None:
        meta = RuleMeta(
            id=self.id,
            title=self.title,
            severity=self.severity,
            confidence=self.confidence,
            description=self.description,
            mitre=self.mitre,
            cve=self.cve,
            steps=("8", "10"),
            tags=("webshell", "heuristic"),
        )
        object.__setattr__(self, "meta", meta)


SIGNALS = {
    s.id: s
    for s in (
        Signal(
            "TRIAGE-WSH-001",
            "Server page written inside the ED 21-02 window",
            "low",
            "low",
            "The page was last modified between 2021-01-01 and 2021-04-30, when ProxyLogon web shells were "
            "planted. Exchange's March/April 2021 updates also rewrote stock pages then: compare with the "
            "vendor files of the installed build.",
            cve=WINDOW_CVES,
        ),
        Signal(
            "TRIAGE-WSH-010",
            "High-entropy server-side code",
            "medium",
            "medium",
            f"The server-side code has a Shannon entropy of {ENTROPY_THRESHOLD} bits per byte or more, as "
            "encoded or encrypted payloads do; hand-written C#/VB/JScript stays lower.",
            ("T1505.003", "T1027"),
        ),
        Signal(
            "TRIAGE-WSH-011",
            "Very long line in server-side code",
            "low",
            "low",
            f"A line of server-side code is longer than {LONG_LINE} characters: packed or generated code, "
            "which obfuscated shells use to hide in plain sight.",
            ("T1505.003", "T1027"),
        ),
        Signal(
            "TRIAGE-WSH-012",
            "Base64 blob in server-side code",
            "medium",
            "medium",
            f"The server-side code holds a base64 run of {BASE64_MIN} or more characters (not a data: URI): "
            "an embedded payload or assembly.",
            ("T1505.003", "T1027"),
        ),
        Signal(
            "TRIAGE-WSH-013",
            "Strings built from character codes",
            "medium",
            "medium",
            f"The server-side code builds text from character codes ({CHARCODE_MIN}+ Chr()/fromCharCode/(char) "
            f"calls, or {ESCAPE_MIN}+ \\x/\\u escapes), a way to keep words such as eval or cmd.exe out of "
            "the file.",
            ("T1505.003", "T1027"),
        ),
        Signal(
            "TRIAGE-WSH-020",
            "Obfuscated server page written inside the ED 21-02 window",
            "high",
            "medium",
            "A page written between 2021-01-01 and 2021-04-30 that also shows obfuscation: the combination "
            "stock Exchange pages do not have.",
            ("T1505.003", "T1027"),
            cve=WINDOW_CVES,
        ),
    )
}


def _mtime(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def in_window(value: str | None) -> bool:
    """Whether an ISO time falls inside the directive window (2021-01-01 .. 2021-04-30, UTC)."""
    ts = _mtime(value)
    return ts is not None and WINDOW_START <= ts < WINDOW_END


def looks_like_page(head: bytes) -> bool:
    """Whether bytes look like a server page: a directive, a server script, or a <% block closed by %>."""
    if _SERVER_MARK.search(head):
        return True
    start = head.find(b"<%")
    return start >= 0 and head.find(b"%>", start + 2) > 0


def _text(data: bytes) -> str:
    """Decode page bytes: UTF-16 with a BOM, else UTF-8 (bad bytes replaced: hostile input must not stop us)."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8", errors="replace").lstrip("\ufeff")


def _flow_signal(c: behaviour.FlowClass) -> Signal:
    return Signal(c.id, c.title, c.severity, "high" if c.severity == "critical" else "medium", c.description, c.mitre)


CONFIG_SIGNALS = {
    s.id: s
    for s in (
        Signal(
            "TRIAGE-WSH-040",
            "Configuration maps an odd extension to a script engine",
            "high",
            "high",
            "A handlers, httpHandlers, buildProviders or scriptMaps entry hands files of a non-script extension "
            "(.config, images, text) to a script engine (asp.dll, the ASP.NET page or handler factory, an ISAPI or "
            "CGI module): a web shell can then hide in a file that looks inert, or in web.config itself.",
            ("T1505.003", "T1505.004"),
        ),
        Signal(
            "TRIAGE-WSH-041",
            "Configuration file carries server-side script",
            "high",
            "high",
            "A configuration file holds a <% %> block or a runat=server script. Configuration has no use for "
            "server code; with a handler remap (or an old ASP trick) IIS runs it when the file is requested.",
            ("T1505.003",),
        ),
        Signal(
            "TRIAGE-WSH-042",
            "Configuration lets .config files be served",
            "medium",
            "medium",
            "requestFiltering removes the .config file extension or the web.config segment from the blocked list, "
            "the first half of the web.config web shell trick; on its own an odd but not hostile setting.",
            ("T1505.003",),
        ),
        Signal(
            "TRIAGE-WSH-043",
            "Compiled page record for a web shell location",
            "medium",
            "medium",
            "A Temporary ASP.NET Files .compiled record names a page that ASP.NET compiled from aspnet_client or "
            "from a non-stock page of owa/auth or ecp/auth: the page ran even if it has since been deleted. The "
            "location alone is not proof; look at the App_Web assembly the record names.",
            ("T1505.003",),
        ),
    )
}
SIGNALS.update(CONFIG_SIGNALS)
SIGNALS.update({c.id: _flow_signal(c) for c in behaviour.default_rules().classes.values()})


_STOCK_TREES: list[tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]] | None = None


def _stock_auth_pages() -> frozenset[str]:
    """Stock page names of owa/auth and ecp/auth, from the one list in signatures/indicators/exchange_web.yaml."""
    return stock_names("owa_auth", "ecp_auth")


def in_stock_tree(path: str) -> bool:
    """Whether a logical path lies in a stock tree of ``locations.yaml`` (``stock_trees``: Exchange vdirs
    outside the auth folders), where updates rewrite so many stock files that a write time alone says nothing."""
    global _STOCK_TREES
    if _STOCK_TREES is None:
        from analyzers.webshell import glob_regex

        doc = yaml.safe_load(signature_path("webshell/locations.yaml").read_text(encoding="utf-8"))
        _STOCK_TREES = [
            (tuple(glob_regex(p) for p in t.get("path") or ()), tuple(glob_regex(p) for p in t.get("not_path") or ()))
            for t in (doc.get("stock_trees") or {}).values()
        ]
    norm = path.replace("\\", "/")
    return any(
        any(rx.match(norm) for rx in inside) and not any(rx.match(norm) for rx in outside)
        for inside, outside in _STOCK_TREES
    )


def compiled_location(virtual_path: str) -> bool:
    """Whether a compiled page's virtual path is a web shell place (aspnet_client, non-stock owa/ecp auth page)."""
    vp = virtual_path.replace("\\", "/").casefold()
    name = vp.rsplit("/", 1)[-1]
    if "/aspnet_client/" in vp:
        return True
    return bool(re.search(r"/(?:owa|ecp)/auth/[^/]+$", vp)) and name not in _stock_auth_pages()


@dataclass
class PageReport:
    """Everything the analyzer found in one file, for findings and tests."""

    mode: str  # page | config | compiled | none
    obfuscation: PageSignals = field(default_factory=PageSignals)
    flows: list[behaviour.Flow] = field(default_factory=list)
    config: behaviour.ConfigSignals | None = None
    compiled: tuple[str, str] | None = None
    hits: list[str] = field(default_factory=list)


_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _content_ext(name: str) -> str:
    """The extension that decides how a file is read (lower case, with its dot)."""
    ext = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    if ext == ".js" and "temporary asp.net files" in name.lower():
        return ".cs"  # JScript.NET that ASP.NET generated from a page: server code throughout, like .cs/.vb
    return ext


def needs_content(head: bytes, name: str) -> bool:
    """Whether :func:`inspect` reads a file past its first ``SNIFF_BYTES`` (``head``): its extension names a page,
    source, config or compiled record, it is UTF-16, or its head looks like a server page. A bundle or an image
    that is none of these is judged by its head alone (the cheap pre-filter of the heuristics)."""
    ext = _content_ext(name)
    return (
        ext in PAGE_EXTS
        or ext in SOURCE_EXTS
        or ext in CONFIG_EXTS
        or ext in COMPILED_EXTS
        or head[:2] in _BOMS
        or looks_like_page(head[:SNIFF_BYTES])
    )


def inspect(data: bytes, name: str) -> PageReport:
    """Measure one file by content: obfuscation, request-to-sink flows, configuration remaps, compiled records.

    ``name`` is only used for its extension; files of other extensions are analysed when they look like
    server pages (a directive, a code block or a server script), so a renamed page is still read.
    """
    if data[:2] in _BOMS:  # a UTF-16 page (ASP.NET reads it by its BOM): judge its text
        data = _text(data).encode("utf-8")
    ext = _content_ext(name)
    if ext in CONFIG_EXTS:
        return _inspect_config(data)
    if ext in COMPILED_EXTS:
        rep = PageReport("compiled")
        rep.compiled = behaviour.compiled_record(_text(data[:65536]))
        if rep.compiled and compiled_location(rep.compiled[0]):
            rep.hits.append("TRIAGE-WSH-043")
        return rep
    if ext not in PAGE_EXTS and ext not in SOURCE_EXTS and not looks_like_page(data[:SNIFF_BYTES]):
        return PageReport("none")
    rep = PageReport("page")
    if ext in PAGE_EXTS:  # the obfuscation thresholds were calibrated on pages only
        rep.obfuscation = measure(data, ext)
        rep.hits += rep.obfuscation.hits
    code = _text(server_code(data, ext if ext in PAGE_EXTS or ext in SOURCE_EXTS else ".aspx"))
    handler = ext == ".asmx" or bool(re.search(rb"<%\s{0,8}@\s{0,8}webservice\b", data[:4096], re.I))
    vb = behaviour.is_vb(_text(data[:4096]) + code[:2000], ext)
    rep.flows = behaviour.analyse(code, vb=vb, handler=handler, markup=_text(data))
    rep.hits += [behaviour.default_rules().classes[f.cls].id for f in rep.flows]
    return rep


def _inspect_config(data: bytes) -> PageReport:
    text = _text(data)
    config = behaviour.config_signals(text)
    rep = PageReport("config", config=config)
    if config.remaps:
        rep.hits.append("TRIAGE-WSH-040")
    if config.inline_code:
        rep.hits.append("TRIAGE-WSH-041")
        # the config's own script: the same data-flow analysis as a page's
        code = _text(server_code(data, ".aspx"))
        rep.flows = behaviour.analyse(code, vb=behaviour.is_vb(code, ".asp"))
        rep.hits += [behaviour.default_rules().classes[f.cls].id for f in rep.flows]
    if config.unblocks_config and not rep.hits:
        rep.hits.append("TRIAGE-WSH-042")
    return rep


@register
class WebShellHeuristics(Analyzer):
    """Request input reaching dangerous calls, config remaps, obfuscation, and pages written in the ED 21-02 window."""

    name = "webshell_heuristics"
    version = "2.0"
    consumes = ("web_file", "suspicious_file", "file")
    rules = (behaviour.RULE_FILE, "webshell/locations.yaml")

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        ev = unit.evidence
        logical = unit.logical_path or ev.source_path
        ext = PurePosixPath(logical.replace("\\", "/")).suffix.lower()
        with open(unit.path, "rb") as fh:
            data = fh.read(SNIFF_BYTES)
            # read on (once, from where the head ended) only what can be a server page by name or content;
            # anything else is judged by its head, as inspect() would judge it
            page = len(data) < SNIFF_BYTES or needs_content(data, logical)
            if page and len(data) == SNIFF_BYTES:
                data += fh.read(MAX_READ + 1 - SNIFF_BYTES)
        if len(data) > MAX_READ:
            unit.warn(f"file larger than {MAX_READ} bytes: only the first {MAX_READ} bytes were measured")
            data = data[:MAX_READ]
        rep = inspect(data, logical) if page else PageReport("none")
        signals = rep.obfuscation
        written = ev.kind == "web_file" and ext in WINDOW_EXTS and in_window(ev.source_mtime)
        # in a stock tree (Exchange vdirs, rewritten by every update) the time alone is no pointer
        fired = (["TRIAGE-WSH-001"] if written and not in_stock_tree(logical) else []) + rep.hits
        if written and signals.hits:
            fired.append("TRIAGE-WSH-020")
        base = {
            "path": logical,
            "kind": ev.kind,
            "size": ev.size,
            "sha256": ev.sha256,
            "md5": ev.md5,
            "modified": ev.source_mtime,
            "mode": rep.mode,
            **signals.as_dict(),
        }
        if rep.flows:
            base["flows"] = [f.as_dict() for f in rep.flows]
        if rep.config is not None:
            base["config"] = rep.config.as_dict()
        if rep.compiled is not None:
            base["compiled"] = {"virtual_path": rep.compiled[0], "assembly": rep.compiled[1]}
        for rule_id in fired:
            sig = SIGNALS[rule_id]
            detail = self._detail(rule_id, rep, ev.source_mtime)
            yield unit.finding(
                sig.meta,
                title=f"{sig.title}: {PurePosixPath(logical.replace(chr(92), '/')).name}",
                message=f"{logical}: {detail}. {sig.description}",
                location=logical,
                ts=ev.source_mtime,
                ts_desc="File modified (source)",
                attributes=base | {"signals": list(fired)},
            )

    @staticmethod
    def _detail(rule_id: str, rep: PageReport, mtime: str | None) -> str:
        s = rep.obfuscation
        flow = next(
            (f for f in rep.flows if SIGNALS[rule_id].title == behaviour.default_rules().classes[f.cls].title), None
        )
        if flow is not None:
            via = f" (through {', '.join(flow.via)})" if flow.via else ""
            return f"request input reaches {flow.sink}{flow.argument}){via}"
        cfg = rep.config
        return {
            "TRIAGE-WSH-001": f"modified {mtime}",
            "TRIAGE-WSH-010": f"entropy {s.entropy} bits/byte over {s.code_bytes} bytes of code",
            "TRIAGE-WSH-011": f"{s.long_lines} line(s) over {LONG_LINE} characters, longest {s.longest_line}",
            "TRIAGE-WSH-012": f"{s.base64_blobs} base64 blob(s), longest {s.base64_longest} characters "
            f"({s.base64_sample}...)",
            "TRIAGE-WSH-013": f"{s.charcodes} character-code calls, {s.escapes} escapes",
            "TRIAGE-WSH-020": f"modified {mtime} and {', '.join(x for x in s.hits)}",
            "TRIAGE-WSH-040": "; ".join(f"{r['path']} -> {r['engine']} ({r['section']})" for r in cfg.remaps)
            if cfg
            else "",
            "TRIAGE-WSH-041": f"script {cfg.inline_code[:120]}" if cfg else "",
            "TRIAGE-WSH-042": "requestFiltering unblocks .config" if cfg else "",
            "TRIAGE-WSH-043": f"compiled {rep.compiled[0]} into {rep.compiled[1]}" if rep.compiled else "",
        }.get(rule_id, "")
