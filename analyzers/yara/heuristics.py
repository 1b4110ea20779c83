"""The ``webshell_heuristics`` analyzer: signals in server pages that YARA strings do not catch.

* A server page (``.aspx``, ``.ashx``, ``.asmx``) in a web folder whose source modification time falls inside
  the directive's window, 2021-01-01 to 2021-04-30: when ProxyLogon web shells were written. Exchange's own
  March/April 2021 security updates also rewrote stock pages in that window, so on its own this is a low
  severity pointer for the timeline, raised to high when the same page also shows obfuscation.
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

from triage.finding import Finding
from triage.registry import Analyzer, Unit, register

WINDOW_START = datetime(2021, 1, 1, tzinfo=UTC)
WINDOW_END = datetime(2021, 5, 1, tzinfo=UTC)  # exclusive: the window ends with 2021-04-30
WINDOW_EXTS = frozenset({".aspx", ".ashx", ".asmx"})
PAGE_EXTS = frozenset({".aspx", ".ashx", ".asmx", ".asp", ".asa", ".asax", ".cshtml", ".vbhtml", ".svc"})
CODE_ONLY_EXTS = frozenset({".ashx", ".asmx", ".asax", ".svc"})  # the whole file after the directive is code
MAX_READ = 8 * 1024 * 1024

# Thresholds. Hand-written C#/VB/JScript sits around 4.3-5.2 bits per byte, minified JavaScript 5.3-5.5 and
# AspxSpy (random identifiers) 5.6; base64 of encrypted or compressed payloads is 6.0.
ENTROPY_MIN_BYTES = 512
ENTROPY_THRESHOLD = 5.7
LONG_LINE = 1500
BASE64_MIN = 200
CHARCODE_MIN = 16
ESCAPE_MIN = 64

_DIRECTIVE = re.compile(rb"<%@.*?%>", re.S)
_CODE_BLOCK = re.compile(rb"<%(?![@-])(.*?)%>", re.S)
_SERVER_SCRIPT = re.compile(rb"<script\b[^>]*\brunat\s*=\s*[\"']?server[\"']?[^>]*>(.*?)</script\s*>", re.S | re.I)
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


def server_code(data: bytes, ext: str) -> bytes:
    """The server-side code of a page: script blocks and ``<% %>`` blocks (handlers: all but the directive)."""
    if ext in CODE_ONLY_EXTS:
        return _DIRECTIVE.sub(b"", data).strip()
    parts = [m.group(1) for m in _CODE_BLOCK.finditer(data)]
    parts += [m.group(1) for m in _SERVER_SCRIPT.finditer(data)]
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


@dataclass(frozen=True)
class Signal:
    """A heuristic's declaration: id, title, severity and what to tell the analyst."""

    id: str
    title: str
    severity: str
    confidence: str
    description: str
    mitre: tuple[str, ...] = ("T1505.003",)


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


@register
class WebShellHeuristics(Analyzer):
    """Server pages written in the ED 21-02 window, and obfuscation/entropy signals in their code."""

    name = "webshell_heuristics"
    version = "1.0"
    consumes = ("web_file", "suspicious_file", "file")

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        ev = unit.evidence
        logical = unit.logical_path or ev.source_path
        ext = PurePosixPath(logical.replace("\\", "/")).suffix.lower()
        if ext not in PAGE_EXTS:
            return
        with open(unit.path, "rb") as fh:
            data = fh.read(MAX_READ + 1)
        if len(data) > MAX_READ:
            unit.warn(f"page larger than {MAX_READ} bytes: only the first {MAX_READ} bytes were measured")
            data = data[:MAX_READ]
        signals = measure(data, ext)
        written = ev.kind == "web_file" and ext in WINDOW_EXTS and in_window(ev.source_mtime)
        fired = (["TRIAGE-WSH-001"] if written else []) + signals.hits
        if written and signals.hits:
            fired.append("TRIAGE-WSH-020")
        base = {
            "path": logical,
            "kind": ev.kind,
            "size": ev.size,
            "sha256": ev.sha256,
            "md5": ev.md5,
            "modified": ev.source_mtime,
            **signals.as_dict(),
        }
        for rule_id in fired:
            sig = SIGNALS[rule_id]
            detail = self._detail(rule_id, signals, ev.source_mtime)
            yield unit.finding(
                rule_id=sig.id,
                rule_title=sig.title,
                severity=sig.severity,
                confidence=sig.confidence,
                title=f"{sig.title}: {PurePosixPath(logical.replace(chr(92), '/')).name}",
                message=f"{logical}: {detail}. {sig.description}",
                location=logical,
                ts=ev.source_mtime,
                ts_desc="File modified (source)",
                mitre=list(sig.mitre),
                cve=["CVE-2021-27065", "CVE-2021-26858"] if rule_id in ("TRIAGE-WSH-001", "TRIAGE-WSH-020") else [],
                ed2102_steps=["8", "10"],
                tags=["webshell", "heuristic"],
                attributes=base | {"signals": list(fired)},
            )

    @staticmethod
    def _detail(rule_id: str, s: PageSignals, mtime: str | None) -> str:
        return {
            "TRIAGE-WSH-001": f"modified {mtime}",
            "TRIAGE-WSH-010": f"entropy {s.entropy} bits/byte over {s.code_bytes} bytes of code",
            "TRIAGE-WSH-011": f"{s.long_lines} line(s) over {LONG_LINE} characters, longest {s.longest_line}",
            "TRIAGE-WSH-012": f"{s.base64_blobs} base64 blob(s), longest {s.base64_longest} characters "
            f"({s.base64_sample}...)",
            "TRIAGE-WSH-013": f"{s.charcodes} character-code calls, {s.escapes} escapes",
            "TRIAGE-WSH-020": f"modified {mtime} and {', '.join(x for x in s.hits)}",
        }[rule_id]
