"""The generic collector: executes the declared artifact families over a source's volumes."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from triage.case import Case, ManifestRow, safe_host
from triage.collectors.families import Family, load_families
from triage.collectors.hostinfo import computer_name, exchange_root
from triage.collectors.sources import MEMORY_EXTENSIONS, Source
from triage.collectors.vfs import DIR, FILE, UNSAFE, VNode, expand_braces, glob, resolve
from triage.hashing import open_source

log = logging.getLogger(__name__)

COLLECTOR = "triage.collectors.volume"
COLLECTOR_VERSION = "1.0"
EXPAND = {
    "%SystemRoot%": "Windows",
    "%ProgramData%": "ProgramData",
    "%ProgramFiles(x86)%": "Program Files (x86)",
    "%ProgramFiles%": "Program Files",
    "%Users%": "Users",
}
ADS_KIND = "file"  # an alternate data stream can hide anything: the content analyzers (YARA) take 'file'
HIVE_NAMES = {"system", "software", "sam", "security", "default", "ntuser.dat", "usrclass.dat", "amcache.hve"}


@dataclass
class CollectStats:
    """Counts of one collection, for the summary and the custody log."""

    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    files: int = 0
    skipped_duplicates: int = 0
    hosts: set[str] = field(default_factory=set)
    exchange: dict[str, str] = field(default_factory=dict)
    images: list[dict[str, object]] = field(default_factory=list)  # disk images: format and verification

    def add(self, row: ManifestRow) -> None:
        self.outcomes[row.outcome] += 1
        if row.outcome in ("success", "empty"):
            self.kinds[row.kind] += 1
            self.files += 1
            self.bytes += row.size or 0

    def as_dict(self) -> dict[str, object]:
        return {
            "outcomes": dict(self.outcomes),
            "kinds": dict(self.kinds),
            "bytes": self.bytes,
            "files": self.files,
            "already_collected": self.skipped_duplicates,
            "hosts": sorted(self.hosts),
            "exchange": self.exchange,
        } | ({"images": self.images} if self.images else {})


Progress = Callable[[int], None]


def _store_node(
    case: Case,
    node: VNode,
    *,
    host: str,
    kind: str,
    family: str,
    drive: str,
    parts: tuple[str, ...],
    source: Source,
    stats: CollectStats,
    progress: Progress | None,
) -> None:
    if node.kind == FILE:
        if case.already_collected(host, node.source_path, node.size, node.mtime):
            stats.skipped_duplicates += 1
            return
        row = case.store(
            node.open,
            host=host,
            kind=kind,
            logical_parts=[drive, *parts],
            source_path=node.source_path,
            collector=COLLECTOR,
            collector_version=COLLECTOR_VERSION,
            source_type=source.source_type,
            family=family,
            mtime=node.mtime,
            atime=node.atime,
            expected_size=node.size,
            extra=_node_extra(node),
            progress=progress,
        )
        if node.streams_fn is not None:
            # alternate data streams (images only): each one its own artifact, ``name:stream``, kind 'file'
            for stream in node.streams_fn():
                _store_node(
                    case,
                    stream,
                    host=host,
                    kind=ADS_KIND,
                    family=family,
                    drive=drive,
                    parts=(*parts[:-1], stream.name),
                    source=source,
                    stats=stats,
                    progress=progress,
                )
    else:
        reason = node.detail or f"not a regular file ({node.kind})"
        if node.kind == UNSAFE:
            reason = node.detail
        row = case.record_attempt(
            host=host,
            kind=kind,
            outcome="failure",
            source_path=node.source_path,
            collector=COLLECTOR,
            collector_version=COLLECTOR_VERSION,
            details=reason,
            source_type=source.source_type,
            family=family,
        )
    stats.add(row)


def _node_extra(node: VNode) -> dict[str, object] | None:
    if node.extra_fn is None:
        return None
    try:
        return node.extra_fn()
    except Exception as exc:  # facts are a bonus: their absence never costs the artifact
        return {"extra_error": f"{type(exc).__name__}: {exc}"}


def record_source_failures(case: Case, source: Source, *, host: str, stats: CollectStats) -> None:
    """Failure rows for problems met while reading the source (corrupt MFT entries, unreadable volumes)."""
    while source.failures:
        path, details = source.failures.pop(0)
        stats.add(
            case.record_attempt(
                host=host,
                kind="collection",
                outcome="failure",
                source_path=path,
                collector=COLLECTOR,
                collector_version=COLLECTOR_VERSION,
                details=details,
                source_type=source.source_type,
            )
        )


def _pattern_base(pattern: str) -> list[str]:
    """The literal folder a pattern starts from (for telling 'missing' from 'empty')."""
    base = []
    for seg in pattern.split("/"):
        if any(ch in seg for ch in "*?[{"):
            break
        base.append(seg)
    return base


def collect_volume(
    case: Case,
    source: Source,
    *,
    host: str | None,
    families: list[Family] | None = None,
    progress: Progress | None = None,
    stats: CollectStats | None = None,
) -> CollectStats:
    """Collect every declared family from each drive of a volume-like source."""
    stats = stats or CollectStats()
    families = families if families is not None else load_families()
    if not source.drives:
        raise ValueError(f"{source.location}: no volume found in this source ({'; '.join(source.notes)})")
    sysdrive = next((d for d, r in source.drives.items() if r.child("Windows") is not None), next(iter(source.drives)))
    sysroot = source.drives[sysdrive]
    if not host:
        host = computer_name(sysroot) or source.host_hint
        if not host:
            host = "unknown-host"
            log.warning("%s: no host name given (--host) or found in the SYSTEM hive; using %r", source.location, host)
    host = safe_host(host)
    stats.hosts.add(host)
    for note in source.notes:
        case.custody.append("note", source=source.location, note=note)
    ex = None
    claimed: set[str] = set()
    for fam in families:
        roots: list[tuple[str, VNode, str]] = []
        for pattern in fam.paths:
            for var, val in EXPAND.items():
                pattern = pattern.replace(var, val)
            if "%ExchangeInstallPath%" in pattern:
                if ex is None:
                    ex = exchange_root(source.drives, sysdrive, EXPAND)
                    stats.exchange = {"how": ex.how, "detail": ex.detail, "root": "/".join(ex.parts or ())}
                    case.custody.append(
                        "locate",
                        what="exchange_install_root",
                        host=host,
                        how=ex.how,
                        root="\\".join(ex.parts or ()),
                        detail=ex.detail,
                    )
                if ex.parts is None:
                    row = case.record_attempt(
                        host=host,
                        kind=fam.kind,
                        outcome="missing",
                        source_path=f"{source.location}::{pattern}",
                        collector=COLLECTOR,
                        collector_version=COLLECTOR_VERSION,
                        source_type=source.source_type,
                        family=fam.name,
                        details=f"Exchange install root not found: {ex.detail}",
                    )
                    stats.add(row)
                    continue
                pattern = pattern.replace("%ExchangeInstallPath%", "/".join(ex.parts))
                roots.append((ex.drive, source.drives[ex.drive], pattern))
                continue
            roots.append((sysdrive, sysroot, pattern))
        # the source's other drives (an image's D:, a KAPE D/ folder): the same declarations, collected where
        # the declared folder exists there, without 'missing' rows for the drives that lack it
        others = [
            (d, r, pattern, True)
            for _drive, _root, pattern in roots
            for d, r in source.drives.items()
            if d != _drive and resolve(r, _pattern_base(pattern)) is not None
        ]
        for drive, root, pattern, optional in [*((d, r, p, False) for d, r, p in roots), *others]:
            alternatives = expand_braces(pattern)
            literal = all(not any(ch in a for ch in "*?[") for a in alternatives)
            groups = [[a] for a in alternatives] if literal else [[pattern]]
            for group in groups:
                errors: list[str] = []
                found = 0
                for pat in group:
                    for m in glob(root, pat, errors=errors):
                        if m.node.kind == DIR:
                            continue
                        found += 1
                        if m.node.source_path in claimed:
                            continue
                        claimed.add(m.node.source_path)
                        _store_node(
                            case,
                            m.node,
                            host=host,
                            kind=fam.kind,
                            family=fam.name,
                            drive=drive,
                            parts=m.parts,
                            source=source,
                            stats=stats,
                            progress=progress,
                        )
                for err in errors:
                    stats.add(
                        case.record_attempt(
                            host=host,
                            kind=fam.kind,
                            outcome="failure",
                            source_path=err.split(": cannot list")[0],
                            collector=COLLECTOR,
                            collector_version=COLLECTOR_VERSION,
                            details=err,
                            source_type=source.source_type,
                            family=fam.name,
                        )
                    )
                if not found and not errors and not optional:
                    base = _pattern_base(group[0])
                    node = resolve(root, base)
                    exists = node is not None and node.kind == DIR and group[0].endswith("**")
                    outcome = "empty" if exists else "missing"
                    details = "folder exists but holds no files" if exists else "no file matches this path"
                    stats.add(
                        case.record_attempt(
                            host=host,
                            kind=fam.kind,
                            outcome=outcome,
                            source_path=f"{drive}:/{group[0]}",
                            collector=COLLECTOR,
                            collector_version=COLLECTOR_VERSION,
                            details=details,
                            source_type=source.source_type,
                            family=fam.name,
                        )
                    )
    record_source_failures(case, source, host=host, stats=stats)
    return stats


def guess_kind(path: str) -> str:
    """A loose file's kind from its name, as an analyst would file it."""
    name = os.path.basename(path).lower()
    ext = Path(name).suffix
    if ext == ".evtx":
        return "evtx"
    if name.endswith((".jsonl", ".ndjson", ".json.xz", ".json.gz", ".jsonl.gz", ".jsonl.xz", ".json.bz2")):
        return "event_json"  # event exports (Winlogbeat, OTRF, Velociraptor); plain .json is too broad
    if name in HIVE_NAMES or ext == ".hve" or (name.endswith(".dat") and name.startswith(("ntuser", "usrclass"))):
        return "registry_hive"
    if ext in (".log1", ".log2") and name.split(".")[0] in {n.split(".")[0] for n in HIVE_NAMES}:
        return "registry_hive"
    if ext in MEMORY_EXTENSIONS:
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


