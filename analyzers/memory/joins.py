"""Memory joined with the rest of the host: one host-scope unit that runs after the ``memory`` analyzer.

The memory analyzer keeps Volatility's tables under ``results/memory/<evidence_id>/``; this unit reads them (each
checked against the sha256 its ``index.json`` records) beside the host's other evidence and writes a finding for
each disagreement, with both pieces of evidence in its attributes:

* web pages and compiled ``App_Web_*.dll`` assemblies the kernel has file objects for (filescan) against the
  collected web roots (manifest paths and hashes): named in memory, absent from a folder that was collected; and
  web shell code YARA found in process memory (vadyarascan, raw scan) that no collected web file holds (the page
  that served it was changed or deleted). Pages found on both sides are counted, not reported;
* processes (pslist + psscan) against process-creation events of the host (Security 4688, Sysmon 1): a process
  started while a log that records process creation was running, with no event for it, points to cleared or
  missing records. A process outside every log's span is counted as "not covered", never reported;
* remote addresses of connections (netscan) against the client addresses of the IIS and HttpProxy logs;
* process minidumps on disk against the log records of their making (process creation and access events naming
  the dump file or a dumping tool, shortly before the dump was written).

Every join reads the product's one reader of each format: the memory analyzer's tables and derivations, the EVTX
reader, the Exchange/IIS log reader the super-timeline uses, the minidump parser. Each join says in the unit's
coverage finding whether it ran, over what, and why not.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any

from triage.case import ManifestRow
from triage.errors import Skip
from triage.finding import Finding
from triage.indicators import indicator_list, rule_metas, server_pages
from triage.lazyimport import lazy_module
from triage.registry import Analyzer, Unit, logical_path, register

if TYPE_CHECKING:
    from analyzers.memory import derive, minidump
else:  # loaded on first use: every host with an event log plans this analyzer, most have no memory to join
    derive = lazy_module("analyzers.memory.derive")
    minidump = lazy_module("analyzers.memory.minidump")

log = logging.getLogger(__name__)

RULES = rule_metas("rulemeta/memory_joins.yaml")
TABLES = ("pslist", "psscan", "cmdline", "netscan", "filescan", "vadyarascan", "yara_raw")
# the creation events a log must hold for it to vouch for the processes started in its span
CREATION_EVENTS = {("security", 4688), ("microsoft-windows-sysmon/operational", 1)}
ACCESS_EVENTS = {("microsoft-windows-sysmon/operational", 10), ("microsoft-windows-sysmon/operational", 11)}
# 4719 (system audit policy changed) for the Process Creation subcategory: success auditing removed / added
POLICY_EVENT = ("security", 4719)
PROCESS_CREATION_SUBCATEGORY = "{0cce922b-69ae-11d9-bed3-505054503030}"
SUCCESS_REMOVED, SUCCESS_ADDED = "%%8448", "%%8449"
CREATION_TOLERANCE = timedelta(seconds=60)  # EPROCESS CreateTime vs the event's time (clock steps, slow audit)
# processes the kernel makes itself, with no creation event on any Windows version
KERNEL_PROCESSES = frozenset({"system", "registry", "secure system", "memcompression", "memory compression"})
DUMP_BEFORE = timedelta(hours=6)  # how long before a dump was written the log records of its making may be
DUMP_AFTER = timedelta(minutes=10)
MAX_EVENTS = 2_000_000  # event rows kept from the host's logs (a few small fields each)
MAX_FINDINGS = 200  # findings per join; the rest are counted in the coverage finding
MAX_WEB_READ = 32 << 20  # bytes of one web file searched for code memory holds
MAX_SNIPPETS = 500
MIN_SNIPPET = 8
DUMP_KINDS = ("suspicious_file", "file")
LOG_KINDS = ("iis_log", "exchange_log")


def path_key(path: str) -> str:
    """A Windows path as both sides can spell it: no device or drive prefix, backslashes, lower case."""
    p = str(path).replace("/", "\\").lower()
    if p.startswith("\\device\\"):
        parts = p.split("\\", 3)  # '', 'device', 'harddiskvolume2', rest
        p = "\\" + (parts[3] if len(parts) > 3 else "")
    elif len(p) >= 2 and p[1] == ":":
        p = p[2:]
    return p if p.startswith("\\") else "\\" + p


# trees collected whole, whose subfolders come and go (ASP.NET makes one per compilation): a file missing from
# such a tree is missing even when its own subfolder is gone with it
COLLECTED_TREES = ("\\temporary asp.net files\\",)


def _tree(key: str) -> str:
    """The collected-whole tree (and its application folder) ``key`` lies in, or ''."""
    for marker in COLLECTED_TREES:
        at = key.find(marker)
        if at >= 0:
            app = key[at + len(marker) :].split("\\", 1)[0]
            return key[: at + len(marker)] + app
    return ""


def _parent(key: str) -> str:
    return key.rsplit("\\", 1)[0]


def _ext(key: str) -> str:
    name = key.rsplit("\\", 1)[-1]
    return name[name.rfind(".") :] if "." in name else ""


def _iso(ts: Any) -> str | None:
    return ts.isoformat() if isinstance(ts, datetime) else None


@dataclass
class Memory:
    """One memory image's tables, as the memory analyzer stored them."""

    row: ManifestRow
    folder: str  # case-relative
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Event:
    """One process creation or access event, with where it is."""

    row: ManifestRow
    channel: str
    event_id: int
    record_id: int
    ts: datetime
    pid: int | None
    image: str
    cmdline: str
    parent: str = ""
    target: str = ""  # Sysmon 10: TargetImage; Sysmon 11: TargetFilename

    def as_dict(self) -> dict[str, Any]:
        return {
            "log": logical_path(self.row) or self.row.source_path,
            "evidence_id": self.row.artifact_id,
            "channel": self.channel,
            "event_id": self.event_id,
            "record_id": self.record_id,
            "ts": self.ts.isoformat(),
            "pid": self.pid,
            "image": self.image,
            "cmdline": self.cmdline[:500],
            "parent": self.parent,
            "target": self.target,
        }


