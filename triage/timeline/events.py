"""The events of a case, source by source, as Arrow tables of one schema (the super-timeline's rows).

Each source goes through the product's one reader of its format: EVTX through :mod:`triage.formats.evtx`,
the Exchange and IIS web logs through the exchange analyzer's :class:`~analyzers.exchange.logs.LogReader`,
registry keys through :class:`triage.formats.hive.Hive`, NTFS ``$SI``/``$FN`` times as the collector recorded
them in the manifest (parsed as the ``ntfs_timestomp`` analyzer parses them), source file times from the
manifest, process start times from the memory analyzer's side tables. Every generator yields tables of at most
``batch`` rows, so a source of any size is never held whole.

Rows keep ``ts`` missing when the source's time cannot be read: the builder counts them per source (they are
reported, never dropped silently). ``link_record`` and ``link_path`` are the join keys findings are matched on
(see :mod:`triage.timeline.tags`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from triage.case import Case, ManifestRow
from triage.registry import logical_path

log = logging.getLogger(__name__)

BATCH = 20_000
US = pa.timestamp("us", tz="UTC")
# source fields: a fixed superset, so every batch has one schema (missing ones are left out of JSONL lines)
FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("record_number", pa.int64()),
    ("event_id", pa.int64()),
    ("channel", pa.string()),
    ("provider", pa.string()),
    ("computer", pa.string()),
    ("line", pa.int64()),
    ("client_ip", pa.string()),
    ("method", pa.string()),
    ("uri", pa.string()),
    ("status", pa.string()),
    ("user_agent", pa.string()),
    ("username", pa.string()),
    ("registry_key", pa.string()),
    ("hive", pa.string()),
    ("pid", pa.int64()),
    ("ppid", pa.int64()),
    ("image", pa.string()),
    ("sha256", pa.string()),
    ("size", pa.int64()),
    ("rule_id", pa.string()),
    ("severity", pa.string()),
    ("finding_id", pa.string()),
)
SCHEMA = pa.schema(
    [
        ("ts", US),
        ("timestamp_desc", pa.string()),
        ("message", pa.string()),
        ("data_type", pa.string()),
        ("source", pa.string()),
        ("source_long", pa.string()),
        ("parser", pa.string()),
        ("host", pa.string()),
        ("evidence_id", pa.string()),
        ("path", pa.string()),
        *FIELDS,
        ("link_record", pa.string()),
        ("link_path", pa.string()),
        ("tag", pa.list_(pa.string())),
    ]
)
FIELD_NAMES = tuple(name for name, _ in FIELDS)
EVTX_KINDS = frozenset({"evtx", "event_json"})
LOG_KINDS = frozenset({"exchange_log", "iis_log"})
HIVE_KINDS = frozenset({"registry_hive"})
SI_FN_DESC = {
    "created": "Creation Time",
    "modified": "Content Modification Time",
    "mft_modified": "Metadata Modification Time",
    "accessed": "Last Access Time",
}


@dataclass
class SourceStats:
    """What one source gave: events read, events without a readable time, items that failed (with why)."""

    events: int = 0
    no_time: int = 0
    items: int = 0
    unreadable: int = 0  # items that gave no events because they could not be read at all
    failed: list[str] = field(default_factory=list)


def table(n: int, columns: dict[str, Any]) -> pa.Table:
    """One batch in :data:`SCHEMA`: given columns (arrays, lists or scalars), the rest null."""
    arrays = []
    for f in SCHEMA:
        value = columns.get(f.name)
        if value is None:
            arrays.append(pa.nulls(n, f.type))
        elif isinstance(value, str):
            arrays.append(pa.array([value] * n, f.type))
        elif isinstance(value, pa.Array | pa.ChunkedArray):
            arrays.append(value.cast(f.type))
        else:
            arrays.append(pa.array(value, f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _text(s: pd.Series) -> pd.Series:
    return s.astype("string").fillna("")


# -- EVTX ---------------------------------------------------------------------------------------------------
_EVTX_MESSAGE_FIELDS = 6  # EventData fields shown in the message, in record order
_EVTX_FIELD_CHARS = 200


def evtx_events(case: Case, row: ManifestRow, stats: SourceStats, batch: int = BATCH) -> Iterator[pa.Table]:
    """Every record of one EVTX file (the one EVTX reader) or JSON event export (the event-log analyzer's reader
    of exports, which gives the same frames)."""
    from analyzers.eventlog.reader import iter_events
    from triage.formats.evtx import SYSTEM_SET, ReadStats

    logical = logical_path(row) or row.source_path
    read = ReadStats()
    is_evtx = row.kind == "evtx"
    for df in iter_events(case.artifact_path(row), row.kind, read, batch=batch):
        n = len(df)
        rid = df["EventRecordID"]
        eid = df["EventID"]
        channel, provider = _text(df["Channel"]), _text(df["Provider"])
        msg = "[" + _text(eid) + " / " + provider + "] " + channel + " record " + _text(rid)
        data_cols = [c for c in df.columns if c not in SYSTEM_SET][:_EVTX_MESSAGE_FIELDS]
        for c in data_cols:
            v = df[c].astype("string").str.slice(0, _EVTX_FIELD_CHARS)
            msg = msg.where(v.isna(), msg + "; " + c + "=" + v.fillna(""))
        rid_text = _text(rid)
        yield table(
            n,
            {
                "ts": df["TimeCreated"],
                "timestamp_desc": "Event Recorded",
                "message": msg,
                "data_type": "windows:evtx:record" if is_evtx else "windows:eventjson:record",
                "source": "EVT",
                "source_long": "WinEVTX" if is_evtx else "Windows event export (JSON)",
                "parser": "triage.formats.evtx" if is_evtx else "analyzers.eventlog.reader",
                "host": row.source_host,
                "evidence_id": row.artifact_id,
                "path": logical,
                "record_number": rid,
                "event_id": eid,
                "channel": df["Channel"].astype("string"),
                "provider": df["Provider"].astype("string"),
                "computer": df["Computer"].astype("string"),
                "link_record": row.artifact_id + "#" + rid_text,
                "link_path": logical.lower() + "#" + rid_text,
            },
        )
    for w in read.warnings:
        stats.failed.append(f"{logical}: {w}")
    if not read.records and read.warnings:  # nothing readable, and the reader said why: not an empty log
        stats.unreadable += 1


# -- Exchange and IIS web logs ------------------------------------------------------------------------------
def weblog_events(case: Case, row: ManifestRow, stats: SourceStats, batch: int = BATCH) -> Iterator[pa.Table]:
    """Every row of one HttpProxy, ECP, IIS or OAB generator log, through the exchange analyzer's reader."""
    from analyzers.exchange.logs import OAB, SOURCE_COLUMNS, UNKNOWN, LogReader, line_time, log_type, normalize
    from analyzers.exchange.logs import sniff_log_type as sniff

    logical = logical_path(row) or row.source_path
    path = case.artifact_path(row)
    kind = log_type(logical, row.kind)
    if kind == UNKNOWN:
        kind = sniff(path)
    if kind == UNKNOWN:
        stats.unreadable += 1
        stats.failed.append(f"{logical}: not a log type the Exchange log reader knows")
        return
    reader = LogReader(path, kind)
    for frame in reader.frames(SOURCE_COLUMNS.get(kind)):
        for start in range(0, len(frame), batch):
            part = frame.iloc[start : start + batch].reset_index(drop=True)  # normalize() aligns on a 0-based index
            lines = part["_line"].astype("int64")
            if kind == OAB:  # raw lines: the time each line starts with
                texts = part["Line"].astype(str)
                ts = pd.Series([line_time(t, OAB) for t in texts], index=part.index, dtype=object)
                ts = pd.to_datetime(ts, utc=True)
                message = "OAB generator: " + texts.str.slice(0, 500)
                cols: dict[str, Any] = {}
            else:
                date_header = reader.stats.date_headers[0] if reader.stats.date_headers else None
                df = normalize(part, kind, logical, date_header)
                ts = df["ts"]
                stem, query = _text(df["uri_stem"]), _text(df["uri_query"])
                uri = stem.where(query == "", stem + "?" + query)
                cmd = _text(df["cmd"])
                message = (
                    kind
                    + ": "
                    + _text(df["method"])
                    + " "
                    + uri
                    + " "
                    + _text(df["status"])
                    + " from "
                    + _text(df["client_ip"])
                )
                message = message.where(cmd == "", kind + ": ECP command " + cmd.str.slice(0, 300))
                cols = {
                    "client_ip": df["client_ip"].astype("string"),
                    "method": df["method"].astype("string"),
                    "uri": uri,
                    "status": df["status"].astype("string"),
                    "user_agent": df["user_agent"].astype("string"),
                    "username": df["username"].astype("string"),
                }
            line_text = lines.astype(str)
            yield table(
                len(part),
                {
                    "ts": ts,
                    "timestamp_desc": "Request Logged" if kind != OAB else "Entry Written",
                    "message": message,
                    "data_type": f"exchange:{kind}:line",
                    "source": "LOG",
                    "source_long": {"iis": "IIS W3C log", "oab": "OAB generator log"}.get(kind, f"Exchange {kind} log"),
                    "parser": "analyzers.exchange.logs",
                    "host": row.source_host,
                    "evidence_id": row.artifact_id,
                    "path": logical,
                    "line": lines,
                    **cols,
                    "link_record": row.artifact_id + "#" + line_text,
                    "link_path": logical.lower() + "#" + line_text,
                },
            )
    stats.failed.extend(f"{logical}: {w}" for w in reader.stats.warnings[:20])
    if not reader.stats.rows and reader.stats.warnings:  # not a log with only headers: one that could not be read
        stats.unreadable += 1


