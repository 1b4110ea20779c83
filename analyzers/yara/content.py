"""The ``yara`` analyzer: YARA rules over collected files (web files, staging files, Exchange and IIS logs).

Rules are the project's own (the ``.yar`` files directly in ``signatures/yara``, each rule with a fixed meta block;
the ``memory/`` subfolder belongs to the memory analyzer) plus any third-party sets named with ``--yara DIR``
(signature-base, the NSA web shell rules ...), loaded unmodified. Memory images are not scanned here (the
``memory`` analyzer applies the same ``--yara`` sets to them). Findings of
our rules take id, title, severity, MITRE, CVE and ED 21-02 steps from the meta block; third-party findings take
the rule name as id and their severity from ``severity`` or ``score`` meta. Options
(``analyze_case(options={"yara": {...}})``):

``yara``          list of extra rule files or folders
``yara_engine``   ``yara-x`` (default, by measurement: ``benchmarks/yara_scan.py --decide``) or ``yara-python``:
                  the engine tried first for each rule file
``yara_fallback`` ``relaxed-first`` (default: a file strict yara-x rejects goes to yara-x in relaxed regex
                  mode, libyara's regex dialect, then to yara-python; one fast engine for nearly every rule,
                  and the same matches as yara-python on the corpus rule sets) or ``other-engine``
                  (straight to yara-python)
``yara_cache``    folder of the compiled-rule cache (default ``$TRIAGE_YARA_CACHE``, ``$TRIAGE_CACHE_DIR/yara``,
                  ``$XDG_CACHE_HOME/triage/yara``)
``yara_no_cache`` compile every time, write no cache
``yara_timeout``  seconds per file and engine (default 60)
``yara_max_size`` files larger than this many bytes are skipped (default 2 GiB)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path, PureWindowsPath
from typing import Any

from analyzers.yara.engine import (
    RELAXED_FIRST,
    RULE_SUFFIXES,
    YARA_X,
    CompiledRules,
    Match,
    RuleFile,
    engine_versions,
    file_externals,
    find_rule_files,
    load_rules,
    rule_file_paths,
)
from analyzers.yara.options import YARA_SETS
from triage.case import Case
from triage.errors import Skip
from triage.finding import Finding, RuleMeta
from triage.registry import Analyzer, Unit, register, signature_path

log = logging.getLogger(__name__)

OWN_RULES = "yara"
# the meta block every rule in signatures/yara carries (tests/analyzers/yara checks it)
OWN_META_KEYS = (
    "id",
    "title",
    "description",
    "severity",
    "confidence",
    "mitre",
    "cve",
    "ed2102_steps",
    "author",
    "date",
    "reference",
)
REPORTED_META = ("description", "author", "score", "severity", "reference", "date")
# signature-base style scores (Loki/THOR: 40 notice, 60 warning, 80+ alert) onto the finding scale
SCORE_SEVERITY = ((80, "high"), (60, "medium"), (40, "low"), (0, "info"))
SEVERITY_WORDS = {
    "informational": "info",
    "information": "info",
    "info": "info",
    "low": "low",
    "medium": "medium",
    "moderate": "medium",
    "high": "high",
    "critical": "critical",
}
THIRD_PARTY_DEFAULT = "medium"  # Loki scores a rule without a score as 70
DEFAULT_MAX_SIZE = 2 * 1024**3
DEFAULT_TIMEOUT = 60
MAX_STRINGS = 10
READ_WHOLE = 4 * 1024 * 1024  # files up to this size are read into memory once and scanned as bytes


def own_rule_paths() -> list[Path]:
    """The project's file rules: ``signatures/yara/*.yar`` (not the ``memory/`` subfolder)."""
    folder = signature_path(OWN_RULES)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RULE_SUFFIXES)


def severity_for(meta: dict[str, Any], own: bool) -> str:
    """Severity from the rule's ``severity`` meta, else its ``score``; else high (own) or medium (others)."""
    word = SEVERITY_WORDS.get(str(meta.get("severity", "")).strip().lower())
    if word:
        return word
    score = meta.get("score")
    if score is not None:
        try:
            value = int(str(score).strip())
        except ValueError:
            value = None
        if value is not None:
            return next(sev for floor, sev in SCORE_SEVERITY if value >= floor)
    return "high" if own else THIRD_PARTY_DEFAULT


def _csv_list(value: Any) -> list[str]:
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def yara_rule_meta(name: str, meta: dict[str, Any], own: bool, severity: str, tags: Any) -> RuleMeta:
    """The metadata of a matched YARA rule, from its ``meta`` (the project's own rules) or its name (a third-party
    set: steps 8 and 13, the "additional IOC hunt"); ``tags`` are the rule's YARA tags."""
    if own:
        return RuleMeta(
            id=str(meta.get("id") or name),
            title=str(meta.get("title") or name),
            severity=severity,
            confidence=str(meta.get("confidence") or "medium"),
            mitre=tuple(_csv_list(meta.get("mitre"))),
            cve=tuple(_csv_list(meta.get("cve"))),
            steps=tuple(_csv_list(meta.get("ed2102_steps", meta.get("ed2102_step")))),
            tags=("yara", "triage_rules", *tags),
            references=tuple(_csv_list(meta.get("reference"))),
        )
    return RuleMeta(
        id=name,
        title=name,
        severity=severity,
        steps=("8", "13"),
        tags=("yara", "third_party", *tags),
        references=tuple(_csv_list(meta.get("reference"))),
    )