def collect_files(
    case: Case,
    source: Source,
    *,
    host: str | None,
    kind: str | None = None,
    link: str | None = None,
    progress: Progress | None = None,
    stats: CollectStats | None = None,
) -> CollectStats:
    """Collect loose files and memory images (``link``: None to copy, 'reference' or 'hardlink')."""
    stats = stats or CollectStats()
    host = safe_host(host or "unknown-host")
    stats.hosts.add(host)
    base = source.location if source.source_type == "files" and os.path.isdir(source.location) else None
    for path in source.files:
        k = kind or ("memory_image" if source.source_type == "memory" else guess_kind(path))
        rel = os.path.relpath(path, base) if base else os.path.basename(path)
        parts = ["memory" if k == "memory_image" else "loose", *Path(rel).parts]
        try:
            st = os.lstat(path)
            problem = None if stat.S_ISREG(st.st_mode) else "not a regular file (link, device, fifo or socket)"
        except OSError as exc:  # gone since it was listed
            problem = f"{type(exc).__name__}: {exc}"
        if problem:  # reading a fifo would block forever; links are never followed
            row = case.record_attempt(
                host=host,
                kind=k,
                outcome="failure",
                source_path=path,
                collector="triage.collectors.files",
                collector_version=COLLECTOR_VERSION,
                details=problem,
                source_type=source.source_type,
                family="memory" if k == "memory_image" else "loose",
            )
            stats.add(row)
            continue
        if case.already_collected(host, path, st.st_size, st.st_mtime):
            stats.skipped_duplicates += 1
            continue
        storage = link or "copy"
        row = case.store(
            lambda p=path: open_source(p),
            host=host,
            kind=k,
            logical_parts=parts,
            source_path=path,
            collector="triage.collectors.files",
            collector_version=COLLECTOR_VERSION,
            source_type=source.source_type,
            family="memory" if k == "memory_image" else "loose",
            mtime=st.st_mtime,
            atime=st.st_atime,
            expected_size=st.st_size,
            storage=storage,
            reference_path=path if storage != "copy" else None,
            progress=progress,
        )
        stats.add(row)
    return stats