# -- registry keys ------------------------------------------------------------------------------------------
def hive_events(case: Case, row: ManifestRow, stats: SourceStats, batch: int = BATCH) -> Iterator[pa.Table]:
    """The last-write time of every key of one hive, through the one hive reader (the primary file as collected;
    its transaction logs, if any, are timeline rows of their own artifacts' file times)."""
    from triage.formats.hive import Hive, guess_hive_type

    logical = logical_path(row) or row.source_path
    if logical.lower().endswith((".log", ".log1", ".log2")):
        return  # a transaction log is not a hive
    hive_name = (guess_hive_type(logical) or file_name(logical)).upper()
    with Hive(case.artifact_path(row), label=logical) as hive:
        if not hive.ok:
            stats.unreadable += 1
            stats.failed.append("; ".join(hive.warnings) or f"{logical}: cannot open the hive")
            return
        keys: list[str] = []
        times: list[Any] = []
        for key, ts in hive.walk():
            keys.append(key)
            times.append(ts)
            if len(keys) >= batch:
                yield _hive_table(row, logical, hive_name, keys, times)
                keys, times = [], []
        if keys:
            yield _hive_table(row, logical, hive_name, keys, times)
        stats.failed.extend(hive.warnings)


def _hive_table(row: ManifestRow, logical: str, hive_name: str, keys: list[str], times: list[Any]) -> pa.Table:
    low = [k.lower() for k in keys]
    return table(
        len(keys),
        {
            "ts": pa.array(times, US),
            "timestamp_desc": "Key Last Written",
            "message": [f"Registry key {hive_name}\\{k}" if k else f"Registry key {hive_name} (root)" for k in keys],
            "data_type": "windows:registry:key",
            "source": "REG",
            "source_long": f"Registry key ({hive_name})",
            "parser": "triage.formats.hive",
            "host": row.source_host,
            "evidence_id": row.artifact_id,
            "path": logical,
            "registry_key": keys,
            "hive": hive_name,
            "link_record": [row.artifact_id + "#" + k for k in low],
            "link_path": [logical.lower() + "#" + k for k in low],
        },
    )