@dataclass
class Span:
    """What one log file vouches for: its first and last record, and how many creation events it holds."""

    row: ManifestRow
    channel: str
    first: datetime | None
    last: datetime | None
    creations: int = 0
    # times process creation auditing was switched off (4719) and back on (None: still off at the last record)
    off: list[tuple[datetime, datetime | None]] = field(default_factory=list)

    def covers(self, ts: datetime) -> bool:
        """Whether the log vouches for a process started at ``ts``: it recorded process creation (it holds such
        events), ``ts`` lies between its first and last record, and auditing was not switched off then."""
        if not (self.creations and self.first and self.last and self.first <= ts <= self.last):
            return False
        return not any(a <= ts and (b is None or ts < b) for a, b in self.off)

    def as_dict(self) -> dict[str, Any]:
        return {
            "log": logical_path(self.row) or self.row.source_path,
            "evidence_id": self.row.artifact_id,
            "sha256": self.row.sha256,
            "channel": self.channel,
            "first": _iso(self.first),
            "last": _iso(self.last),
            "creation_events": self.creations,
            "auditing_off": [[_iso(a), _iso(b)] for a, b in self.off],
        }


def _pid(value: Any) -> int | None:
    """A process id as 4688 (hex text) or Sysmon (decimal) writes it."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


@dataclass
class Logs:
    """The host's process creation and access events, and the span each log file vouches for."""

    events: list[Event] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    by_pid: dict[int, list[Event]] = field(default_factory=lambda: defaultdict(list))


