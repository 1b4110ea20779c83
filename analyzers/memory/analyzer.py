"""The ``memory`` analyzer: one unit per memory image or minidump file.

For a memory image it runs, in order:

1. a symbol-free YARA scan of the raw image (works on any image, any OS), which also carves minidump
   headers out of memory and names the process each one holds;
2. Volatility 3 plugins (``PLUGINS``), each in a child process with a time limit, each table kept as
   evidence under ``results/memory/<evidence_id>/``; when ``windows.info`` finds no kernel symbol table
   the rest are skipped with one warning that names the kernel's PDB and GUID and says how to supply it;
3. findings derived from those tables (:mod:`.derive`).

A ``suspicious_file``/``file`` (or a memory image) that starts with ``MDMP`` is a process minidump: its
header and module list say which process was dumped and when (an lsass dump is critical).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analyzers.memory import derive, isolate, minidump, rawscan, settings, tables, vol, yararules
from analyzers.yara.options import YARA_SETS
from triage.errors import Skip
from triage.finding import Finding
from triage.formats import memory as memfmt
from triage.indicators import indicator_list, rule_metas
from triage.registry import Analyzer, Option, Unit, register

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PluginSpec:
    """A Volatility plugin to run: the table it makes, the plugin names to try (newest first), its options."""

    table: str
    names: tuple[str, ...]
    options: tuple[tuple[str, Any], ...] = ()
    yara: bool = False  # gets our compiled rules as yara_compiled_file


PLUGINS: tuple[PluginSpec, ...] = (
    PluginSpec("info", ("windows.info.Info",)),
    PluginSpec("pslist", ("windows.pslist.PsList",)),
    PluginSpec("psscan", ("windows.psscan.PsScan",)),
    PluginSpec("pstree", ("windows.pstree.PsTree",)),
    PluginSpec("cmdline", ("windows.cmdline.CmdLine",)),
    PluginSpec("netscan", ("windows.netscan.NetScan",)),
    PluginSpec("malfind", ("windows.malware.malfind.Malfind", "windows.malfind.Malfind")),
    PluginSpec("svcscan", ("windows.svcscan.SvcScan", "windows.malware.svcscan.SvcScan")),
    PluginSpec("dlllist", ("windows.dlllist.DllList",)),
    # every process's handles: the handles *to* lsass are in the other processes' tables
    PluginSpec("handles", ("windows.handles.Handles",)),
    PluginSpec("filescan", ("windows.filescan.FileScan",)),
    PluginSpec("vadyarascan", ("windows.vadyarascan.VadYaraScan",), yara=True),
)
TABLE_NAMES = tuple(p.table for p in PLUGINS)
CARVE_WINDOW = 16 * 1024 * 1024  # bytes after a carved minidump header we let the parser read
MAX_CARVES = 500
RULES = rule_metas("rulemeta/memory.yaml")
RAW_TABLE_LIMIT = 200_000  # raw YARA matches kept in yara_raw.parquet


def _plugin_job(
    image: str,
    names: tuple[str, ...],
    options: dict[str, Any],
    out_path: str,
    symbols: list[str],
    cache: str,
    progress: Callable[[float, str], None] | None = None,
    layer_key: vol.LayerKey | None = None,
    sidecar: str | None = None,
) -> dict[str, Any]:
    """Run in the child process: the first plugin name that exists, its table written to ``out_path``."""
    last: vol.VolatilityError | None = None
    for name in names:
        try:
            t0 = time.monotonic()
            table = vol.run_plugin(
                image,
                name,
                symbols=symbols,
                cache_dir=cache,
                progress=progress,
                layer_key=layer_key,
                sidecar=sidecar,
                **options,
            )
        except vol.UnknownPlugin as exc:
            last = exc
            continue
        except vol.VolatilityError as exc:
            return {"status": "error", "plugin": name, "error": exc.as_dict(), "layer_cache": exc.layer_cache or {}}
        meta = {"plugin": table.plugin, "image": os.path.basename(image), "seconds": f"{time.monotonic() - t0:.3f}"}
        tables.write_table(Path(out_path), table.columns, table.rows, meta)
        return {
            "status": "ok",
            "plugin": table.plugin,
            "rows": len(table.rows),
            "warnings": table.warnings[:10],
            "layer_cache": table.layer_cache,
        }
    return {"status": "error", "plugin": names[0], "error": (last or vol.UnknownPlugin(names[0])).as_dict()}


class _Steps:
    """The steps of one image's analysis, reported through the runner (:meth:`Unit.progress`), which forwards
    them to whoever runs the analysis; start and end of each step are also INFO log lines."""

    def __init__(self, unit: Unit, label: str) -> None:
        self.unit = unit
        self.label = label

    def task(self, what: str, total: float = 100.0) -> tuple[Callable[[float, str], None], Callable[[], None]]:
        """(update(completed, detail), done()) for one step."""
        log.info("memory %s: %s started", self.label, what)
        t0 = time.monotonic()
        self.unit.progress(0, total, what)

        def update(completed: float, detail: str = "") -> None:
            self.unit.progress(completed, total, what + (f" ({detail[:60]})" if detail else ""))

        def done() -> None:
            self.unit.progress(total, total, what)
            log.info("memory %s: %s done in %.1f s", self.label, what, time.monotonic() - t0)

        return update, done


@register
class MemoryAnalyzer(Analyzer):
    """Memory images (Volatility 3 offline, raw YARA) and process minidumps (lsass dumps)."""

    name = "memory"
    version = "1.0.0"
    consumes = ("memory_image", "suspicious_file", "file")
    rules = ("yara",)  # the project's yara/*.yar and our yara/memory/*.yar
    # the Volatility and raw-scan tables and their index, under results/memory/<evidence_id>/
    side_outputs = ("*.parquet", "index.json")
    options_declared = (
        Option(
            "symbols",
            help="Volatility 3 symbol tables for memory images (ISF folders, windows.zip packs); never downloaded. "
            f"Default: ${settings.SYMBOLS_ENV}, else 'symbols' in ~/.config/triage/config.toml",
            metavar="DIR",
            repeatable=True,
            path=True,
            env=settings.SYMBOLS_ENV,
            config_key="symbols",
        ),
        YARA_SETS,
        Option(
            "plugin_timeout",
            help="seconds one Volatility plugin may run before it is stopped",
            type=float,
            flag=None,
            env=settings.TIMEOUT_ENV,
            config_key="memory_plugin_timeout",
        ),
    )
    batch = False  # each image is big and long: a unit of its own
    unit_time_limit = 6 * 3600.0  # several Volatility plugins, each bounded by its own plugin timeout
    _fp_cache: dict[tuple[Any, ...], str] = {}  # noqa: RUF012  (per process: fingerprint by symbol folders)

    def fingerprint(self) -> str:
        """Version, rules and options, plus the resolved symbol folders and what is in them: adding a symbol
        table reruns the images it can now analyse."""
        try:
            dirs: tuple[Any, ...] = settings.symbol_dirs(self.options)
        except ValueError as exc:  # a broken config file: the unit reports it; planning must not crash on it
            dirs = (str(exc),)
        key = (self.name, json.dumps(self.options, sort_keys=True, default=str), dirs)
        if key not in self._fp_cache:
            import hashlib

            h = hashlib.sha256(super().fingerprint().encode())
            h.update(settings.tree_signature([d for d in dirs if isinstance(d, Path)]).encode())
            h.update(repr(dirs).encode())
            self._fp_cache[key] = h.hexdigest()[:32]
        return self._fp_cache[key]

    def extra_rule_paths(self) -> list[Path]:
        """Rule files and folders given with ``--yara`` (the same sets the ``yara`` analyzer applies to files)."""
        extra = self.options.get("yara") or []
        return [Path(p) for p in ([extra] if isinstance(extra, str) else extra)]

    def rule_paths(self) -> list[Path]:
        """The project's YARA rules, then every rule file of the ``--yara`` sets (their bytes are in the
        fingerprint: an edited third-party rule reruns the images)."""
        own = super().rule_paths()
        return own + [p for p in yararules.rule_files(self.extra_rule_paths()) if p not in own]

    def load_rules(self) -> yararules.MemoryRules:
        return yararules.compile_rules(yararules.rule_files(self.extra_rule_paths()))

    # -- entry -------------------------------------------------------------------------------------------
    def analyze(self, unit: Unit) -> Iterator[Finding]:
        path = unit.path
        with open(path, "rb") as fh:
            head = fh.read(8)
        if minidump.is_minidump(head):
            yield from self._dump_file(unit, path)
            if unit.evidence.kind != "memory_image":
                return
        elif unit.evidence.kind != "memory_image":
            raise Skip("not a minidump (no MDMP signature)")
        store = tables.TableStore(unit.case_dir / "results" / self.name / unit.evidence.artifact_id, unit)
        store.reset()
        started = time.time()
        display = _Steps(unit, Path(unit.evidence.relpath or path.name).name)
        fmt = memfmt.inspect(path) if not minidump.is_minidump(head) else None
        refused = _refusal(fmt) if fmt is not None else ""
        if fmt is not None:
            yield from self._format_findings(unit, fmt, refused)
        if self.options.get("raw_scan", True):
            if fmt is not None and fmt.compressed:
                unit.warn(
                    f"raw YARA scan not run on {path.name}: a {fmt.format} keeps its pages compressed, so a byte "
                    "scan would read compressed data, not memory"
                )
            else:
                yield from self._raw_scan(unit, path, store, display)
        volatility = fmt is not None and not refused and fmt.format != "vmware_state"
        if volatility and fmt is not None and self.options.get("volatility", True):
            yield from self._volatility(unit, path, store, display, fmt)
        index = store.write_index(
            {
                "image": unit.evidence.relpath,
                "seconds": round(time.time() - started, 1),
                "format": fmt.as_dict() if fmt is not None else {"format": "minidump"},
            }
        )
        written = {k: v for k, v in store.entries.items() if v.get("status") == "ok"}
        if written:
            yield unit.finding(
                RULES["MEM-TABLES"],
                title=f"{len(written)} memory analysis table(s) kept for {Path(unit.evidence.relpath or '').name}",
                message=f"Tables in {index.parent.relative_to(unit.case_dir).as_posix()}: "
                + ", ".join(f"{k} ({v.get('rows', 0)} rows)" for k, v in written.items()),
                location="tables",
                attributes={"folder": index.parent.relative_to(unit.case_dir).as_posix(), "tables": store.entries},
            )

    # -- minidump files ---------------------------------------------------------------------------------
    def _dump_file(self, unit: Unit, path: Path) -> Iterator[Finding]:
        name = Path(unit.evidence.relpath or path.name).name
        try:
            info = minidump.parse_file(path)
        except minidump.MinidumpError as exc:
            unit.warn(f"minidump {name}: {exc}")
            info = None
        for problem in info.problems if info is not None else ():  # damaged streams: in the run record too
            unit.warn(f"minidump {name}: {problem}")
        tool = info.tool(indicator_list("dump_tools")) if info is not None else ""
        if info is not None and info.is_lsass:
            held = info.lsa_coverage()
            yield unit.finding(
                RULES["MEM-LSASS-DUMP-FILE"],
                title=f"lsass memory dump: {unit.logical_path or name}",
                message=f"{unit.logical_path or name} is a minidump of lsass.exe"
                + (f" (PID {info.process_id})" if info.process_id is not None else "")
                + (f", process started {info.process_created:%Y-%m-%d %H:%M:%S} UTC" if info.process_created else "")
                + (f", written {info.timestamp:%Y-%m-%d %H:%M:%S} UTC" if info.timestamp else "")
                + (", full memory" if info.full_memory else "")
                + (f", written by {tool}" if tool else "")
                + (
                    f": its memory holds {', '.join(held)}, so the credentials of every logged-on account are in it."
                    if info.holds_lsa_secrets
                    else ": the credentials of every logged-on account may be in it"
                    + (
                        f" (its memory ranges hold only part of {', '.join(k for k, v in held.items() if v < 1.0)})."
                        if held and not info.holds_lsa_secrets and info.ranges
                        else "."
                    )
                ),
                location=f"{unit.logical_path or name}",
                ts=info.timestamp,
                ts_desc="minidump written",
                attributes=info.as_dict() | {"path": unit.logical_path, "tool": tool},
            )
            return
        process = info.process_name if info else ""
        yield unit.finding(
            RULES["MEM-MINIDUMP-FILE"],
            severity="medium" if ("lsass" in name.lower() or not process) else "low",
            confidence="medium" if process else "low",
            title=f"minidump of {process or 'an unidentified process'}: {unit.logical_path or name}",
            message=(
                f"{unit.logical_path or name} is a minidump of {process}"
                + (f" (PID {info.process_id})" if info and info.process_id is not None else "")
                if process
                else f"{unit.logical_path or name} has a minidump header but no readable module list, so the dumped "
                "process cannot be confirmed"
            )
            + (f"; written {info.timestamp:%Y-%m-%d %H:%M:%S} UTC" if info and info.timestamp else "")
            + ".",
            location=f"{unit.logical_path or name}",
            ts=info.timestamp if info else None,
            ts_desc="minidump written" if info and info.timestamp else "",
            attributes=(info.as_dict() if info else {}) | {"path": unit.logical_path, "tool": tool},
        )

    # -- raw YARA ---------------------------------------------------------------------------------------
    def _raw_scan(self, unit: Unit, path: Path, store: tables.TableStore, display: _Steps) -> Iterator[Finding]:
        try:
            ruleset: yararules.MemoryRules = self.ruleset
        except ImportError as exc:
            unit.warn(f"raw YARA scan skipped: yara-x is not installed ({exc})")
            return
        for problem in ruleset.problems:
            unit.warn(f"YARA rule file left out: {problem}")
        size = path.stat().st_size
        update, done = display.task("YARA over the raw image", total=size or 1)
        covered = 0

        def advance(n: int) -> None:
            nonlocal covered
            covered += n
            update(covered, "")

        t0 = time.monotonic()
        by_rule: dict[str, list[rawscan.RawMatch]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        kept: list[rawscan.RawMatch] = []
        for m in rawscan.scan_file(
            path,
            ruleset.rules,
            chunk_size=int(self.options.get("chunk_size", rawscan.DEFAULT_CHUNK)),
            overlap=int(self.options.get("overlap", rawscan.DEFAULT_OVERLAP)),
            progress=advance,
            workers=int(self.options.get("scan_workers") or rawscan.default_workers()),
        ):
            counts[m.rule] += 1
            if len(by_rule[m.rule]) < 1000:
                by_rule[m.rule].append(m)
            if len(kept) < RAW_TABLE_LIMIT:
                kept.append(m)
        done()
        cols = [
            vol.Column(n, k)
            for n, k in (("Rule", "str"), ("Pattern", "str"), ("Offset", "hex"), ("Length", "int"), ("Data", "bytes"))
        ]
        rows = [
            {"Rule": m.rule, "Pattern": m.pattern, "Offset": m.offset, "Length": m.length, "Data": m.data} for m in kept
        ]
        staged = store.staging("yara_raw")
        tables.write_table(staged, cols, rows, {"scanner": "yara-x raw chunks"})
        store.commit("yara_raw", staged)
        store.record(
            "yara_raw",
            status="ok",
            plugin="triage raw YARA",
            rows=sum(counts.values()),
            kept=len(rows),
            seconds=round(time.monotonic() - t0, 3),
            rule_files=[str(f) for f in ruleset.files],
        )
        for rule, matches in sorted(by_rule.items()):
            matches.sort(key=lambda m: m.offset)  # within a chunk yara-x lists matches by pattern
            meta = ruleset.rule_meta(rule)
            if meta.get("carve") == "minidump":
                if matches[0].offset == 0:  # the file itself is a minidump, reported as such already
                    matches, counts[rule] = matches[1:], counts[rule] - 1
                if matches:
                    yield from self._carve_minidumps(unit, path, rule, matches, counts[rule])
                continue
            yield self._raw_finding(unit, rule, meta, matches, counts[rule])

    def _raw_finding(
        self, unit: Unit, rule: str, meta: dict[str, Any], matches: list[rawscan.RawMatch], count: int
    ) -> Finding:
        title = str(meta.get("title") or rule.rsplit(".", 1)[-1])
        first = matches[0]
        samples = [_printable(m.data) for m in matches[:5]]
        return unit.finding(
            derive.yara_rule_meta("MEM-YARA", rule, meta, title, ("memory", "yara", "raw"), cite=True),
            title=f"{title}: {count} match(es) in the memory image",
            message=f"YARA rule {rule} matched {count} time(s) in the raw memory image, first at offset "
            f"{first.offset:#x}: {samples[0]!r}. The scan needs no symbols; the Volatility tables say which "
            "process holds it (vadyarascan).",
            location=f"offset:{first.offset:#x}",
            attributes={
                "rule": rule,
                "rule_id": meta.get("id"),
                "rule_file": meta.get("_file"),
                "count": count,
                "offsets": [hex(m.offset) for m in matches[:50]],
                "patterns": sorted({m.pattern for m in matches}),
                "samples": samples,
            },
        )

    def _carve_minidumps(
        self, unit: Unit, path: Path, rule: str, matches: list[rawscan.RawMatch], count: int
    ) -> Iterator[Finding]:
        parsed: list[minidump.MinidumpInfo] = []
        for m in matches[:MAX_CARVES]:
            try:
                info = minidump.parse_at(path, m.offset, CARVE_WINDOW)
            except minidump.MinidumpError:
                continue
            if info.modules:
                parsed.append(info)
        for info in parsed:
            if info.is_lsass:
                yield unit.finding(
                    RULES["MEM-LSASS-DUMP-CARVED"],
                    title=f"lsass minidump in memory at offset {info.offset:#x}",
                    message="A minidump of lsass.exe"
                    + (f" (PID {info.process_id})" if info.process_id is not None else "")
                    + (f" written {info.timestamp:%Y-%m-%d %H:%M:%S} UTC" if info.timestamp else "")
                    + f" sits in the memory image at offset {info.offset:#x}: a dump file was written or read "
                    "while the image was taken.",
                    location=f"offset:{info.offset:#x}",
                    ts=info.timestamp,
                    ts_desc="minidump written" if info.timestamp else "",
                    attributes=info.as_dict(),
                )
        others = [i for i in parsed if not i.is_lsass]
        if count == len(parsed) and not others:
            return  # every header was an lsass dump, reported above
        yield unit.finding(
            RULES["MEM-MINIDUMP-CARVED"],
            title=f"{count} minidump header(s) in the memory image, {len(parsed)} with a readable module list",
            message=f"Minidump headers at {', '.join(hex(m.offset) for m in matches[:10])}"
            + (" ..." if count > 10 else "")
            + (f"; processes: {', '.join(sorted({i.process_name or '?' for i in others}))}" if others else "")
            + ". Pages of a file are scattered in physical memory, so most headers cannot be followed further.",
            location=f"offset:{matches[0].offset:#x}",
            attributes={
                "rule": rule,
                "count": count,
                "offsets": [hex(m.offset) for m in matches[:50]],
                "parsed": [i.as_dict() for i in parsed[:50]],
            },
        )

    # -- formats ----------------------------------------------------------------------------------------
    def _format_findings(self, unit: Unit, fmt: memfmt.MemoryFormat, refused: str) -> Iterator[Finding]:
        """A format Volatility cannot read, or reads only in part, is said in a warning and a finding."""
        name = Path(unit.evidence.relpath or unit.path.name).name
        if refused:
            unit.warn(f"{name}: {refused}")
            yield unit.finding(
                RULES["MEM-FORMAT-UNREAD"],
                title=f"Memory image not analysed: {fmt.format}{f' ({fmt.detail})' if fmt.detail else ''}",
                message=f"{name}: {refused}",
                location="format",
                attributes=fmt.as_dict(),
            )
            return
        for problem in fmt.problems:
            unit.warn(f"{name} ({fmt.format}): {problem}")
        if fmt.problems:
            yield unit.finding(
                RULES["MEM-FORMAT-PARTIAL"],
                title=f"Memory image read with a limit: {fmt.format}",
                message=f"{name} ({fmt.format}): " + "; ".join(fmt.problems),
                location="format",
                attributes=fmt.as_dict(),
            )

    # -- Volatility -------------------------------------------------------------------------------------
    def _volatility(
        self, unit: Unit, path: Path, store: tables.TableStore, display: _Steps, fmt: memfmt.MemoryFormat
    ) -> Iterator[Finding]:
        symbols = settings.symbol_dirs(self.options)
        cache = settings.cache_dir(self.options)
        limit = settings.plugin_timeout(self.options)
        for d in symbols:
            if not d.exists():
                unit.warn(f"symbol location {d} does not exist")
        try:
            vol.configure(symbols, cache)
            update, done = display.task("indexing symbol tables")
            vol.update_symbol_cache(update)
            done()
        except vol.VolatilityUnavailable as exc:
            unit.warn(str(exc))
            return
        wanted = list(self.options.get("plugins") or TABLE_NAMES)
        unknown = [w for w in wanted if w not in TABLE_NAMES]
        if unknown:
            unit.warn(f"unknown memory plugin table(s) {', '.join(unknown)}; known: {', '.join(TABLE_NAMES)}")
        specs = [p for p in PLUGINS if p.table in wanted]
        # the kernel's layers and symbols, found by the first plugin, reused by the others (vol.LayerCache)
        image_hash = unit.evidence.sha256 or ""
        layer_key = vol.LayerKey(image_hash, settings.tree_signature(symbols)) if image_hash else None
        rows: dict[str, list[dict[str, Any]]] = {}
        blocked: vol.VolatilityError | None = None
        with tempfile.TemporaryDirectory(prefix="triage-mem-", dir=cache) as scratch:
            for spec in specs:
                if blocked is not None:
                    store.record(spec.table, status="skipped", plugin=spec.names[0], error=str(blocked))
                    continue
                options = dict(spec.options)
                if spec.yara:
                    compiled = Path(scratch) / "rules.yarx"
                    try:
                        self.ruleset.serialize(compiled)
                    except ImportError as exc:
                        store.record(spec.table, status="skipped", plugin=spec.names[0], error=str(exc))
                        continue
                    options["yara_compiled_file"] = compiled
                update, done = display.task(spec.names[0])
                outcome = isolate.run_with_timeout(
                    _plugin_job,
                    str(path),
                    spec.names,
                    options,
                    str(store.staging(spec.table)),
                    [str(s) for s in symbols],
                    str(cache),
                    timeout=limit,
                    on_progress=update,
                    layer_key=layer_key,
                    sidecar=str(fmt.sidecar) if fmt.format == "vmware_vmem" and fmt.sidecar else None,
                )
                done()
                blocked = self._record_plugin(unit, store, spec, outcome, rows)
            if blocked is not None:
                yield self._unavailable_finding(unit, blocked)
        for ind in derive.derive_all(rows, self.ruleset.rule_meta if "vadyarascan" in rows else None):
            yield unit.finding(
                ind.rule,
                title=ind.title,
                message=ind.message,
                location=ind.location,
                ts=ind.ts,
                ts_desc=ind.ts_desc,
                attributes=ind.attributes,
            )

    def _record_plugin(
        self,
        unit: Unit,
        store: tables.TableStore,
        spec: PluginSpec,
        outcome: isolate.Outcome,
        rows: dict[str, list[dict[str, Any]]],
    ) -> vol.VolatilityError | None:
        """Note one plugin's outcome; return the error that makes running further Windows plugins pointless."""
        plugin = spec.names[0]
        if outcome.status == "ok" and outcome.value.get("status") == "ok":
            v = outcome.value
            try:
                store.commit(spec.table, store.staging(spec.table))
            except OSError as exc:  # the child said it wrote the table, but it is not there
                store.discard(spec.table)
                store.record(spec.table, status="error", plugin=v["plugin"], error=f"table not stored: {exc}")
                unit.warn(f"{plugin}: table not stored: {exc}")
                return None
            store.record(
                spec.table,
                status="ok",
                plugin=v["plugin"],
                rows=v["rows"],
                seconds=outcome.duration_s,
                warnings=v.get("warnings", []),
                layer_cache=v.get("layer_cache", {}),
            )
            try:
                rows[spec.table] = tables.read_rows(store.path(spec.table))
            except Exception as exc:  # a table we cannot read back is a warning, the others still derive
                unit.warn(f"{plugin}: table unreadable: {exc}")
            return None
        if outcome.status == "ok":
            err = vol.error_from_dict(outcome.value.get("error", {}))
            store.record(
                spec.table,
                status="error",
                plugin=outcome.value.get("plugin", plugin),
                kind=err.kind,
                error=str(err),
                seconds=outcome.duration_s,
                layer_cache=outcome.value.get("layer_cache", {}),
            )
            kernel = isinstance(err, vol.Unsatisfied) and any(r.startswith("kernel") for r in err.requirements)
            if spec.table == "info" and (isinstance(err, vol.MissingSymbols | vol.NoWindowsKernel) or kernel):
                # every other plugin needs the same kernel: one warning, not twelve
                unit.warn(f"Volatility plugins skipped: {err}")
                return err
            unit.warn(f"{plugin}: {err}")
            return None
        store.discard(spec.table)  # a child stopped half way through a write
        what = {"timeout": "timed out", "died": "crashed", "error": "failed"}.get(outcome.status, outcome.status)
        store.record(
            spec.table,
            status=outcome.status,
            plugin=plugin,
            error=outcome.error,
            seconds=outcome.duration_s,
            traceback=outcome.traceback[-4000:],
        )
        unit.warn(f"{plugin} {what}: {outcome.error}")
        return None

    def _unavailable_finding(self, unit: Unit, err: vol.VolatilityError) -> Finding:
        attrs: dict[str, Any] = {"kind": err.kind}
        if isinstance(err, vol.MissingSymbols):
            attrs |= {
                "pdb_name": err.pdb.pdb_name,
                "guid": err.pdb.guid,
                "age": err.pdb.age,
                "isf_path": err.pdb.isf_relpath,
                "searched": err.searched,
            }
        if isinstance(err, vol.MissingSymbols):
            rule, why = "MEM-VOL-NO-SYMBOLS", f"no symbols for {err.pdb.pdb_name} {err.pdb.guid}-{err.pdb.age}"
        elif isinstance(err, vol.NoWindowsKernel):
            rule, why = "MEM-VOL-NO-KERNEL", "no Windows kernel found"
        else:
            rule, why = "MEM-VOL-KERNEL-SETUP", "the kernel could not be set up"
        return unit.finding(
            RULES[rule],
            title=f"Memory image not analysed by Volatility: {why}",
            message=str(err),
            location="volatility",
            attributes=attrs,
        )