def file_name(logical: str) -> str:
    """The file name of a logical path."""
    return logical.replace("\\", "/").rsplit("/", 1)[-1]


# -- file times from the manifest ---------------------------------------------------------------------------
def _ntfs_us(value: Any) -> int | None:
    """An NTFS time as the collector recorded it (ISO 8601, 100 ns) in microseconds; None when unreadable."""
    from analyzers.ntfs_times import ticks

    t = ticks(value)
    return None if t is None else t // 10


def file_time_rows(row: ManifestRow) -> Iterator[tuple[int | None, str, str, str]]:
    """``(µs or None, timestamp_desc, data_type, source_long)`` for every time the manifest row holds."""
    ntfs = row.extra.get("ntfs") if isinstance(row.extra, dict) else None
    if isinstance(ntfs, dict):
        for attr, label in (("si", "$STANDARD_INFORMATION"), ("fn", "$FILE_NAME")):
            times = ntfs.get(attr)
            if not isinstance(times, dict):
                continue
            for name, desc in SI_FN_DESC.items():
                if name in times and times[name] is not None:
                    yield _ntfs_us(times[name]), f"{desc} ({label})", f"fs:ntfs:{attr}", f"NTFS {label}"
    for value, desc in ((row.source_mtime, "Content Modification Time"), (row.source_atime, "Last Access Time")):
        if value:
            ts = pd.to_datetime(value, utc=True, errors="coerce")
            us = None if pd.isna(ts) else int(ts.value // 1000)
            yield us, desc, "fs:stat", "File stat (source, at collection)"


def file_events(case: Case, stats: SourceStats, batch: int = BATCH) -> Iterator[pa.Table]:
    """NTFS ``$SI``/``$FN`` times and source file times of every stored artifact, from the manifest."""
    cols: dict[str, list[Any]] = {k: [] for k in ("ts", "desc", "dtype", "long", "host", "eid", "path", "sha", "size")}

    def flush() -> pa.Table:
        n = len(cols["ts"])
        paths = cols["path"]
        us = pa.array(cols["ts"], pa.int64()).cast(US)
        key_time = [f"{e}@{t}" for e, t in zip(cols["eid"], cols["ts"], strict=True)]
        return table(
            n,
            {
                "ts": us,
                "timestamp_desc": cols["desc"],
                "message": [f"{d}: {p}" for d, p in zip(cols["desc"], paths, strict=True)],
                "data_type": cols["dtype"],
                "source": "FILE",
                "source_long": cols["long"],
                "parser": "triage.case manifest",
                "host": cols["host"],
                "evidence_id": cols["eid"],
                "path": paths,
                "sha256": cols["sha"],
                "size": cols["size"],
                "link_record": key_time,
                "link_path": [p.lower() for p in paths],
            },
        )

    for row in case.evidence():
        logical = logical_path(row) or row.source_path
        stats.items += 1
        for us, desc, dtype, long in file_time_rows(row):
            for k, v in zip(
                cols,
                (us, desc, dtype, long, row.source_host, row.artifact_id, logical, row.sha256, row.size),
                strict=True,
            ):
                cols[k].append(v)
            if len(cols["ts"]) >= batch:
                yield flush()
                cols = {k: [] for k in cols}
    if cols["ts"]:
        yield flush()


# -- memory process start times -----------------------------------------------------------------------------
MEMORY_TABLES = ("pslist", "psscan")


def memory_events(case: Case, stats: SourceStats) -> Iterator[pa.Table]:
    """Process start (and exit) times from ``results/memory/<evidence_id>/{pslist,psscan}.parquet``."""
    import pyarrow.parquet as pq

    root = case.path / "results" / "memory"
    if not root.is_dir():
        return
    rows = {r.artifact_id: r for r in case.evidence(kinds={"memory_image"})}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        seen: set[tuple[Any, Any]] = set()
        row = rows.get(folder.name)
        for name in MEMORY_TABLES:
            path = folder / f"{name}.parquet"
            if not path.is_file():
                continue
            stats.items += 1
            try:
                df = pq.read_table(path).to_pandas()
            except Exception as exc:  # a damaged side table costs only itself
                stats.unreadable += 1
                stats.failed.append(f"{path.relative_to(case.path)}: {type(exc).__name__}: {exc}")
                continue
            need = {"PID", "CreateTime"}
            if not need <= set(df.columns):
                stats.failed.append(f"{path.relative_to(case.path)}: no PID/CreateTime columns")
                continue
            keys = list(zip(df["PID"], df["CreateTime"].astype(str), strict=True))
            keep = np.array([k not in seen for k in keys], dtype=bool)
            seen.update(keys)
            df = df[keep]
            if not len(df):
                continue
            image = _text(df.get("ImageFileName", pd.Series("", index=df.index)))
            pid = pd.to_numeric(df["PID"], errors="coerce").astype("Int64")
            ppid = pd.to_numeric(df.get("PPID", pd.Series(None, index=df.index)), errors="coerce").astype("Int64")
            for col, desc in (("CreateTime", "Process Start Time"), ("ExitTime", "Process Exit Time")):
                if col not in df.columns:
                    continue
                ts = pd.to_datetime(df[col], utc=True, errors="coerce")
                sel = df[col].notna()  # a running process has no exit time: not an unreadable one
                if not sel.any():
                    continue
                eid = row.artifact_id if row else folder.name
                logical = (logical_path(row) or row.source_path) if row else folder.name
                pid_text = _text(pid[sel])
                yield table(
                    int(sel.sum()),
                    {
                        "ts": ts[sel],
                        "timestamp_desc": desc,
                        "message": f"Process ({name}) " + image[sel] + " PID " + pid_text + " PPID " + _text(ppid[sel]),
                        "data_type": "windows:memory:process",
                        "source": "MEM",
                        "source_long": f"Memory image ({name})",
                        "parser": "analyzers.memory side table",
                        "host": row.source_host if row else "",
                        "evidence_id": eid,
                        "path": logical,
                        "pid": pid[sel],
                        "ppid": ppid[sel],
                        "image": image[sel],
                        "link_record": eid + "#pid" + pid_text,
                        "link_path": logical.lower() + "#pid" + pid_text,
                    },
                )


# -- the whole case -----------------------------------------------------------------------------------------
Source = Callable[[Case, ManifestRow, SourceStats], Iterator[pa.Table]]
PER_ARTIFACT: tuple[tuple[str, frozenset[str], Source], ...] = (
    ("evtx", EVTX_KINDS, evtx_events),
    ("weblog", LOG_KINDS, weblog_events),
    ("registry", HIVE_KINDS, hive_events),
)
SOURCES = ("evtx", "weblog", "registry", "file", "memory")


def case_events(
    case: Case,
    stats: dict[str, SourceStats],
    batch: int = BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[tuple[str, pa.Table]]:
    """``(source, table)`` for every event of the case; an artifact that fails costs only itself.

    ``progress(done, total)`` counts the artifacts read (plus the manifest and the memory tables as one each).
    """
    for name in SOURCES:
        stats.setdefault(name, SourceStats())
    todo = [(name, fn, row) for name, kinds, fn in PER_ARTIFACT for row in case.evidence(kinds=set(kinds))]
    total = len(todo) + 2
    for done, (name, fn, row) in enumerate(todo):
        if progress is not None:
            progress(done, total)
        st = stats[name]
        st.items += 1
        try:
            for t in fn(case, row, st):
                yield name, t
        except Exception as exc:  # hostile bytes: this artifact only, with a recorded warning
            log.warning("timeline: %s %s: %s", name, row.relpath, exc)
            st.unreadable += 1
            st.failed.append(f"{logical_path(row) or row.source_path}: {type(exc).__name__}: {exc}")
    for t in file_events(case, stats["file"], batch):
        yield "file", t
    if progress is not None:
        progress(total - 1, total)
    for t in memory_events(case, stats["memory"]):
        yield "memory", t
    if progress is not None:
        progress(total, total)


def describe(stats: dict[str, SourceStats]) -> dict[str, Any]:
    """The per-source counts as plain data (for the summary and the custody event)."""
    return {
        k: {
            "items": v.items,
            "unreadable": v.unreadable,
            "events": v.events,
            "no_time": v.no_time,
            "problems": v.failed[:50],
        }
        for k, v in stats.items()
    }
