"""Event logs: EVTX files and JSON exports through the Sigma engine, plus coverage as evidence.

One unit is one log file. Records stream in batches (memory stays bounded on multi-GB logs); every
batch is matched against the ED 21-02 Sigma pack and any rule sets given with ``--sigma``. Each log
also gives a coverage finding (first and last event, record count, missing record numbers) and a
finding when it does not reach back to the start of the directive's window, 2021-01-01.

EVTX logs are read as Arrow tables and everything from the rules to the findings works on arrays, without
pandas (its import alone costs a worker more than reading a hundred small logs); JSON exports are read as pandas
frames, which the same code accepts.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from triage.arrowlite import arrow_without_pandas, numbers
from triage.case import Case
from triage.finding import Finding, RuleMeta
from triage.formats.evtx import (
    SYSTEM_COLUMNS,
    SYSTEM_SET,
    LogPart,
    ReadStats,
    iter_evtx,
    iter_evtx_range,
    time_arrays,
    valid_bits,
    whole_chunks,
)
from triage.indicators import rule_metas
from triage.registry import Analyzer, Option, Unit, register, signature_path
from triage.results import FindingColumns
from triage.sigma.correlation import CorrelationRule, Correlator, EventColumns, describe

if TYPE_CHECKING:
    from analyzers.eventlog.jsonexport import JsonLimits

log = logging.getLogger(__name__)

# EVTX logs never meet pandas: pyarrow is told not to look for it (a JSON export's reader imports it when needed);
# the path reads Arrow's buffers itself and gives every type (see triage.arrowlite), so nothing else loads it
arrow_without_pandas()

ED_WINDOW_START = datetime(2021, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MISSING = "<NA>"  # how a missing system value reads in a finding's title and location
# a log of at least this many 64 KiB chunks (8 MiB) is read in two halves at once, the second by a helper process
SPLIT_CHUNKS = 128
SPLIT_KEEP_BYTES = 256 << 20  # matched rows one half may hold for the merge; beyond, the log is read in one pass
PACK = "sigma/ed2102"
RULES = rule_metas("rulemeta/eventlog.yaml")
MAX_PER_RULE = 1000  # individual findings per rule and log; the rest are counted in one summary finding
KEY_FIELDS = (
    "Image",
    "CommandLine",
    "ParentImage",
    "TargetImage",
    "SourceImage",
    "GrantedAccess",
    "TargetFilename",
    "TargetObject",
    "Details",
    "ServiceName",
    "ImagePath",
    "TargetUserName",
    "SubjectUserName",
    "ProcessName",
    "ObjectName",
    "ScriptBlockText",
    "Data",
)


def _short(value: object, limit: int = 300) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _utc_text(stamp: np.datetime64) -> str:
    """A ``datetime64[us]`` (UTC) in ISO 8601 with its offset (as pandas' ``Timestamp.isoformat``)."""
    return (_EPOCH + timedelta(microseconds=int(stamp.astype("datetime64[us]").astype(np.int64)))).isoformat()


def _is_table(df: Any) -> bool:
    return isinstance(df, pa.Table)


def _whole(col: Any) -> pa.Array:
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


class Coverage:
    """Accumulates what a log covers across batches (times, record numbers, channels)."""

    def __init__(self) -> None:
        self.times: list[np.ndarray] = []
        self.ids: list[np.ndarray] = []

    def add(self, df: Any) -> None:
        """One batch (an Arrow table or a pandas frame)."""
        if _is_table(df):
            stamps, timed = time_arrays(df)
            ids = _whole(df.column("EventRecordID"))
            self.times.append(stamps[timed].astype("datetime64[us]"))
            self.ids.append(numbers(ids.drop_null()).astype("int64", copy=False))
            return
        ts = df["TimeCreated"].dropna()
        self.times.append(ts.to_numpy(dtype="datetime64[us]"))
        self.ids.append(df["EventRecordID"].dropna().to_numpy(dtype="int64"))

    def add_arrays(self, times: np.ndarray, ids: np.ndarray) -> None:
        """What :meth:`add` keeps, given as arrays already without missing values (``datetime64[us]``, int64)."""
        self.times.append(times)
        self.ids.append(ids)

    def summary(self) -> dict[str, Any]:
        times = np.sort(np.concatenate(self.times)) if self.times else np.array([], dtype="datetime64[us]")
        ids = np.unique(np.concatenate(self.ids)) if self.ids else np.array([], dtype="int64")
        out: dict[str, Any] = {"events_with_time": len(times), "record_ids": len(ids)}
        if len(times):
            out["first"] = _utc_text(times[0])
            out["last"] = _utc_text(times[-1])
            if len(times) > 1:
                gaps = np.diff(times)
                i = int(np.argmax(gaps))
                out["largest_gap_hours"] = round(float(gaps[i] / np.timedelta64(1, "h")), 2)
                out["largest_gap_from"] = _utc_text(times[i])
        if len(ids):
            lo, hi = int(ids[0]), int(ids[-1])
            out.update(first_record_id=lo, last_record_id=hi, missing_record_ids=int(hi - lo + 1 - len(ids)))
            if out["missing_record_ids"]:
                holes = np.nonzero(np.diff(ids) > 1)[0][:20]
                out["missing_ranges"] = [[int(ids[j] + 1), int(ids[j + 1] - 1)] for j in holes]
        return out


Matches = tuple[np.ndarray, np.ndarray]  # (rule id of each match as objects, its frame row as int64)


def _match_arrays(ruleset: Any, frame: Any) -> Matches:
    """Every match of the rules over a frame as two arrays (rule ids, rows), in load order then row."""
    ids: list[str] = []
    found: list[np.ndarray] = []
    for rule, rows in ruleset.iter_matches(frame):
        ids.append(rule.id)
        found.append(rows)
    if not ids:
        return np.empty(0, dtype=object), np.empty(0, dtype=np.int64)
    counts = np.fromiter((len(r) for r in found), dtype=np.int64, count=len(found))
    return np.asarray(ids, dtype=object)[np.repeat(np.arange(len(ids)), counts)], np.concatenate(found).astype(np.int64)


Evaluated = tuple[Any, Matches, "tuple[np.ndarray, np.ndarray] | None"]  # table, its matches, coverage arrays


def _reduced(table: pa.Table, matches: Matches) -> Evaluated:
    """An evaluated batch kept for later: its matched rows only (matches renumbered into them), and the times and
    record numbers coverage reads. Findings and correlations read nothing else of a batch."""
    stamps, timed = time_arrays(table)
    ids = _whole(table.column("EventRecordID"))
    cov = (stamps[timed].astype("datetime64[us]"), numbers(ids.drop_null()).astype("int64"))
    rule_ids, rows = matches
    keep = np.unique(rows)
    small = table.take(pa.array(keep, type=pa.int64()))
    return small, (rule_ids, np.searchsorted(keep, rows).astype(np.int64)), cov


def _read_range(ruleset: Any, path: str, first: int, last: int, stats: ReadStats) -> list[Evaluated] | None:
    """Chunks ``[first, last)`` of a log read and evaluated, kept as :func:`_reduced` batches; None when that would
    hold more than SPLIT_KEEP_BYTES."""
    out: list[Evaluated] = []
    held = 0
    for table in iter_evtx_range(path, stats, first, last):
        part = _reduced(table, _match_arrays(ruleset, table))
        held += part[0].nbytes
        if held > SPLIT_KEEP_BYTES:
            return None
        out.append(part)
    return out


def _helper_main(ruleset: Any, path: str, first: int, last: int, conn: Any) -> None:
    """The helper process of a split log: reads its half and sends ``(stats, batches)`` (None when it gave up)."""
    _die_with_parent()
    try:
        stats = ReadStats()
        parts = _read_range(ruleset, path, first, last, stats)
        conn.send(("too much to hold", None) if parts is None else (stats, parts))
    except Exception as exc:  # any failure here only costs the split: the worker reads the log in one pass
        conn.send((f"{type(exc).__name__}: {exc}", None))  # said by the parent: nothing is logged from here
    finally:
        conn.close()


def _die_with_parent() -> None:
    """Ask Linux to end this process when its parent ends (a killed worker leaves no helper behind)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # another OS: the helper still ends with its work
        pass


def _clean(stats: ReadStats) -> bool:
    return not (stats.warnings or stats.bad_records or stats.bad_chunks or stats.bad_values or stats.truncated)


def _merge_stats(into: ReadStats, parts: list[ReadStats]) -> None:
    """The stats of a log read in parts, as one pass over it gives them (parts without problems, in order)."""
    into.backend = "evtx"
    for part in parts:
        into.records += part.records
        if part.first is not None:
            into.first = part.first if into.first is None or part.first < into.first else into.first
            into.last = part.last if into.last is None or part.last > into.last else into.last
        for channel, n in part.channels.items():
            into.channels[channel] = into.channels.get(channel, 0) + n


class _Envelope:
    """Time and record number of every row of a batch table, as arrays (what :class:`Coverage` reads)."""

    def __init__(self, frame: pa.Table) -> None:
        stamps, self.timed = time_arrays(frame)
        self.times = stamps.astype("datetime64[us]")
        ids = _whole(frame.column("EventRecordID"))
        self.has_id = valid_bits(ids)
        self.ids = numbers(ids, 0).astype("int64", copy=False)

    def part(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """One log's times and record numbers (rows ``[start, stop)``), without the missing ones."""
        times, ids = self.times[start:stop], self.ids[start:stop]
        return times[self.timed[start:stop]], ids[self.has_id[start:stop]]


def _listed_rows(rule_ids: np.ndarray, rows: np.ndarray, silent: frozenset[str]) -> set[int]:
    """Rows of the matches that can become findings: not a silent base rule's, within MAX_PER_RULE per rule."""
    seen: dict[str, int] = {}
    out: set[int] = set()
    for rid, row in zip(rule_ids.tolist(), rows.tolist(), strict=True):
        if rid in silent:
            continue
        n = seen.get(rid, 0)
        if n < MAX_PER_RULE:
            seen[rid] = n + 1
            out.add(row)
    return out


class FrameRows:
    """The matched rows of one event table as dicts, built column by column (never a row object per match).

    Each dict has the system columns (None where missing; ``TimeCreated`` a UTC datetime) and the data fields
    that have a value in that row, in the table's column order. Also holds the table's conversion for
    correlation rules (:class:`EventColumns`), shared by every log of a batch table. Takes an Arrow table or a
    pandas frame (JSON exports).
    """

    def __init__(self, df: Any) -> None:
        self.df = df
        self._correlation: EventColumns | None = None

    @property
    def correlation(self) -> EventColumns:
        """The frame's columns as correlation rules read them (converted once)."""
        if self._correlation is None:
            self._correlation = EventColumns(self.df)
        return self._correlation

    def _columns(self) -> list[tuple[str, Any]]:
        if _is_table(self.df):
            return list(zip(self.df.column_names, self.df.columns, strict=True))
        out = []
        for name in self.df.columns:  # a pandas frame (JSON exports): its columns as Arrow, each once
            array = self.df[name].array
            typed = pa.timestamp("us", tz="UTC") if name == "TimeCreated" else None
            out.append((name, pa.array(array, type=typed)))
        return out

    def rows(self, rows: list[int]) -> dict[int, dict[str, Any]]:
        """Rows (frame positions) as dicts, by position."""
        if not rows:
            return {}
        idx = pa.array(np.asarray(rows, dtype=np.int64), type=pa.int64())
        events: list[dict[str, Any]] = [{} for _ in rows]
        # column by column, each dict filled in the table's column order; a data column is visited only at the
        # rows where it has a value (a frame of many logs has hundreds of columns, each set in few rows)
        for name, col in self._columns():
            taken = col.take(idx)
            nulls = taken.null_count
            system = name in SYSTEM_SET
            if nulls == len(rows):
                if system:
                    for event in events:
                        event[name] = None
                continue
            values: list[Any]
            if name == "TimeCreated":  # as UTC datetimes (Arrow gives a zone object of its own choosing)
                micros = taken.cast(pa.int64()).to_pylist()
                values = [None if m is None else _EPOCH + timedelta(microseconds=m) for m in micros]
            elif system or not nulls:
                values = taken.to_pylist()
            else:  # a sparse data column: only its values become Python objects, not its nulls
                present = np.flatnonzero(valid_bits(taken)).tolist()
                for i, value in zip(present, taken.drop_null().to_pylist(), strict=True):
                    events[i][name] = value
                continue
            for event, value in zip(events, values, strict=True):
                event[name] = value
        return dict(zip(rows, events, strict=True))


def sigma_meta(rule: Any) -> RuleMeta:
    """What every finding of one loaded Sigma rule or correlation rule shares here: id, title, level, MITRE, CVE
    and ED 21-02 steps from the rule; high confidence for high and critical rules, else medium; its first five
    references; tags 'sigma' and the rule's other tags (ATT&CK, CVE and ED 21-02 tags are fields of their own), or
    for a correlation rule 'sigma', 'correlation' and its type."""
    if isinstance(rule, CorrelationRule):
        tags: tuple[str, ...] = ("sigma", "correlation", rule.type)
    else:
        tags = ("sigma", *(t for t in rule.tags if not t.startswith(("attack.t", "cve.", "ed2102."))))[:8]
    return RuleMeta(
        id=rule.id,
        title=rule.title,
        severity=rule.severity,
        confidence="high" if rule.level in ("high", "critical") else "medium",
        description=rule.description,
        mitre=rule.mitre,
        cve=rule.cve,
        steps=tuple(str(x) for x in rule.ed2102_steps),
        tags=tags,
        references=rule.references[:5],
    )


class _Metas(dict[str, RuleMeta]):
    """Rule id -> what the findings of the rule share, built when the rule first matches: each worker loads a
    --sigma set of thousands of rules, of which a few hundred match (SigmaHQ's: 25 ms a worker saved)."""

    def __init__(self, rules: dict[str, Any]) -> None:
        super().__init__()
        self._rules = rules

    def __missing__(self, rule_id: str) -> RuleMeta:
        meta = self[rule_id] = sigma_meta(self._rules[rule_id])
        return meta


@register
class EventLogs(Analyzer):
    """Sigma rules (the ED 21-02 pack plus --sigma sets) over EVTX and JSON event exports; log coverage."""

    name = "eventlog"
    version = "1.0"
    in_process = True  # no C engine: a few small units may run in the command's process
    # two batches per worker: each batch reads its logs into one frame and evaluates every rule over it once, so
    # the default four per worker cost a quarter more CPU over hundreds of small logs, while one per worker
    # leaves a worker idle behind the other (400 logs, 2 workers: 5.9 / 4.7 / 4.7 CPU s, 3.1 / 2.5 / 3.2 s on
    # the busier worker, for 4 / 2 / 1 batches per worker)
    batch_per_worker = 2
    # compiled rules are plain Python objects and arrays (an automaton is built again where needed): loaded once
    # in the parent before the fork (from the rule cache) and shared by the workers, not loaded again in each
    rules_fork_safe = True
    consumes = ("evtx", "event_json")
    rules = (PACK,)
    options_declared = (
        Option(
            "sigma",
            help="also load these Sigma rule files or folders (e.g. a SigmaHQ rules/windows checkout), unmodified",
            metavar="DIR",
            repeatable=True,
            path=True,
        ),
    )
    rule_option = "sigma"
    # what the findings of each loaded rule share, built by load_rules (correlation rules keyed by the rule)
    _metas: dict[str, RuleMeta]
    _corr_metas: dict[CorrelationRule, RuleMeta]
    _by_id: dict[str, Any]  # loaded rules by id, built once with the rules (not per log)

    def rule_paths(self) -> list[Path]:
        paths = super().rule_paths()
        from triage.sigma import iter_rule_files  # the files load_rules reads, listed without pathlib's rglob

        paths.extend(iter_rule_files(self.options.get("sigma", [])))
        return paths

    def load_rules(self) -> Any:
        from triage.sigma import load_rules

        sources = [signature_path(PACK), *map(Path, self.options.get("sigma", []))]
        ruleset = load_rules(sources)
        log.info("sigma: %d rules loaded, %d skipped", len(ruleset.loaded), len(ruleset.skipped))
        # the metadata of each rule's findings, built once per rule (correlation rules: by the rule itself)
        self._by_id = {r.id: r for r in ruleset.loaded}
        self._metas = _Metas(self._by_id)
        self._corr_metas = {r: sigma_meta(r) for r in ruleset.correlations}
        return ruleset

    @classmethod
    def preload_rules(cls, case: Case, options: dict[str, Any]) -> dict[str, Any] | None:
        """Load the extra Sigma sets once up front: say what loaded, what was skipped and why.

        Writes ``runs/sigma-rules.json`` and a ``rules_loaded`` custody event (verify checks the record by its
        hash); returns the summary.
        """
        from collections import Counter

        from triage.hashing import sha256_bytes
        from triage.sigma import load_rules

        dirs = list(options.get("sigma", []))
        ruleset = load_rules([signature_path(PACK), *dirs])
        reasons = Counter(s.reason.split(":")[0][:80] for s in ruleset.skipped)
        info = {
            "loaded": len(ruleset.loaded),
            "correlations": len(ruleset.correlations),
            "skipped": len(ruleset.skipped),
            "sources": dirs,
            "skip_reasons": dict(reasons.most_common(10)),
        }
        out = case.path / "runs" / "sigma-rules.json"
        out.write_text(
            json.dumps(info | {"skipped_rules": [s._asdict() for s in ruleset.skipped]}, indent=1, default=str)
        )
        record = {"record": out.relative_to(case.path).as_posix(), "record_sha256": sha256_bytes(out.read_bytes())}
        case.custody.append("rules_loaded", engine="sigma", **info, **record)
        why = ", ".join(f"{k}: {v}" for k, v in reasons.most_common(3)) or "none"
        # "message": what the caller shows the examiner (the app layer's progress sink), not part of the summary
        message = (
            f"Sigma rules: {info['loaded']} loaded (and {info['correlations']} correlation rules), "
            f"{info['skipped']} skipped ({why}); details in {out}"
        )
        return info | {"message": message}

    def _evaluated(self, unit: Unit, stats: ReadStats) -> Iterator[Evaluated]:
        """A log's batches with their matches (and coverage arrays when a batch was kept reduced).

        A big EVTX log of whole chunks is read in two halves at once: this process reads and evaluates the first,
        a forked helper the second (EVTX chunks are independent). Both keep only their matched rows; the batches
        then come in chunk order, so findings, the per-rule limit, correlations and coverage are exactly those of
        one pass. When either half warns, fails, or would hold too much, the log is read in one pass instead
        (every warning then says what it says for a whole read).
        """
        chunks = whole_chunks(unit.path) if unit.evidence.kind == "evtx" else None
        # forked only from a process of one thread (a pool worker): a fork copies no other thread's held locks
        alone = threading.active_count() == 1 and not multiprocessing.current_process().daemon
        if chunks is not None and chunks >= SPLIT_CHUNKS and alone:
            parts = self._split_read(str(unit.path), chunks)
            if parts is not None:
                halves, batches = parts
                _merge_stats(stats, halves)
                yield from batches
                return
        for df in self._batches(unit, stats):
            yield df, _match_arrays(self.ruleset, df), None

    def _split_read(self, path: str, chunks: int) -> tuple[list[ReadStats], list[Evaluated]] | None:
        """Both halves of a log read at once (see :meth:`_evaluated`); None to read it in one pass."""
        half = chunks // 2
        ctx = multiprocessing.get_context("fork")
        receive, send = ctx.Pipe(duplex=False)
        try:
            helper = ctx.Process(target=_helper_main, args=(self.ruleset, path, half, chunks, send), daemon=True)
            helper.start()
        except (OSError, AssertionError, ValueError) as exc:  # no process to spare: one pass
            log.info("no helper for %s: %s", path, exc)
            receive.close()
            send.close()
            return None
        send.close()
        mine = ReadStats()
        first: list[Evaluated] | None = None
        theirs = None
        try:
            first = _read_range(self.ruleset, path, 0, half, mine)
            if first is not None and _clean(mine):
                theirs = receive.recv()
        except (EOFError, OSError):  # the helper died: one pass
            theirs = None
        finally:
            receive.close()
            if theirs is None:
                helper.kill()  # its half is not wanted (or it is gone already)
            helper.join(timeout=5)
            if helper.is_alive():
                helper.kill()
                helper.join()
        if theirs is not None and theirs[1] is None:
            log.info("helper for %s gave up (%s): read in one pass", path, theirs[0])
            theirs = None
        if first is None or theirs is None or not _clean(mine) or not _clean(theirs[0]):
            return None
        return [mine, theirs[0]], [*first, *theirs[1]]

    def _batches(self, unit: Unit, stats: ReadStats) -> Iterator[Any]:
        """A log's batches: Arrow tables from an EVTX file, pandas frames from a JSON export."""
        if unit.evidence.kind == "evtx":
            return iter_evtx(unit.path, stats, arrow=True)
        from analyzers.eventlog.reader import iter_events

        return iter_events(unit.path, unit.evidence.kind, stats, limits=self._json_limits())

    def _json_limits(self) -> JsonLimits:
        """Reading bounds for JSON exports; options ``json_max_expanded_bytes``, ``json_max_ratio``,
        ``json_max_record_chars`` override the defaults."""
        from analyzers.eventlog.jsonexport import JsonLimits

        keys = {"json_max_expanded_bytes": "max_expanded_bytes", "json_max_ratio": "max_ratio"}
        keys["json_max_record_chars"] = "max_record_chars"
        return JsonLimits(**{field: self.options[opt] for opt, field in keys.items() if opt in self.options})

    def begin_batch(self, units: list[Unit]) -> None:
        """Before a batch's units run one by one: read its EVTX logs into one frame and evaluate the rules once.

        Rules cost per evaluation as much as per event on small logs, so hundreds of small logs evaluated one by
        one spend their time in rule overhead. Each log's matches and matched events are kept for its own
        :meth:`analyze`, which then gives exactly what reading that log alone gives. A log that did not join
        (see :func:`read_together`), or any failure here, leaves the logs to be read on their own.
        """
        from triage.formats.evtx import read_together

        self._together: dict[str, tuple[FrameRows, LogPart, Matches, dict[int, dict[str, Any]], _Envelope]] = {}
        logs = [u for u in units if u.evidence.kind == "evtx"]
        if len(logs) < 2:
            return
        together = read_together([u.path for u in logs])
        if together is None:
            return
        frame = together.frame
        view = FrameRows(frame)
        envelope = _Envelope(frame)  # what coverage reads, converted once and sliced per log
        rule_ids, rows = _match_arrays(self.ruleset, frame)
        joined = [(unit, part) for unit, part in zip(logs, together.parts, strict=True) if part is not None]
        # each match's log (logs' rows are contiguous and in order), then each log's matches in their own order
        stops = np.asarray([part.stop for _, part in joined], dtype=np.int64)
        owner = np.searchsorted(stops, rows, side="right")
        order = np.argsort(owner, kind="stable")
        bounds = np.searchsorted(owner[order], np.arange(len(joined) + 1))
        silent = self._silent()
        prepared = []
        wanted: set[int] = set()
        for j, (unit, part) in enumerate(joined):
            pick = order[bounds[j] : bounds[j + 1]]
            mine = (rule_ids[pick], rows[pick])
            prepared.append((unit, part, mine))
            if len(pick):
                wanted.update(_listed_rows(*mine, silent))
        events = view.rows(sorted(wanted))
        for unit, part, mine in prepared:
            self._together[unit.evidence.artifact_id] = (view, part, mine, events, envelope)

    def end_batch(self) -> None:
        """Free what :meth:`begin_batch` kept."""
        self._together = {}

    def _silent(self) -> frozenset[str]:
        """Ids of base rules that only feed correlations (their matches are not findings)."""
        return frozenset(Correlator(self.ruleset).silent or ())

    def analyze(self, unit: Unit) -> Iterator[Finding]:
        prepared = getattr(self, "_together", {}).pop(unit.evidence.artifact_id, None)
        cov = Coverage()
        per_rule: dict[str, int] = {}
        corr = Correlator(self.ruleset)  # correlation rules see every batch; their base rules may stay silent
        if prepared is None:
            stats = ReadStats()
            for df, matches, arrays in self._evaluated(unit, stats):
                if arrays is None:
                    cov.add(df)
                else:
                    cov.add_arrays(*arrays)
                yield from self._matched(unit, FrameRows(df), matches, corr, per_rule, None)
        else:  # read and evaluated with the rest of its batch: this log's rows of the shared frame
            view, part, matches, events, envelope = prepared
            stats = part.stats
            if part.stop > part.start:
                cov.add_arrays(*envelope.part(part.start, part.stop))
                yield from self._matched(unit, view, matches, corr, per_rule, events)
        yield from self._summaries(unit, per_rule)
        if corr:
            yield from self._correlation_findings(unit, corr)
        for w in stats.warnings:
            unit.warn(w)
        yield from self._coverage(unit, stats, cov.summary())

    def _matched(
        self,
        unit: Unit,
        view: FrameRows,
        matches: Matches,
        corr: Correlator,
        per_rule: dict[str, int],
        events: dict[int, dict[str, Any]] | None,
    ) -> Iterator[Finding]:
        """The findings of one evaluated frame's matches (at most MAX_PER_RULE per rule and log, counted in
        ``per_rule``); ``events`` holds the matched rows as dicts when already built for the whole batch."""
        rule_ids, rows = matches
        if corr:
            try:
                corr.add_rows(view.correlation, rule_ids, rows)
            except Exception as exc:  # a batch correlation cannot read costs only its correlation input
                log.exception("correlation input of %s", unit.logical_path)
                unit.warn(f"correlation rules could not read a batch of events: {type(exc).__name__}: {exc}")
            if corr.silent and len(rule_ids):
                keep = np.fromiter((r not in corr.silent for r in rule_ids.tolist()), dtype=bool, count=len(rule_ids))
                rule_ids, rows = rule_ids[keep], rows[keep]
        emit: list[tuple[str, int]] = []
        for rule_id, row in zip(rule_ids.tolist(), rows.tolist(), strict=True):
            n = per_rule[rule_id] = per_rule.get(rule_id, 0) + 1
            if n <= MAX_PER_RULE:
                emit.append((rule_id, row))
        if not emit:
            return
        if events is None:
            events = view.rows(sorted({row for _, row in emit}))
            for rule_id, row in emit:
                yield unit.finding(self._metas[rule_id], **self._finding(self._by_id[rule_id], events[row]))
            return
        # a batch (begin_batch: only run_unit calls it) writes one block of rows, not a Finding object per match;
        # a rule's matches are consecutive here (load order, then row): what they share is filled in once
        block = FindingColumns()
        start = 0
        while start < len(emit):
            rule_id = emit[start][0]
            stop = start + 1
            while stop < len(emit) and emit[stop][0] == rule_id:
                stop += 1
            rule = self._by_id[rule_id]
            common = unit.finding_fields(self._metas[rule_id], title="", message="")
            block.add_many(common, [self._finding(rule, events[row]) for _, row in emit[start:stop]])
            start = stop
        yield block  # type: ignore[misc]

    def _summaries(self, unit: Unit, per_rule: dict[str, int]) -> Iterator[Finding]:
        for rule_id, n in per_rule.items():
            if n > MAX_PER_RULE:
                meta = self._metas[rule_id]
                yield unit.finding(
                    # the count of a rule's matches: medium confidence, cites nothing
                    replace(meta, confidence="medium", tags=("sigma", "summary"), references=()),
                    title=f"{meta.title}: {n} events in total ({n - MAX_PER_RULE} more not listed)",
                    message=f"The rule matched {n} events of this log; the first {MAX_PER_RULE} are listed.",
                    location="summary",
                    attributes={"matches": n},
                )

    def _rule_file(self, rule: Any) -> str:
        """The file name of a rule (a Path per finding costs more than the rest of its attributes)."""
        names: dict[str, str] = self.__dict__.setdefault("_rule_files", {})
        name = names.get(rule.path)
        if name is None:
            name = names[rule.path] = Path(rule.path).name
        return name

    def _finding(self, rule: Any, event: dict[str, Any]) -> dict[str, Any]:
        """What the finding of one rule's match of one event has of its own (title, message, location, time,
        attributes), on top of the rule's and the unit's fields (:meth:`Unit.finding_fields`)."""
        fields = {
            k: v if type(v) is str and len(v) <= 2000 else _short(v, 2000)  # most values: text kept as it is
            for k, v in event.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v)) and k != "TimeCreated"
        }
        context = "; ".join(
            f"{k}={_short(value, 160)}"
            for k in KEY_FIELDS
            if (value := event.get(k)) is not None and str(value)
        )
        rid: Any = event.get("EventRecordID")
        created: Any = event.get("TimeCreated")
        rid_text = "?" if rid is None else str(int(rid))
        channel, eid = event.get("Channel"), event.get("EventID")
        channel = MISSING if channel is None else channel
        return dict(
            title=f"{rule.title} ({channel} {MISSING if eid is None else eid}, record {rid_text})",
            message=f"{rule.description.strip()} {context}".strip(),
            location=f"{channel}#{rid_text}",
            ts=created,
            ts_desc="Event logged",
            attributes={
                "event": fields,
                "rule_file": self._rule_file(rule),
                "rule_sha256": rule.sha256,
                "computer": MISSING if (computer := event.get("Computer")) is None else computer,
            },
        )

    def _correlation_findings(self, unit: Unit, corr: Correlator) -> Iterator[Finding]:
        """One finding per correlation burst (rule, group, window), not one per event."""
        try:
            hits = corr.finish()
        except Exception as exc:  # reported, never a silent clean verdict
            log.exception("correlation of %s", unit.logical_path)
            unit.warn(f"correlation rules could not be evaluated: {type(exc).__name__}: {exc}")
            hits = []
        for hit in hits:
            rule = hit.rule
            group = ",".join(f"{k}={v}" for k, v in hit.group.items())
            yield unit.finding(
                self._corr_metas[rule],
                title=f"{rule.title}: {describe(hit)}",
                message=f"{rule.description.strip()} {describe(hit)}.".strip(),
                location=f"correlation:{group or 'all'}@{hit.first.isoformat()}",
                ts=hit.first,
                ts_desc="First event of the burst",
                attributes={
                    "correlation_type": rule.type,
                    "group_by": hit.group,
                    "first": hit.first.isoformat(),
                    "last": hit.last.isoformat(),
                    "events": hit.events,
                    "peak": hit.peak,
                    "timespan_seconds": rule.timespan,
                    "condition": f"{rule.op} {rule.count:g}" + (f" distinct {rule.field}" if rule.field else ""),
                    "values": list(hit.values),
                    "sample_record_ids": list(hit.record_ids),
                    "base_rules": hit.rule_counts,
                    "rule_file": Path(rule.path).name,
                    "rule_sha256": rule.sha256,
                },
            )
        if corr.untimed:
            unit.warn(f"{corr.untimed} matched events without a readable time were left out of correlation windows")

    def _coverage(self, unit: Unit, stats: ReadStats, cov: dict[str, Any]) -> Iterator[Finding]:
        channels = ", ".join(f"{c} ({n})" for c, n in sorted(stats.channels.items())) or "no events"
        attrs = {
            **cov,
            "records": stats.records,
            "backend": stats.backend,
            "bad_chunks": stats.bad_chunks,
            "bad_records": stats.bad_records,
            "bad_values": stats.bad_values,
            "truncated": stats.truncated,
            "read_limit_hit": stats.limit_hit,
            "compression": stats.compression,
            "encoding": stats.encoding,
            "channels": stats.channels,
            "reaches_window_start": bool(cov.get("first") and datetime.fromisoformat(cov["first"]) <= ED_WINDOW_START),
        }
        name = Path(unit.logical_path).name
        first = cov.get("first")
        yield unit.finding(
            RULES["TRIAGE-EVT-COV-000"],
            title=f"Coverage of {name}: {stats.records} events, {first or '-'} to {cov.get('last') or '-'}",
            message=f"{name}: {stats.records} events in {channels}; first {first or '-'}, last "
            f"{cov.get('last') or '-'}; {cov.get('missing_record_ids', 0)} record numbers missing.",
            location="coverage",
            ts=first,
            ts_desc="First event in log",
            attributes=attrs,
        )
        if stats.records and first and datetime.fromisoformat(first) > ED_WINDOW_START:
            yield unit.finding(
                RULES["TRIAGE-EVT-COV-001"],
                title=f"{name} starts {first[:10]}, after the directive window began (2021-01-01)",
                message=f"The oldest event in {name} is from {first}. ED 21-02 asks for activity since "
                "2021-01-01; anything before this log's start is not covered, so an absence of "
                "findings here is weak evidence for that period.",
                location="coverage-window",
                ts=first,
                ts_desc="First event in log",
                attributes={"first": first, "window_start": ED_WINDOW_START.isoformat()},
            )
        missing = cov.get("missing_record_ids", 0)
        lost = stats.bad_chunks or stats.bad_records or stats.bad_values or stats.truncated
        if missing or lost:
            parts = [f"{missing} record numbers missing", f"{stats.bad_chunks} unreadable chunks"]
            parts += [f"{stats.bad_records} unreadable records"] if stats.bad_records else []
            parts += [f"{stats.bad_values} values dropped or repaired"] if stats.bad_values else []
            parts += ["read incomplete (truncated or a reading limit hit)"] if stats.truncated else []
            yield unit.finding(
                RULES["TRIAGE-EVT-COV-002"],
                title=f"{name}: " + ", ".join(parts),
                message=f"Record numbers {cov.get('first_record_id')} to {cov.get('last_record_id')} have "
                f"{missing} holes ({cov.get('missing_ranges', [])[:5]}...); {', '.join(parts[1:])}. "
                "Holes come from corrupt chunks, log wrap in progress or tampering; unreadable records and "
                "out-of-range values cost only themselves: every readable record was kept. The warnings name "
                "each one.",
                location="coverage-holes",
                ts=first,
                ts_desc="First event in log",
                attributes={
                    k: cov.get(k) for k in ("missing_record_ids", "missing_ranges", "first_record_id", "last_record_id")
                }
                | {
                    "bad_chunks": stats.bad_chunks,
                    "bad_records": stats.bad_records,
                    "bad_values": stats.bad_values,
                    "truncated": stats.truncated,
                    "warnings": stats.warnings[:20],
                },
            )


__all__ = ["SYSTEM_COLUMNS", "EventLogs"]