def read_logs(unit: Unit, rows: Iterable[ManifestRow]) -> Logs:
    """Process creation (4688, Sysmon 1) and access/file events (Sysmon 10, 11) of the host's event logs."""
    import pandas as pd

    from analyzers.eventlog.reader import iter_events
    from triage.formats.evtx import ReadStats

    out = Logs()
    wanted = CREATION_EVENTS | ACCESS_EVENTS | {POLICY_EVENT}
    for row in rows:
        stats = ReadStats()
        creations = 0
        switches: list[tuple[datetime, bool]] = []  # (time, auditing on) from 4719 for Process Creation
        try:
            for df in iter_events(unit.member_path(row), row.kind, stats):
                channel = df["Channel"].astype("string").str.lower().fillna("")
                eid = df["EventID"].astype("Int64").fillna(-1)
                keep = pd.Series(False, index=df.index)
                for c, e in wanted:
                    keep |= (channel == c) & (eid == e)
                sub = df.loc[keep.to_numpy(dtype=bool)]
                if not len(sub):
                    continue

                def text(*names: str, sub: pd.DataFrame = sub) -> list[str]:
                    """The first non-empty of ``names`` per row, as plain strings (columns as lists: cheap)."""
                    got = pd.Series(pd.NA, index=sub.index, dtype="string")
                    for n in names:
                        if n in sub.columns:
                            got = got.fillna(sub[n].astype("string").replace("", pd.NA))
                    return [str(v) for v in got.fillna("").tolist()]

                chans, ids = text("Channel"), [int(v) for v in sub["EventID"].tolist()]
                times = sub["TimeCreated"].tolist()
                rids = text("EventRecordID")
                pids, npids = text("ProcessId"), text("NewProcessId")
                images, cmds = text("Image", "NewProcessName", "SourceImage"), text("CommandLine")
                parents, targets = text("ParentImage", "ParentProcessName"), text("TargetImage", "TargetFilename")
                guids, changes = text("SubcategoryGuid"), text("AuditPolicyChanges")
                for i, (chan, event_id, ts) in enumerate(zip(chans, ids, times, strict=True)):
                    key = (chan.lower(), event_id)
                    creations += key in CREATION_EVENTS
                    if ts is None or ts is pd.NaT:
                        continue
                    if key == POLICY_EVENT:
                        on, off = SUCCESS_ADDED in changes[i], SUCCESS_REMOVED in changes[i]
                        if guids[i].lower() == PROCESS_CREATION_SUBCATEGORY and (on or off):
                            switches.append((ts.to_pydatetime(), on))
                        continue
                    if len(out.events) >= MAX_EVENTS:
                        continue
                    sysmon = key[0].startswith("microsoft-windows-sysmon")
                    ev = Event(
                        row=row,
                        channel=chan,
                        event_id=event_id,
                        record_id=int(rids[i]) if rids[i].isdigit() else 0,
                        ts=ts.to_pydatetime(),
                        pid=_pid(pids[i] if sysmon else npids[i]),
                        image=images[i],
                        cmdline=cmds[i],
                        parent=parents[i],
                        target=targets[i],
                    )
                    out.events.append(ev)
                    if key in CREATION_EVENTS and ev.pid is not None:
                        out.by_pid[ev.pid].append(ev)
        except Exception as exc:  # hostile bytes: this log only, with a recorded warning
            unit.warn(f"{logical_path(row) or row.source_path}: {type(exc).__name__}: {exc}")
            out.unreadable.append(logical_path(row) or row.source_path)
            continue
        for w in stats.warnings[:5]:
            unit.warn(f"{logical_path(row) or row.source_path}: {w}")
        if not stats.records and stats.warnings:
            out.unreadable.append(logical_path(row) or row.source_path)
        channel = max(stats.channels, key=lambda c: stats.channels[c]) if stats.channels else ""
        first = stats.first.to_pydatetime() if stats.first is not None else None
        last = stats.last.to_pydatetime() if stats.last is not None else None
        out.spans.append(Span(row, channel, first, last, creations, _off_intervals(switches)))
    if len(out.events) >= MAX_EVENTS:
        unit.warn(f"more than {MAX_EVENTS} process events: the rest were not joined")
    return out