def _excerpt(data: bytes) -> str:
    """Printable ASCII as is, everything else as \\xNN (UTF-16 text reads as 'a\\x00b\\x00')."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data)


def _read_excerpts(source: Path | bytes, match: Match, limit: int = 64) -> list[dict[str, Any]]:
    """Matched strings with up to ``limit`` bytes each, from the bytes already read or else from the file."""
    out = [{"id": h.identifier, "offset": h.offset, "length": h.length} for h in match.strings]
    if isinstance(source, bytes):
        for item, hit in zip(out, match.strings, strict=True):
            item["data"] = _excerpt(source[hit.offset : hit.offset + min(hit.length, limit)])
        return out
    try:
        with open(source, "rb") as fh:
            for item, hit in zip(out, match.strings, strict=True):
                fh.seek(hit.offset)
                item["data"] = _excerpt(fh.read(min(hit.length, limit)))
    except OSError:
        pass  # the offsets still say where to look
    return out


def _read_small(path: Path) -> bytes:
    """A small file's bytes in one read sized by ``fstat`` (no buffered file object: its setup costs more than the
    read of a few KiB page); a file that grew since is read to its end."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)
        while len(data) > size:  # more than fstat said: it grew since, read on to its end
            more = os.read(fd, 1 << 20)
            if not more:
                break
            data += more
            size = len(data) - 1
        return data
    finally:
        os.close(fd)