def _refusal(fmt: memfmt.MemoryFormat) -> str:
    """Why Volatility cannot read this file at all ("" when it can try): a message naming the format and what is
    missing, checked against the layers the installed Volatility has."""
    if fmt.format == "vmware_state":
        if fmt.sidecar is None:
            return (
                "a VMware state file (.vmss/.vmsn) without the .vmem of the same name beside it: the guest's "
                "memory is in the .vmem; collect both together"
            )
        return ""  # the layout of the .vmem beside it: Volatility reads it with that image
    try:
        stackers = vol.format_stackers()
    except vol.VolatilityUnavailable:
        return ""  # the Volatility step says so itself
    if fmt.format == "hibernation" and not any("hibern" in s.lower() for s in stackers):
        return (
            f"a hibernation file ({fmt.detail}): its pages are compressed and this Volatility has no hibernation "
            "layer to decompress them; convert it to a raw image (a Volatility 3 release with a hibernation layer, "
            "or hibr2bin) and give that as the source"
        )
    if fmt.format in ("crash_dump", "crash_dump_bitmap") and fmt.dump_type is not None:
        supported = vol.crash_dump_types()
        if supported and fmt.dump_type not in supported:
            return (
                f"a crash dump of DumpType {fmt.dump_type} ({fmt.detail}): Volatility's crash dump layer reads only "
                f"DumpType {', '.join(map(str, supported))}; take a complete memory dump or a raw image"
            )
    return ""


def _printable(data: bytes) -> str:
    """A match as text: UTF-16LE when it looks wide, else Latin-1; control characters dotted."""
    if len(data) >= 4 and data[1::2].count(0) >= len(data) // 2 - 1:
        text = data.decode("utf-16-le", "replace")
    else:
        text = data.decode("latin-1")
    return "".join(c if c.isprintable() else "." for c in text)