@register
class MemoryJoinsAnalyzer(Analyzer):
    """Memory joined with disk and logs: web files, processes, connections and minidumps of one host."""

    name = "memory_joins"
    version = "1.0.0"
    scope = "host"
    after = ("memory",)  # reads the tables the memory analyzer stores
    consumes = ("memory_image", "evtx", "event_json", "web_file", *LOG_KINDS, *DUMP_KINDS)
    # rule metadata (signatures/rulemeta/memory_joins.yaml) only: the joins are code, with no rule files to load
    batch = False
    # pure Python over tables and our readers: a host of a few small files (no memory image, so a skip) needs no
    # worker process; with an image the group is far past the in-process size bound and runs in the pool
    in_process = True

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        images = [m for m in unit.members if m.kind == "memory_image"]
        dumps = [m for m in unit.members if m.kind in DUMP_KINDS and _is_minidump(unit.member_path(m))]
        if not images and not dumps:
            raise Skip("no memory image or minidump of this host: nothing to join")
        coverage: dict[str, dict[str, Any]] = {}
        memories = [m for m in (self._memory(unit, row, coverage) for row in images) if m is not None]
        logs = read_logs(unit, [m for m in unit.members if m.kind in ("evtx", "event_json")])
        yield from self._web(unit, memories, coverage)
        yield from self._processes(unit, memories, logs, coverage)
        yield from self._network(unit, memories, coverage)
        yield from self._dumps(unit, dumps, logs, coverage)
        if "tables" in coverage:
            coverage["tables"]["why"] = coverage["tables"]["why"].rstrip("; ")
        lines = [f"{name}: {c['status']}" + (f" ({c['why']})" if c.get("why") else "") for name, c in coverage.items()]
        yield unit.finding(
            RULES["MEM-JOIN-COVERAGE"],
            title=f"Memory joined with disk and logs of {unit.host}: what was compared",
            message="; ".join(lines) + ".",
            location="coverage",
            attributes={
                "joins": coverage,
                "memory_images": [m.row.artifact_id for m in memories],
                "logs": [s.as_dict() for s in logs.spans],
                "unreadable_logs": logs.unreadable,
            },
        )

    # -- inputs -----------------------------------------------------------------------------------------------
    def _memory(self, unit: Unit, row: ManifestRow, coverage: dict[str, dict[str, Any]]) -> Memory | None:
        """The image's tables, each checked against the hash the memory analyzer's index records."""
        from analyzers.memory.tables import read_rows, sha256_file

        folder = unit.case_dir / "results" / "memory" / row.artifact_id
        rel = folder.relative_to(unit.case_dir).as_posix()
        try:
            index = json.loads((folder / "index.json").read_text())
            entries = index.get("tables") or {}
        except (OSError, ValueError, AttributeError) as exc:
            unit.warn(f"{rel}: no readable index of memory tables ({type(exc).__name__}); run the memory analyzer")
            coverage.setdefault("tables", {"status": "missing", "why": ""})["why"] += f"{rel} has no index; "
            return None
        mem = Memory(row, rel)
        for name in TABLES:
            entry = entries.get(name) if isinstance(entries, dict) else None
            path = folder / f"{name}.parquet"
            if not isinstance(entry, dict) or entry.get("status") != "ok" or not path.is_file():
                continue
            try:
                if sha256_file(path) != entry.get("sha256"):
                    unit.warn(f"{rel}/{name}.parquet differs from the hash its index records: left out")
                    continue
                mem.tables[name] = read_rows(path)
            except Exception as exc:  # a damaged table costs only itself
                unit.warn(f"{rel}/{name}.parquet: {type(exc).__name__}: {exc}")
        return mem

    # -- a. web files -----------------------------------------------------------------------------------------
    def _web(self, unit: Unit, memories: list[Memory], coverage: dict[str, dict[str, Any]]) -> Iterator[Finding]:
        disk: dict[str, ManifestRow] = {}
        for m in unit.members:
            lp = logical_path(m)
            if lp and m.kind not in ("memory_image", "evtx", "event_json", *LOG_KINDS):
                disk[path_key(lp)] = m
        folders = {(_parent(k), _ext(k)) for k in disk}
        trees = {t for k in disk if (t := _tree(k))}
        web_ext = (*server_pages(), ".dll")
        have = [m for m in memories if "filescan" in m.tables]
        if not have:
            coverage["web_files"] = {"status": "not run", "why": "no filescan table of a memory image"}
        else:
            matched = missing = uncovered = 0
            out: list[Finding] = []
            for mem in have:
                seen: set[str] = set()
                for r in mem.tables["filescan"]:
                    name = str(r.get("Name") or "")
                    key = path_key(name)
                    if not key.endswith(web_ext) or key in seen:
                        continue
                    if key.endswith(".dll") and not derive._APP_WEB.search(key):
                        continue
                    seen.add(key)
                    if key in disk:
                        matched += 1
                    elif (_parent(key), _ext(key)) in folders or (_tree(key) or "\0") in trees:
                        missing += 1
                        if len(out) < MAX_FINDINGS:
                            out.append(self._not_on_disk(unit, mem, r, key, disk))
                    else:
                        uncovered += 1
            yield from out
            coverage["web_files"] = {
                "status": "ran",
                "matched": matched,
                "in_memory_not_on_disk": missing,
                "not_covered": uncovered,
                "why": f"{matched} page(s) in memory and on disk, {missing} missing from collected folders, "
                f"{uncovered} in folders not collected (not covered)",
            }
        yield from self._web_code(unit, memories, disk, coverage)

    def _not_on_disk(
        self, unit: Unit, mem: Memory, r: dict[str, Any], key: str, disk: dict[str, ManifestRow]
    ) -> Finding:
        siblings = sorted(logical_path(row) for k, row in disk.items() if _parent(k) == _parent(key))[:10]
        name = str(r.get("Name"))
        return unit.finding(
            RULES["MEM-JOIN-WEB-NOT-ON-DISK"],
            title=f"In memory, not on disk: {name}",
            message=f"The kernel of {Path(mem.row.relpath or '').name} has a file object for {name}, but the "
            f"collected folder {_parent(key)} holds no such file: it was deleted or renamed after it was used.",
            location=f"file:{key}",
            evidence=mem.row,
            attributes={
                "memory_table": f"{mem.folder}/filescan.parquet",
                "memory_path": name,
                "memory_offset": derive._offset(r),
                "disk_folder": _parent(key),
                "disk_files_in_folder": siblings,
            },
        )

    def _web_code(
        self, unit: Unit, memories: list[Memory], disk: dict[str, ManifestRow], coverage: dict[str, dict[str, Any]]
    ) -> Iterator[Finding]:
        """Web shell code YARA matched in memory, looked for in the bytes of every collected web file."""
        hits: list[tuple[Memory, str, dict[str, Any], bytes]] = []
        for mem in memories:
            for table, col in (("vadyarascan", "Value"), ("yara_raw", "Data")):
                for r in mem.tables.get(table, ()):
                    rule, data = str(r.get("Rule") or ""), r.get(col)
                    if "webshell" not in rule.lower().replace("_", "") or not isinstance(data, bytes | bytearray):
                        continue
                    if len(hits) < MAX_SNIPPETS:
                        hits.append((mem, table, r, bytes(data)))
        if not hits:
            coverage["web_code"] = {"status": "not run", "why": "no web shell YARA match in a memory table"}
            return
        forms = {id(h): _forms(h[3]) for h in hits}
        found: dict[int, str] = {}
        web = [row for row in disk.values() if row.kind == "web_file"]
        for row in web:
            try:
                with open(unit.member_path(row), "rb") as fh:
                    body = fh.read(MAX_WEB_READ).lower()
            except OSError as exc:
                unit.warn(f"{logical_path(row)}: {exc}")
                continue
            for h in hits:
                if id(h) not in found and any(f and f in body for f in forms[id(h)]):
                    found[id(h)] = logical_path(row)
        groups: dict[tuple[str, Any, bytes], list[tuple[Memory, str, dict[str, Any], bytes]]] = defaultdict(list)
        for h in hits:
            if id(h) not in found and any(len(f) >= MIN_SNIPPET for f in forms[id(h)]):
                groups[(str(h[2].get("Rule")), h[2].get("PID"), h[3][:64])].append(h)
        pages = {
            path_key(str(r.get("Name"))): str(r.get("Name"))
            for m in memories
            for r in m.tables.get("filescan", ())
            if derive._web_place(path_key(str(r.get("Name") or ""))) is not None
        }
        ordered = sorted(groups.items(), key=lambda g: (g[0][0], str(g[0][1])))
        for (rule, pid, snippet), group in ordered[:MAX_FINDINGS]:
            mem, table, r, _data = group[0]
            candidates = [
                {"path": name, "on_disk": k in disk, "sha256": disk[k].sha256 if k in disk else None}
                for k, name in sorted(pages.items())
            ]
            changed = [c for c in candidates if c["on_disk"]]
            where = (
                f"{r.get('ImageFileName') or r.get('Process') or 'process'} (PID {pid})"
                if pid is not None
                else "raw memory"
            )
            yield unit.finding(
                RULES["MEM-JOIN-WEB-CODE-NOT-ON-DISK"],
                title=f"Web shell code in {where} is in no collected web file ({rule})",
                message=f"YARA rule {rule} matched web shell code in {where} ({len(group)} match(es)); none of the "
                f"{len(web)} collected web files holds those bytes, so the page that served it was changed or "
                "deleted after use"
                + (
                    ". Pages in web shell folders memory names and the disk holds (changed?): "
                    + ", ".join(f"{c['path']} sha256 {c['sha256']}" for c in changed[:5])
                    if changed
                    else ""
                )
                + ".",
                location=f"{table}:{rule}:pid:{pid}",
                evidence=mem.row,
                attributes={
                    "memory_table": f"{mem.folder}/{table}.parquet",
                    "rule": rule,
                    "pid": pid,
                    "process": r.get("ImageFileName") or r.get("Process"),
                    "offsets": [hex(x[2]["Offset"]) for x in group[:20] if isinstance(x[2].get("Offset"), int)],
                    "snippet": snippet[:64].hex(),
                    "web_files_searched": len(web),
                    "memory_pages": candidates[:50],
                },
            )
        coverage["web_code"] = {
            "status": "ran",
            "matched": len(found),
            "not_on_disk": sum(len(g) for g in groups.values()),
            "why": f"{len(hits)} web shell match(es) in memory searched in {len(web)} collected web file(s), "
            f"{len(found)} found on disk",
        }

    # -- b. processes -----------------------------------------------------------------------------------------
    def _processes(
        self, unit: Unit, memories: list[Memory], logs: Logs, coverage: dict[str, dict[str, Any]]
    ) -> Iterator[Finding]:
        have = [m for m in memories if "pslist" in m.tables or "psscan" in m.tables]
        if not have:
            coverage["processes"] = {"status": "not run", "why": "no pslist or psscan table of a memory image"}
            return
        vouching = [s for s in logs.spans if s.creations]
        if not vouching:
            why = "no event log of this host holds process creation events (Security 4688 or Sysmon 1)"
            coverage["processes"] = {"status": "not covered", "why": why}
            return
        matched = missing = uncovered = skipped = 0
        for mem in have:
            procs = derive.processes(
                mem.tables.get("pslist", ()), mem.tables.get("psscan", ()), mem.tables.get("cmdline", ())
            )
            for p in procs:
                if isinstance(p.created, datetime) and p.created.tzinfo is None:
                    p.created = p.created.replace(tzinfo=UTC)  # a table written without its zone: UTC, as Volatility
            recording = _recording_since(procs, logs)
            for p in sorted(procs, key=lambda p: (str(p.created), p.pid)):
                if (
                    not isinstance(p.created, datetime)  # none, or text a damaged table kept
                    or not isinstance(p.pid, int)
                    or p.pid in (0, 4)
                    or derive.base_name(p.name) in KERNEL_PROCESSES
                ):
                    skipped += 1
                    continue
                spans = [s for s in vouching if s.covers(p.created)]
                if not spans or (recording is not None and p.created < recording - CREATION_TOLERANCE):
                    # outside every log, or started after the boot before anything recorded a process creation
                    # (smss, csrss, wininit, services, lsass start before the event log and Sysmon services)
                    uncovered += 1
                    continue
                if any(_same_process(p, e) for e in logs.by_pid.get(p.pid, ())):
                    matched += 1
                    continue
                missing += 1
                if missing > MAX_FINDINGS:
                    continue
                yield unit.finding(
                    RULES["MEM-JOIN-PROC-NO-EVENT"],
                    title=f"No creation event for {p.name} (PID {p.pid}) started {p.created:%Y-%m-%d %H:%M:%S} UTC",
                    message=f"{p.name} (PID {p.pid}, parent PID {p.ppid}) started at {p.created:%Y-%m-%d %H:%M:%S} "
                    f"UTC according to memory, while "
                    + ", ".join(
                        f"{s.as_dict()['log']} ({s.first:%Y-%m-%d %H:%M} to {s.last:%Y-%m-%d %H:%M})"
                        for s in spans
                        if s.first and s.last
                    )
                    + " recorded process creation; none of them has its event: records were cleared or lost.",
                    location=f"pid:{p.pid}",
                    ts=p.created,
                    ts_desc="process created (memory)",
                    evidence=mem.row,
                    attributes={
                        "pid": p.pid,
                        "ppid": p.ppid,
                        "process": p.name,
                        "created": _iso(p.created),
                        "cmdline": p.cmdline[:500],
                        "in_pslist": p.in_pslist,
                        "in_psscan": p.in_psscan,
                        "memory_tables": [f"{mem.folder}/{t}.parquet" for t in ("pslist", "psscan") if t in mem.tables],
                        "logs": [s.as_dict() for s in spans],
                    },
                )
        coverage["processes"] = {
            "status": "ran",
            "matched": matched,
            "no_event": missing,
            "not_covered": uncovered,
            "kernel_or_untimed": skipped,
            "why": f"{matched} process(es) matched a creation event, {missing} had none while a log covered their "
            f"start, {uncovered} started outside every log's span (not covered)",
        }

    # -- c. network -------------------------------------------------------------------------------------------
    def _network(self, unit: Unit, memories: list[Memory], coverage: dict[str, dict[str, Any]]) -> Iterator[Finding]:
        conns: dict[str, list[tuple[Memory, dict[str, Any]]]] = defaultdict(list)
        for mem in memories:
            for r in mem.tables.get("netscan", ()):
                ip = derive._ip(r.get("ForeignAddr"))
                if ip is not None and ip.is_global:  # LAN clients and the back end are w3wp's everyday peers
                    conns[str(ip)].append((mem, r))
        web_logs = [m for m in unit.members if m.kind in LOG_KINDS]
        if not any("netscan" in m.tables for m in memories):
            coverage["network"] = {"status": "not run", "why": "no netscan table of a memory image"}
            return
        if not web_logs:
            coverage["network"] = {"status": "not run", "why": "no IIS or HttpProxy log of this host"}
            return
        requests = _web_requests(unit, web_logs, set(conns))
        n = 0
        for remote in sorted(conns):
            rows = requests.get(remote)
            if not rows:
                continue
            by_pid: dict[Any, list[tuple[Memory, dict[str, Any]]]] = defaultdict(list)
            for mem, r in conns[remote]:
                by_pid[r.get("PID")].append((mem, r))
            for pid, held in sorted(by_pid.items(), key=lambda kv: str(kv[0])):
                n += 1
                if n > MAX_FINDINGS:
                    break
                mem, r = held[0]
                owner = r.get("Owner") or "process"
                yield unit.finding(
                    RULES["MEM-JOIN-NET-WEBLOG"],
                    title=f"{remote} connected to {owner} (PID {pid}) and sent {len(rows)} logged web request(s)",
                    message=f"Memory holds a connection from {owner} (PID {pid}) with {remote} "
                    f"({r.get('LocalAddr')}:{r.get('LocalPort')} -> {remote}:{r.get('ForeignPort')}, "
                    f"{r.get('State')}); "
                    f"the web logs hold {len(rows)} request(s) from {remote}, first {rows[0]['ts']}: "
                    + "; ".join(f"{x['method']} {x['uri']} ({x['log']} line {x['line']})" for x in rows[:3])
                    + ". The web activity and this process are tied by that address.",
                    location=f"ip:{remote}:pid:{pid}",
                    evidence=mem.row,
                    attributes={
                        "remote_address": remote,
                        "pid": pid,
                        "process": owner,
                        "connection": {
                            k: (_iso(v) if isinstance(v, datetime) else v)
                            for k, v in r.items()
                            if k
                            in ("Proto", "LocalAddr", "LocalPort", "ForeignAddr", "ForeignPort", "State", "Created")
                        },
                        "memory_table": f"{mem.folder}/netscan.parquet",
                        "requests": len(rows),
                        "first_requests": rows[:10],
                    },
                )
        coverage["network"] = {
            "status": "ran",
            "why": f"{len(conns)} public remote address(es) in memory compared with {len(web_logs)} web log(s); "
            f"{sum(1 for ip in conns if requests.get(ip))} seen in both",
        }

    # -- minidumps and the log records of their making --------------------------------------------------------
    def _dumps(
        self, unit: Unit, dumps: list[ManifestRow], logs: Logs, coverage: dict[str, dict[str, Any]]
    ) -> Iterator[Finding]:
        if not dumps:
            coverage["minidumps"] = {"status": "not run", "why": "no minidump on disk"}
            return
        if not logs.spans:
            coverage["minidumps"] = {"status": "not run", "why": "no event log of this host"}
            return
        tools = indicator_list("dump_tools")
        events = sorted(logs.events, key=lambda e: e.ts)
        times = [e.ts for e in events]
        tied_total = 0
        for row in dumps:
            where = logical_path(row) or row.source_path
            try:
                info = minidump.parse_file(unit.member_path(row))
            except minidump.MinidumpError as exc:
                unit.warn(f"minidump {where}: {exc}")
                continue
            if info.timestamp is None:
                continue
            name = PureWindowsPath(where).name.lower()
            lo = bisect.bisect_left(times, info.timestamp - DUMP_BEFORE)
            hi = bisect.bisect_right(times, info.timestamp + DUMP_AFTER)
            tied = [e for e in events[lo:hi] if _names_dump(e, name, info, tools)]
            if not tied:
                continue
            tied_total += 1
            tool = info.tool(tools) or next(
                (t for t in tools for e in tied if t in (e.image + " " + e.cmdline).lower()), ""
            )
            first = tied[0]
            yield unit.finding(
                RULES["MEM-JOIN-DUMP-LOG"] if info.is_lsass else RULES["MEM-JOIN-DUMP-LOG-OTHER"],
                title=f"{where}: dump of {info.process_name or 'a process'} and the log record of its making",
                message=f"{where} (sha256 {row.sha256}) is a {'full-memory ' if info.full_memory else ''}minidump of "
                f"{info.process_name or 'an unidentified process'}"
                + (f" (PID {info.process_id})" if info.process_id is not None else "")
                + f" written {info.timestamp:%Y-%m-%d %H:%M:%S} UTC"
                + (" holding the LSA modules' memory" if info.holds_lsa_secrets else "")
                + f"; {first.channel} record {first.record_id} (event {first.event_id}, {first.ts:%Y-%m-%d %H:%M:%S} "
                f"UTC) names it: {(first.cmdline or first.target or first.image)[:300]}"
                + (f" ({len(tied)} record(s) in all)" if len(tied) > 1 else "")
                + ".",
                location=where,
                ts=info.timestamp,
                ts_desc="minidump written",
                evidence=row,
                attributes={
                    "path": where,
                    "sha256": row.sha256,
                    "process": info.process_name,
                    "process_id": info.process_id,
                    "dump_written": _iso(info.timestamp),
                    "full_memory": info.full_memory,
                    "lsa_modules_held": info.lsa_coverage(),
                    "holds_lsa_secrets": info.holds_lsa_secrets,
                    "tool": tool,
                    "records": [e.as_dict() for e in tied[:20]],
                },
            )
        coverage["minidumps"] = {
            "status": "ran",
            "why": f"{len(dumps)} minidump(s) compared with {len(logs.events)} process event(s); {tied_total} tied",
        }