@register
class YaraScan(Analyzer):
    """YARA rules (the project's and --yara sets) over web, staging and loose files and Exchange/IIS logs."""

    name = "yara"
    version = "1.0"
    consumes = ("web_file", "suspicious_file", "exchange_log", "iis_log", "file")
    rules = (OWN_RULES,)
    options_declared = (
        YARA_SETS,
    )
    rule_option = "yara"
    # the compiled set is plain data (no threads, no open handles): the runner loads it before forking the pool's
    # workers (triage.runner.warm_pool), which share it instead of each reading the cache again
    rules_fork_safe = True

    def extra_paths(self) -> list[Path]:
        """Rule files and folders given with ``--yara``."""
        extra = self.options.get("yara", [])
        return [Path(p) for p in ([extra] if isinstance(extra, str) else extra)]

    def rule_files(self) -> list[RuleFile]:
        """The project's rule files, then the extra ones, each with its own namespace."""
        taken: set[str] = set()
        return [
            *find_rule_files(own_rule_paths(), "triage", taken),
            *find_rule_files(self.extra_paths(), "third_party", taken),
        ]

    def rule_paths(self) -> list[Path]:
        return own_rule_paths() + [p for _, p in rule_file_paths(self.extra_paths())]

    def fingerprint(self) -> str:
        # a new engine release can change what matches, so it reruns the units like a rule edit does. Not
        # memoised here: the runner asks once per run (run_fingerprint), and a long-lived worker keeping this
        # object between commands must see rules edited in between
        h = hashlib.sha256(super().fingerprint().encode())
        h.update(json.dumps(engine_versions(), sort_keys=True).encode())
        return h.hexdigest()[:32]

    @classmethod
    def preload_rules(cls, case: Case, options: dict[str, Any]) -> dict[str, Any] | None:
        """Compile the --yara sets once up front (filling the rule cache) and record per file what loaded."""
        return report_rule_load(case, list(options.get("yara", [])), options)

    def load_rules(self) -> CompiledRules:
        opts = self.options
        compiled = load_rules(
            self.rule_files(),
            engine=str(opts.get("yara_engine", YARA_X)),
            fallback=str(opts.get("yara_fallback", RELAXED_FIRST)),
            cache_dir=opts.get("yara_cache") or None,
            use_cache=not opts.get("yara_no_cache", False),
        )
        c = compiled.cache
        log.info(
            "YARA: %d rule files compiled, %d skipped (%s)",
            len(compiled.compiled),
            len(compiled.skipped),
            f"cache hit, {c.get('load_s')} s" if c.get("hit") else f"compiled in {c.get('compile_s')} s",
        )
        for st in compiled.skipped:
            log.warning("YARA rule file skipped, no engine compiled it: %s\n%s", st.path, st.message)
        return compiled

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        compiled: CompiledRules = self.ruleset
        for st in compiled.skipped:
            first = st.message.splitlines()[0] if st.message else "no message"
            unit.warn(f"YARA rule file skipped (no engine compiled it): {Path(st.path).name}: {first}")
        ev = unit.evidence
        size = ev.size if ev.size is not None else os.path.getsize(unit.path)
        max_size = int(self.options.get("yara_max_size", DEFAULT_MAX_SIZE))
        if size > max_size:
            raise Skip(f"{size} bytes is over the YARA size limit of {max_size} bytes (option yara_max_size)")
        logical = unit.logical_path or ev.source_path
        # a file up to READ_WHOLE is read once: the head for the externals, the scan and the excerpts all use
        # these bytes (most of a web root is a few KiB); a bigger one is scanned by path (the engines map it)
        target: Path | bytes
        if size <= READ_WHOLE:
            target = _read_small(unit.path)
            head = target[:16]
        else:
            target = unit.path
            with open(unit.path, "rb") as fh:
                head = fh.read(16)
        externals = file_externals(logical, head, ev.md5)
        # big logs get time in proportion (at least 4 MiB/s), so a slow rule set still finishes them
        timeout = max(int(self.options.get("yara_timeout", DEFAULT_TIMEOUT)), size // (4 * 2**20))
        matches = compiled.scan(target, externals, timeout=timeout, max_strings=MAX_STRINGS, warn=unit.warn)
        for m in sorted(matches, key=lambda m: (m.namespace, m.rule)):
            yield self._finding(unit, compiled, m, logical, externals, target)

    def _finding(
        self,
        unit: Unit,
        compiled: CompiledRules,
        m: Match,
        logical: str,
        externals: dict[str, str],
        source: Path | bytes,
    ) -> Finding:
        ev = unit.evidence
        st = compiled.file_of(m.namespace)
        own = st is not None and st.origin == "triage"
        meta = m.meta
        severity = severity_for(meta, own)
        name = PureWindowsPath(logical.replace("/", "\\")).name or logical
        description = " ".join(str(meta.get("description", "")).split())
        rule = yara_rule_meta(m.rule, meta, own, severity, m.tags)
        strings = _read_excerpts(source, m)
        shown = ", ".join(f"{s['id']}@{s['offset']}" for s in strings[:5])
        attrs: dict[str, Any] = {
            "rule": m.rule,
            "namespace": m.namespace,
            "rule_file": Path(st.path).name if st else "",
            "rule_path": st.path if st else "",
            "rule_sha256": st.sha256 if st else "",
            "rule_origin": st.origin if st else "",
            "engine": m.engine,
            "meta": {k: meta[k] for k in REPORTED_META if k in meta},
            "tags": list(m.tags),
            "strings": strings,
            "string_matches": m.string_count,
            "path": logical,
            "kind": ev.kind,
            "size": ev.size,
            "sha256": ev.sha256,
            "md5": ev.md5,
            "modified": ev.source_mtime,
            "externals": {k: externals[k] for k in ("filename", "extension", "filetype")},
        }
        return unit.finding(
            rule,
            title=f"{rule.title}: {name}",
            message=(
                f"{description + ' ' if description else ''}YARA rule {m.namespace}:{m.rule} ({m.engine}) matched "
                f"{logical} ({ev.size} bytes, sha256 {ev.sha256})" + (f"; strings {shown}" if shown else "") + "."
            ),
            location=f"offset {m.first_offset}" if m.first_offset is not None else "file",
            ts=ev.source_mtime,
            ts_desc="File modified (source)",
            attributes=attrs,
        )


def report_rule_load(case: Any, dirs: list[str], options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compile (or load from the cache) the rule sets once up front and record what loaded and what not.

    Writes ``runs/yara-rules.json`` (per rule file: engine that compiled it, or the compiler messages) and a
    ``rules_loaded`` custody event; returns the summary. The compiled set lands in the cache, so the
    analysis workers only load it.
    """
    from triage.unitrun import _instance

    # the process's object for these options (the one units use): pool workers forked after this inherit the
    # loaded set instead of reading it from the cache again
    analyzer = _instance(YaraScan, {**(options or {}), "yara": list(dirs)})
    compiled: CompiledRules = analyzer.ruleset
    rep = compiled.report()
    out = case.path / "runs" / "yara-rules.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rep | {"sources": list(dirs)}, indent=1, default=str))
    info = {
        "loaded": rep["compiled"],
        "skipped": rep["skipped"],
        "by_engine": rep["by_engine"],
        "sources": list(dirs),
        "skipped_files": [Path(f.path).name for f in compiled.skipped],
        "cache_hit": bool(rep["cache"].get("hit")),
    }
    record = {"record": "runs/yara-rules.json", "record_sha256": hashlib.sha256(out.read_bytes()).hexdigest()}
    case.custody.append("rules_loaded", engine="yara", **info, **record)  # verify checks the record by its hash
    log.info(
        "YARA rule files: %d compiled (%s), %d skipped%s; details in %s",
        info["loaded"],
        ", ".join(f"{k} {v}" for k, v in info["by_engine"].items() if v),
        info["skipped"],
        f" ({', '.join(info['skipped_files'])})" if info["skipped_files"] else "",
        out,
    )
    return info