def _off_intervals(switches: list[tuple[datetime, bool]]) -> list[tuple[datetime, datetime | None]]:
    """The times process creation auditing was off, from its 4719 switches in time order."""
    out: list[tuple[datetime, datetime | None]] = []
    off_since: datetime | None = None
    for ts, on in sorted(switches, key=lambda x: x[0]):
        if not on and off_since is None:
            off_since = ts
        elif on and off_since is not None:
            out.append((off_since, ts))
            off_since = None
    if off_since is not None:
        out.append((off_since, None))
    return out


def _is_minidump(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return minidump.is_minidump(fh.read(8))
    except OSError:
        return False


def _recording_since(procs: Iterable[derive.Proc], logs: Logs) -> datetime | None:
    """When the host's logs were first seen recording a process creation after the image's last boot (the
    start of the System process, else of the earliest process): the boot itself, before the event log and Sysmon
    services ran, is never recorded. None when memory gives no boot time (the logs' spans are taken as they are);
    ``datetime.max`` when nothing was recorded since the boot (no process of this boot is covered)."""
    timed = [(p.pid, p.created) for p in procs if isinstance(p.created, datetime)]
    # the System process starts at boot; when its time is unreadable, the earliest process (smss) is the boot
    boot = min((t for pid, t in timed if pid == 4), default=None) or min((t for _, t in timed), default=None)
    if boot is None:
        return None
    after = [e.ts for e in logs.events if (e.channel.lower(), e.event_id) in CREATION_EVENTS and e.ts >= boot]
    return min(after, default=datetime.max.replace(tzinfo=UTC))


def _same_process(p: derive.Proc, e: Event) -> bool:
    """A creation event of this memory process: same PID, time within tolerance, and a name that fits
    (EPROCESS keeps 14 characters of it)."""
    if p.created is None or abs(e.ts - p.created) > CREATION_TOLERANCE:
        return False
    return (
        not e.image
        or not p.name
        or derive.name_is(e.image, derive.base_name(p.name))
        or derive.name_is(p.name, derive.base_name(e.image))
    )


def _names_dump(e: Event, name: str, info: minidump.MinidumpInfo, tools: tuple[str, ...]) -> bool:
    """Whether an event names the dump file, or is a dumping tool at work on the dumped process."""
    text = f"{e.cmdline} {e.target} {e.image}".lower()
    if name and name in text:
        return True
    tool = any(t in (e.image + " " + e.cmdline).lower() for t in tools)
    if not tool:
        return False
    proc = info.process_name
    if e.event_id == 10:  # Sysmon process access: the tool opened the dumped process
        return bool(proc) and derive.base_name(e.target) == proc
    return bool(proc and proc.rsplit(".", 1)[0] in e.cmdline.lower()) or (
        info.process_id is not None and f" {info.process_id}" in f" {e.cmdline} "
    )


def _forms(data: bytes) -> tuple[bytes, ...]:
    """The lower-cased bytes of a match as a file may hold them: as matched, and narrowed from UTF-16LE."""
    low = data.lower()
    if len(data) >= 4 and data[1::2].count(0) >= len(data) // 2 - 1:
        return (low, data[0::2].lower())
    return (low,)


def _web_requests(unit: Unit, rows: list[ManifestRow], wanted: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Requests from the ``wanted`` client addresses in the host's web logs (the super-timeline's reader)."""
    from triage.case import Case
    from triage.timeline.events import SourceStats, weblog_events

    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if not wanted:
        return out
    case = Case.open(unit.case_dir)
    for row in rows:
        stats = SourceStats()
        try:
            for t in weblog_events(case, row, stats):
                if "client_ip" not in t.column_names:
                    continue
                for rec in t.select(["ts", "client_ip", "method", "uri", "status", "path", "line"]).to_pylist():
                    ip = derive._ip(rec.get("client_ip"))
                    if ip is None or str(ip) not in wanted or len(out[str(ip)]) >= 1000:
                        continue
                    out[str(ip)].append(
                        {
                            "ts": _iso(rec["ts"]),
                            "method": rec["method"],
                            "uri": (rec["uri"] or "")[:300],
                            "status": rec["status"],
                            "log": rec["path"],
                            "line": rec["line"],
                            "evidence_id": row.artifact_id,
                            "sha256": row.sha256,
                        }
                    )
        except Exception as exc:  # hostile bytes: this log only
            unit.warn(f"{logical_path(row) or row.source_path}: {type(exc).__name__}: {exc}")
        for w in stats.failed[:5]:
            unit.warn(w)
    for reqs in out.values():
        reqs.sort(key=lambda x: x["ts"] or "")
    return out
