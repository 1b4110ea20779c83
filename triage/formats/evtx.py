"""EVTX files as typed batches of Windows event records (Arrow tables or pandas frames): the one EVTX reader.

Backends: the Rust ``evtx`` package (fast; told to skip bad chunks, which it reports as warnings), and
``python-evtx`` as the fallback for files the first cannot open (it walks every chunk whose magic checks,
not only the header's count). Every batch has the same system columns; each EventData or UserData field
becomes a column under its own name, as Sigma's Windows field names expect, and a rendered message is the
``Message`` column. A system value that does not fit int64 is dropped with a warning; its record stays.
The record model here (:class:`ReadStats`, :func:`flatten_event`, :func:`to_frame`) is shared with the
event-log analyzer's reader of JSON exports (``analyzers.eventlog.reader``).

Batches are built as Arrow tables (:func:`table_from_json`); the pandas frames callers know are those tables
wrapped without copying (:func:`table_to_frame`). pandas is imported only when a pandas frame is asked for or a
rare value needs its general conversion, so the event-log analyzer's Arrow path runs without it.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from triage.arrowlite import numbers, valid_bits
from triage.tasks import paused_gc

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_loads: Callable[[str | bytes], Any]
try:  # orjson parses the evtx package's JSON about a third faster than the standard library
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - optional speed-up
    _loads = json.loads

BATCH = 20_000
SYSTEM_COLUMNS = (
    "EventRecordID",
    "TimeCreated",
    "EventID",
    "Provider",
    "Channel",
    "Computer",
    "Level",
    "Task",
    "Opcode",
    "Keywords",
    "UserID",
    "ProcessID",
    "ThreadID",
    "Version",
    "Qualifiers",
    "EventSourceName",
)
INT_COLUMNS = ("EventRecordID", "EventID", "Level", "Task", "Opcode", "ProcessID", "ThreadID", "Version", "Qualifiers")
SYSTEM_SET = frozenset(SYSTEM_COLUMNS)


def __getattr__(name: str) -> Any:
    if name == "STRING":  # the pandas string dtype of every text column (pandas imported on first use)
        import pandas as pd

        return pd.StringDtype("pyarrow")
    raise AttributeError(name)


@dataclass
class ReadStats:
    """What reading one source gave: counts, backend, problems (kept as warnings, never raised)."""

    backend: str = ""
    records: int = 0
    bad_records: int = 0
    bad_chunks: int = 0
    warnings: list[str] = field(default_factory=list)
    first: Any = None  # earliest and latest event time (pd.Timestamp, or a UTC datetime from an Arrow table)
    last: Any = None
    channels: dict[str, int] = field(default_factory=dict)
    truncated: bool = False
    bad_values: int = 0  # values dropped (out of range) or repaired, records kept
    limit_hit: bool = False  # a reading bound (expanded bytes, ratio) stopped the read
    compression: str = ""
    encoding: str = ""

    def warn(self, message: str) -> None:
        if len(self.warnings) < 200:
            self.warnings.append(message)
        elif len(self.warnings) == 200:
            self.warnings.append("(further warnings not recorded)")

    def see(self, frame: pd.DataFrame | pa.Table) -> None:
        if isinstance(frame, pa.Table):
            self._see_table(frame)
            return
        self.records += len(frame)
        ts = frame["TimeCreated"].dropna()
        if len(ts):
            lo, hi = ts.min(), ts.max()
            self.first = lo if self.first is None or lo < self.first else self.first
            self.last = hi if self.last is None or hi > self.last else self.last
        for ch, n in frame["Channel"].value_counts().items():
            self.channels[str(ch)] = self.channels.get(str(ch), 0) + int(n)

    def _see_table(self, table: pa.Table) -> None:
        """:meth:`see` over an Arrow table (no pandas): the same counts, times as UTC datetimes."""
        self.records += table.num_rows
        stamps, timed = time_arrays(table)
        if timed.any():
            when = stamps[timed]
            lo, hi = _utc(int(when.min())), _utc(int(when.max()))
            self.first = lo if self.first is None or lo < self.first else self.first
            self.last = hi if self.last is None or hi > self.last else self.last
        counts = channel_counts(table, 0, table.num_rows)
        for ch, n in sorted(counts.items(), key=lambda item: -item[1]):  # most frequent first, as pandas counts
            self.channels[ch] = self.channels.get(ch, 0) + n


def _utc(micros: int) -> datetime:
    """Microseconds since the epoch as a UTC datetime."""
    return datetime.fromtimestamp(0, UTC) + np.timedelta64(micros, "us").item()


def time_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """``TimeCreated`` of a table as (microseconds since the epoch as int64, True where the time is known)."""
    col = table.column("TimeCreated")
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if not len(arr):
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=bool)
    stamps = numbers(arr.cast(pa.int64()), 0)
    return stamps, valid_bits(arr)


def channel_counts(table: pa.Table, start: int, stop: int) -> dict[str, int]:
    """Events per channel in rows ``[start, stop)`` of a table (what :meth:`ReadStats.see` counts)."""
    col = table.column("Channel").slice(start, stop - start)
    counts = pc.value_counts(col.combine_chunks() if col.num_chunks != 1 else col.chunk(0))
    out: dict[str, int] = {}
    for item in counts.to_pylist():
        if item["values"] is not None:
            out[str(item["values"])] = int(item["counts"])
    return out


# -- flattening ---------------------------------------------------------------------------------------
def scalar(value: Any) -> str | None:
    """A record value as text: lists joined by newlines, ``#text``/``Value`` wrappers unwrapped, other dicts as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "\n".join(s for s in (scalar(v) for v in value) if s is not None)
    if isinstance(value, dict):
        if "#text" in value:
            return scalar(value["#text"])
        if "Value" in value and len(value) <= 2:  # Velociraptor's {"Value": x, "Qualifiers": y}
            return scalar(value["Value"])
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _attr(node: Any, name: str, system: dict[str, Any], key: str) -> Any:
    """An attribute in any of the JSON shapes: evtx's ``X_attributes``, ``#attributes``, or plain."""
    if f"{key}_attributes" in system and isinstance(system[f"{key}_attributes"], dict):
        return system[f"{key}_attributes"].get(name)
    if isinstance(node, dict):
        if "#attributes" in node:
            return node["#attributes"].get(name)
        return node.get(name)
    return None


def to_int(value: Any) -> int | None:
    """A record value as an int (decimal, 0x hex or float text); None when it is not a number."""
    text = scalar(value)
    if text is None:
        return None
    text = text.strip()
    try:
        return int(text, 16) if text.lower().startswith(("0x", "-0x")) else int(text)
    except ValueError:
        pass
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        return None


def add_data(row: dict[str, Any], data: Any) -> None:
    """EventData/UserData fields into the row; classic unnamed data joined into ``Data``."""
    if data is None:
        return
    if isinstance(data, list | str):
        row["Data"] = scalar(data)
        return
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        if key in ("#attributes", "xmlns") or key.endswith("_attributes"):
            continue
        if key == "Data" and (not isinstance(value, dict) or "#text" in value):
            row["Data"] = scalar(value)
            continue
        name = f"EventData_{key}" if key in SYSTEM_SET else key
        row[name] = scalar(value)


def _fast_data(row: dict[str, Any], data: dict[str, Any]) -> bool:
    """The common case (named scalar fields) without the general walk; False to fall back."""
    for key, value in data.items():
        if type(value) is str or value is None:
            pass
        elif type(value) is int:
            value = str(value)
        else:
            return False
        row[f"EventData_{key}" if key in SYSTEM_SET else key] = value
    return True


def flatten_event(doc: dict[str, Any]) -> dict[str, Any]:
    """One evtx/evtx_dump/Velociraptor-style JSON event to a flat row.

    Numbers stay as given (int or text): :func:`to_frame` converts whole columns at once.
    """
    event = doc.get("Event", doc)
    system = event.get("System") or {}
    if "Provider_attributes" in system:  # the evtx package with separate_json_attributes: the hot path
        prov = system["Provider_attributes"]
        sec = system.get("Security_attributes") or {}
        exe = system.get("Execution_attributes") or {}
        eid_attr = system.get("EventID_attributes")
        row: dict[str, Any] = {
            "EventRecordID": system.get("EventRecordID"),
            "TimeCreated": (system.get("TimeCreated_attributes") or {}).get("SystemTime"),
            "EventID": system.get("EventID"),
            "Qualifiers": eid_attr.get("Qualifiers") if eid_attr else None,
            "Provider": prov.get("Name"),
            "EventSourceName": prov.get("EventSourceName"),
            "Channel": system.get("Channel"),
            "Computer": system.get("Computer"),
            "Level": system.get("Level"),
            "Task": system.get("Task"),
            "Opcode": system.get("Opcode"),
            "Version": system.get("Version"),
            "Keywords": system.get("Keywords"),
            "UserID": sec.get("UserID"),
            "ProcessID": exe.get("ProcessID"),
            "ThreadID": exe.get("ThreadID"),
        }
    else:
        eid = system.get("EventID")
        row = {
            "EventRecordID": scalar(system.get("EventRecordID")),
            "TimeCreated": scalar(_attr(system.get("TimeCreated"), "SystemTime", system, "TimeCreated")),
            "EventID": scalar(eid),
            "Qualifiers": scalar(_attr(eid, "Qualifiers", system, "EventID")),
            "Provider": scalar(_attr(system.get("Provider"), "Name", system, "Provider")),
            "EventSourceName": scalar(_attr(system.get("Provider"), "EventSourceName", system, "Provider")),
            "Channel": scalar(system.get("Channel")),
            "Computer": scalar(system.get("Computer")),
            "Level": scalar(system.get("Level")),
            "Task": scalar(system.get("Task")),
            "Opcode": scalar(system.get("Opcode")),
            "Version": scalar(system.get("Version")),
            "Keywords": scalar(system.get("Keywords")),
            "UserID": scalar(_attr(system.get("Security"), "UserID", system, "Security")),
            "ProcessID": scalar(_attr(system.get("Execution"), "ProcessID", system, "Execution")),
            "ThreadID": scalar(_attr(system.get("Execution"), "ThreadID", system, "Execution")),
        }
    data = event.get("EventData")
    if data is not None and not (type(data) is dict and "Data" not in data and _fast_data(row, data)):
        add_data(row, data)
    user_data = event.get("UserData")
    if isinstance(user_data, dict):
        for key, inner in user_data.items():
            if key.endswith("_attributes") or key == "#attributes":
                continue
            add_data(row, inner if isinstance(inner, dict) else {key: inner})
    return row


def to_frame(rows: list[dict[str, Any]], stats: ReadStats | None = None) -> pd.DataFrame:
    """Rows to the typed frame: system columns first and typed, all data fields as strings.

    A system value that is not a number in int64's range (a corrupt record, a hostile export) is
    dropped with a warning; the record stays.
    """
    import pandas as pd

    df = pd.DataFrame.from_records(rows)
    for col in SYSTEM_COLUMNS:
        if col not in df.columns:
            df[col] = None
    ts = df["TimeCreated"].astype("string")
    df["TimeCreated"] = pd.to_datetime(ts, utc=True, format="ISO8601", errors="coerce").astype("datetime64[us, UTC]")
    for col in INT_COLUMNS:
        df[col] = _int64_column(df[col], col, stats)
    data_cols = [c for c in df.columns if c not in SYSTEM_COLUMNS]
    for col in [*data_cols, "Provider", "Channel", "Computer", "Keywords", "UserID", "EventSourceName"]:
        df[col] = df[col].astype(pd.StringDtype("pyarrow"))
    return df[[*SYSTEM_COLUMNS, *sorted(data_cols)]]


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _int64_column(values: pd.Series, col: str, stats: ReadStats | None) -> pd.Series:
    """A column as nullable Int64; values out of range or not numbers become NA (counted, warned)."""
    import pandas as pd

    if values.dtype == "int64":
        return values.astype("Int64")
    try:
        num = (
            values
            if values.dtype.kind in "fu"
            else pd.to_numeric(values, errors="coerce", dtype_backend="numpy_nullable")
        )
        if num.dtype == "Int64":
            return num
        arr = num.to_numpy(dtype="float64", na_value=np.nan) if num.dtype.kind == "f" else None
        if num.dtype.kind == "u" and (num.dropna() <= _INT64_MAX).all():
            return num.astype("Int64")
        # integers with gaps come as floats: fine when whole and inside int64's range
        if arr is not None and (np.isnan(arr) | ((np.abs(arr) < 2.0**63) & (arr == np.floor(arr)))).all():
            return num.astype("Int64")
    except (TypeError, ValueError, OverflowError):
        pass
    # rare path (a uint64 beyond int64, a float, a big integer): value by value, exact
    out: list[int | None] = []
    for value in values:
        try:
            number = to_int(value)
        except (TypeError, ValueError, OverflowError, RecursionError):
            number = None
        if number is not None and not _INT64_MIN <= number <= _INT64_MAX:
            if stats is not None:
                stats.bad_values += 1
                stats.warn(f"{col} value {str(value)[:40]} is beyond int64; value dropped, record kept")
            number = None
        out.append(number)
    return pd.Series(pd.array(out, dtype="Int64"), index=values.index)


# -- EVTX ----------------------------------------------------------------------------------------------------
def _iter_evtx_rust(path: Path, stats: ReadStats) -> Iterator[dict[str, Any]]:
    """Records through the evtx package (it streams: 13 MB peak on a 325 MB log), chunk errors as warnings."""
    yield from _parse_rust(str(path), stats, first_chunk=0)


def _parse_rust(source: str | io.BytesIO, stats: ReadStats, first_chunk: int) -> Iterator[dict[str, Any]]:
    """Flat rows, one per record (the per-record reference path; :func:`_parse_rust_json` is the fast one)."""
    for number, text in _parse_rust_json(source, stats, first_chunk):
        try:
            yield flatten_event(_loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            stats.bad_records += 1
            stats.warn(f"record {number}: cannot flatten: {exc}")


def _parse_rust_json(source: str | io.BytesIO, stats: ReadStats, first_chunk: int) -> Iterator[tuple[Any, str]]:
    """``(record number, JSON text)`` per record from the evtx package; its chunk errors become warnings."""
    from evtx import PyEvtxParser

    where = f" (in the segment starting at chunk {first_chunk})" if first_chunk else ""
    parser = PyEvtxParser(source, number_of_threads=1, separate_json_attributes=True, skip_errors=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def drain() -> None:
            for w in caught:
                stats.bad_chunks += "chunk" in str(w.message)
                stats.warn(f"evtx: {w.message}{where}")
            caught.clear()

        for rec in parser.records_json():
            if caught:
                drain()
            if rec is None:  # the binding's type allows it; a record it could not render is skipped there
                continue
            yield rec.get("event_record_id"), rec["data"]
        drain()


# -- columnar reading: the evtx package's JSON straight into Arrow columns ------------------------------------
_STRING_SYSTEM = ("Provider", "Channel", "Computer", "Keywords", "UserID", "EventSourceName")
_LARGE_STRING = pa.large_string()


def _system_row(system: dict[str, Any]) -> tuple[Any, ...]:
    """The system values of one record in :data:`SYSTEM_COLUMNS` order (as :func:`flatten_event`'s hot path)."""
    prov = system["Provider_attributes"]
    sec = system.get("Security_attributes") or {}
    exe = system.get("Execution_attributes") or {}
    eid_attr = system.get("EventID_attributes")
    return (
        system.get("EventRecordID"),
        (system.get("TimeCreated_attributes") or {}).get("SystemTime"),
        system.get("EventID"),
        prov.get("Name"),
        system.get("Channel"),
        system.get("Computer"),
        system.get("Level"),
        system.get("Task"),
        system.get("Opcode"),
        system.get("Keywords"),
        sec.get("UserID"),
        exe.get("ProcessID"),
        exe.get("ThreadID"),
        system.get("Version"),
        eid_attr.get("Qualifiers") if eid_attr else None,
        prov.get("EventSourceName"),
    )


def _ints_or_none(values: Sequence[Any]) -> bool:
    """Whether every value is a Python int (not a bool) or None: what Arrow may take as int64 unchanged (it would
    also truncate floats)."""
    return _INT_OR_NONE.issuperset(map(type, values))  # the types looked at in C, not by a generator


_INT_OR_NONE = frozenset({int, type(None)})


def _text_array(values: Sequence[Any]) -> pa.Array | None:
    """Data values (text, int or None) as one Arrow string array; None when another type is among them."""
    # each type given, never inferred: Arrow's inference is several times slower, and it imports pandas
    first = next((v for v in values if v is not None), None)
    if first is None:
        return pa.nulls(len(values), _LARGE_STRING)
    if type(first) is str:  # the common case
        try:
            return pa.array(values, type=_LARGE_STRING, from_pandas=False)
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            pass  # other types among the texts: value by value below
    elif type(first) is int:
        if _ints_or_none(values):
            try:
                return pa.array(values, type=pa.int64(), from_pandas=False).cast(_LARGE_STRING)  # as str() writes
            except (pa.ArrowException, OverflowError, ValueError, TypeError):
                pass  # an int beyond int64: value by value below
    else:
        return None
    out: list[str | None] = []
    for value in values:
        kind = type(value)
        if kind is str or value is None:
            out.append(value)
        elif kind is int:
            out.append(str(value))
        else:
            return None
    return pa.array(out, type=_LARGE_STRING)


def _bad_value_rows(values: Sequence[Any]) -> list[int]:
    """Positions of values the fast path does not take (what :func:`_fast_data` hands to the general walk)."""
    return [i for i, v in enumerate(values) if not (v is None or type(v) is str or type(v) is int)]


def _scatter(pieces: list[tuple[np.ndarray, pa.Array]], n: int) -> pa.Array:
    """One string column of ``n`` rows from pieces ``(row positions, values)``; rows in no piece are null."""
    return _scatter_columns([pieces], n)[0]


_SCATTER_SLOTS = 1 << 20  # rows x columns built in one go (bounds the temporaries: 8 MiB per int64 array)


def _scatter_columns(columns: list[list[tuple[np.ndarray, pa.Array]]], n: int) -> list[pa.Array]:
    """String columns of ``n`` rows, each from its pieces ``(row positions, values)`` (see :func:`_scatter`).

    Built from the values' own buffers (offsets spread over the rows with numpy, the character data shared), not
    with a gather of ``n`` positions: a frame of many logs has hundreds of columns, most with a value in few rows.
    Columns are built many at once (the numpy and Arrow calls made once per group of columns, not per column).
    """
    out: list[pa.Array | None] = [None] * len(columns)
    todo: list[int] = []
    for c, pieces in enumerate(columns):
        if len(pieces) == 1 and len(pieces[0][0]) == n and (n == 0 or pieces[0][0][-1] == n - 1):
            out[c] = pieces[0][1]  # one shape covering every row in order: no copy
        else:
            todo.append(c)
    per = max(1, _SCATTER_SLOTS // max(n, 1))
    for k in range(0, len(todo), per):
        part = todo[k : k + per]
        for c, arr in zip(part, _scatter_some([columns[c] for c in part], n), strict=True):
            out[c] = arr
    return [arr for arr in out if arr is not None]  # every column, filled above


def _scatter_some(columns: list[list[tuple[np.ndarray, pa.Array]]], n: int) -> list[pa.Array]:
    """:func:`_scatter_columns` of a group of columns: their rows numbered as one space (column * n + row)."""
    count = len(columns)
    rows_list: list[np.ndarray] = []
    values_list: list[pa.Array] = []
    sizes: list[int] = []
    for pieces in columns:
        sizes.append(sum(len(rows) for rows, _ in pieces))
        for rows, values in pieces:
            rows_list.append(rows)
            values_list.append(values)
    key = np.concatenate(rows_list) + np.repeat(np.arange(count, dtype=np.int64) * n, sizes)
    values = pa.concat_arrays(values_list) if len(values_list) > 1 else values_list[0]
    if len(key) > 1 and not (np.diff(key) > 0).all():  # pieces of several templates interleave: row order
        order = np.argsort(key, kind="stable")
        key = key[order]
        values = values.take(_index_array(order))
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    # slot p's offset is that of the first value at a slot >= p: each value's offset repeated over the slots from
    # the one after the previous value's slot to its own (one pass, no per-row lengths to add up); column c's
    # offsets are slots c * n .. c * n + n, made relative to its first
    bounds = np.empty(len(key) + 2, dtype=np.int64)
    bounds[0], bounds[1:-1], bounds[-1] = -1, key, count * n
    spread = np.repeat(offsets, np.diff(bounds))
    view = np.lib.stride_tricks.as_strided(spread, shape=(count, n + 1), strides=(n * 8, 8), writeable=False)
    base = view[:, 0].copy()
    relative = view - base[:, None]
    flat = np.zeros(count * n, dtype=bool)
    flat[key] = valid_bits(values) if values.null_count else True
    valid = flat.reshape(count, n)
    packed = np.packbits(valid, axis=1, bitorder="little")
    bitmaps = np.zeros((count, -(-n // 64) * 8), dtype=np.uint8)  # rows padded to 8 bytes: each bitmap aligned
    bitmaps[:, : packed.shape[1]] = packed
    nulls = n - valid.sum(axis=1)
    data = buffers[2] if buffers[2] is not None else pa.py_buffer(b"")
    out = []
    for c in range(count):
        lo, size = int(base[c]), int(relative[c, n])
        buffers_c = [pa.py_buffer(bitmaps[c]), pa.py_buffer(relative[c]), data.slice(lo, size)]
        out.append(pa.Array.from_buffers(_LARGE_STRING, n, buffers_c, null_count=int(nulls[c])))
    return out


def _index_array(positions: np.ndarray) -> pa.Array:
    """int64 positions as an Arrow array (from the numpy buffer, without a conversion call)."""
    data = np.ascontiguousarray(positions, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


_ISO_UTC = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"  # what the evtx package writes
# finer than microseconds, after 1970 (where cutting digits and pandas' flooring of the epoch count agree)
_ISO_UTC_FINE = r"^(19[7-9]\d|[2-9]\d{3})-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"
_TIME = pa.timestamp("us", tz="UTC")


def _time_array(values: Sequence[Any]) -> pa.Array:
    """``SystemTime`` texts as UTC microsecond times; what is not a time becomes null (as pandas' coercion).

    The evtx package's own form (``2021-03-02T10:00:00.123456Z``) is converted by Arrow; any other value sends
    the batch through pandas' ISO 8601 parser, the reference for every other shape.
    """
    texts = values
    if not all(v is None or type(v) is str for v in values):  # as pandas' string conversion renders them
        texts = [None if v is None else str(v) for v in values]
    try:
        arr = pa.array(texts, type=_LARGE_STRING, from_pandas=False)
    except (pa.ArrowException, ValueError, TypeError):
        arr = None
    if arr is not None:
        valid = arr.drop_null()
        if not len(valid) or pc.all(pc.match_substring_regex(valid, _ISO_UTC)).as_py():
            return arr.cast(_TIME)
        if pc.all(pc.match_substring_regex(valid, _ISO_UTC_FINE)).as_py():
            # 100 ns (Windows) or ns digits: cut to microseconds, as pandas' conversion to microseconds does
            return pc.replace_substring_regex(arr, r"(\.\d{6})\d{1,3}Z$", r"\1Z").cast(_TIME)
    import pandas as pd

    ts = pd.Series(values, dtype=object).astype("string")
    when = pd.to_datetime(ts, utc=True, format="ISO8601", errors="coerce").astype("datetime64[us, UTC]")
    return pa.array(when.array, type=_TIME)


def _int_array(values: tuple[Any, ...], col: str, stats: ReadStats | None) -> pa.Array:
    """System numbers as int64 (null where missing); other values through pandas' conversion (:func:`to_frame`'s)."""
    if _ints_or_none(values):  # the type given, not inferred (slower, and it imports pandas)
        try:
            return pa.array(values, type=pa.int64(), from_pandas=False)
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            pass  # beyond int64
    numbers = _whole_numbers(values)
    if numbers is not None:
        try:
            return pa.array(numbers, type=pa.int64(), from_pandas=False)
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            pass  # beyond int64: the general conversion drops the value, with a warning
    import pandas as pd

    return pa.array(_int64_column(pd.Series(list(values)), col, stats).array, type=pa.int64())


_DIGITS = re.compile(r"[+-]?\d+", re.ASCII)


def _whole_numbers(values: Sequence[Any]) -> list[int | None] | None:
    """Ints and decimal integer texts (blanks around allowed) as ints, as pandas' ``to_numeric`` reads them; None
    when any value needs its general conversion (another form; the caller sends ints beyond int64 there too)."""
    out = list(values)
    if not _MIXED_NUMBERS.issuperset(map(type, out)):
        return None
    # only the texts converted (the ints, most of a column, stay as they are)
    for i in [i for i, kind in enumerate(map(type, out)) if kind is str]:
        text = out[i].strip(" \t\n\r\f\v")
        if not _DIGITS.fullmatch(text):
            return None
        out[i] = int(text)
    return out


_MIXED_NUMBERS = frozenset({int, str, type(None)})


def _system_strings(values: Sequence[Any]) -> pa.Array:
    """System text values as a large string array (pandas' string conversion when not all are text)."""
    try:
        return pa.array(values, type=_LARGE_STRING, from_pandas=False)
    except (pa.ArrowException, ValueError, TypeError):
        pass
    if all(v is None or type(v) in (str, int) for v in values):  # numbers among texts: as pandas writes them
        return pa.array([v if v is None or type(v) is str else str(v) for v in values], type=_LARGE_STRING)
    import pandas as pd

    return pa.array(pd.Series(list(values)).astype(pd.StringDtype("pyarrow")).array, type=_LARGE_STRING)


def table_to_frame(table: pa.Table) -> pd.DataFrame:
    """A batch table as the typed pandas frame (:func:`to_frame`'s dtypes), columns wrapped without copying."""
    import pandas as pd

    out: dict[str, Any] = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        if name == "TimeCreated":
            out[name] = col.to_pandas().astype("datetime64[us, UTC]").array
        elif name in INT_COLUMNS:
            arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            mask = ~valid_bits(arr)
            data = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
            out[name] = pd.arrays.IntegerArray(data, mask)
        else:
            out[name] = pd.arrays.ArrowStringArray(pa.chunked_array(col.chunks, type=_LARGE_STRING))
    return pd.DataFrame(out, index=pd.RangeIndex(table.num_rows), copy=False)


def frame_from_json(
    texts: Sequence[tuple[Any, str]], stats: ReadStats | None = None, keep: Callable[[Any], bool] | None = None
) -> pd.DataFrame | None:
    """Records as the evtx package renders them (``(record number, JSON text)``) to the typed frame.

    The same frame as :func:`to_frame` over :func:`flatten_event` rows: :func:`table_from_json` wrapped as pandas.
    """
    table = table_from_json(texts, stats, keep)
    return None if table is None else table_to_frame(table)


def table_from_json(
    texts: Sequence[tuple[Any, str]], stats: ReadStats | None = None, keep: Callable[[Any], bool] | None = None
) -> pa.Table | None:
    """Records as the evtx package renders them (``(record number, JSON text)``) to an Arrow table.

    Built column by column: the texts are parsed one by one, records are grouped by the names of their
    EventData fields (one group per event template) and each group's values become Arrow string arrays without
    a per-record row dict. A record of another shape (UserData, classic unnamed data, non-text values, JSON of
    another tool) is flattened by :func:`flatten_event`; a record that cannot be parsed costs only itself
    (counted, warned). ``keep`` filters the flat system row (a dict of system columns) of each record. Columns:
    the system columns (``TimeCreated`` UTC microseconds, the numbers int64, the rest large strings), then the
    data fields (large strings) by name. None when no record is left.
    """
    with paused_gc():  # the batch's objects all live until the table is built: collections would only rescan them
        return _frame_from_json(texts, stats, keep)


def _frame_from_json(
    texts: Sequence[tuple[Any, str]],
    stats: ReadStats | None,
    keep: Callable[[Any], bool] | None,
    kept: list[int] | None = None,
) -> pa.Table | None:
    """:func:`table_from_json`; ``kept`` (when given) receives the position in ``texts`` of each row's record."""
    system_rows: list[tuple[Any, ...]] = []
    groups: dict[tuple[str, ...], tuple[list[int], list[tuple[Any, ...]]]] = {}
    general: list[tuple[int, dict[str, Any]]] = []
    # one pass: each record parsed, taken apart and dropped before the next is parsed (its objects freed while
    # still in the cache, the memory reused by the next record: parsing all first, then walking them, cost a
    # fifth more); warnings of records that cannot be taken apart come after those of unparseable ones, as before
    flatten_warnings: list[str] = []
    loads, system_row = _loads, _system_row
    for t, (number, text) in enumerate(texts):
        try:
            doc = loads(text)
        except (ValueError, TypeError) as exc:
            if stats is not None:
                stats.bad_records += 1
                stats.warn(f"record {number}: cannot flatten: {exc}")
            continue
        i = len(system_rows)
        try:
            event = doc.get("Event", doc)
            system = event.get("System") or {}
            data = event.get("EventData")
            if (
                "Provider_attributes" in system
                and not isinstance(event.get("UserData"), dict)
                and (data is None or (type(data) is dict and "Data" not in data))
            ):
                row = system_row(system)
                if keep is not None and not keep(dict(zip(SYSTEM_COLUMNS, row, strict=True))):
                    continue
                system_rows.append(row)
                if kept is not None:
                    kept.append(t)
                if data:
                    group = groups.get(keys := tuple(data))
                    if group is None:
                        group = groups[keys] = ([], [])
                    group[0].append(i)
                    group[1].append(tuple(data.values()))
                continue
            flat = flatten_event(doc)
        except Exception as exc:  # any shape of hostile record costs only itself
            if stats is not None:
                stats.bad_records += 1
                flatten_warnings.append(f"record {number}: cannot flatten: {type(exc).__name__}: {exc}")
            continue
        if keep is not None and not keep(flat):
            continue
        system_rows.append(tuple(flat.get(c) for c in SYSTEM_COLUMNS))
        if kept is not None:
            kept.append(t)
        general.append((i, flat))
    if stats is not None:
        for message in flatten_warnings:
            stats.warn(message)
    n = len(system_rows)
    if not n:
        return None
    pieces: dict[str, list[tuple[np.ndarray, pa.Array]]] = {}
    for keys, (rows, values) in groups.items():
        names = [f"EventData_{k}" if k in SYSTEM_SET else k for k in keys]
        columns = list(zip(*values, strict=True))
        arrays = [_text_array(col) for col in columns]
        bad: set[int] = set()
        if len(set(names)) < len(names):
            bad = set(range(len(rows)))  # two fields under one name: the general walk decides
        else:
            for column, arr in zip(columns, arrays, strict=True):
                if arr is None:
                    bad.update(_bad_value_rows(column))
        if bad:  # values of other types (lists, floats, dicts): those records through flatten_event
            for j in sorted(bad):
                general.append((rows[j], _general_row(system_rows[rows[j]], keys, values[j])))
            good = [j for j in range(len(rows)) if j not in bad]
            if not good:
                continue
            rows = [rows[j] for j in good]
            columns = [tuple(column[j] for j in good) for column in columns]
            arrays = [_text_array(column) for column in columns]
        where = np.asarray(rows, dtype=np.int64)
        for name, arr in zip(names, arrays, strict=True):
            if arr is not None:  # always, once the records of other value types are out
                pieces.setdefault(name, []).append((where, arr))
    if general:
        names_seen: dict[str, tuple[list[int], list[Any]]] = {}
        for i, flat in general:
            for key, value in flat.items():
                if key not in SYSTEM_SET:
                    slot = names_seen.setdefault(key, ([], []))
                    slot[0].append(i)
                    slot[1].append(value)
        for name, (rows, values) in names_seen.items():
            arr = _text_array(values)
            if arr is None:  # flatten_event gives text or None; kept total all the same
                arr = pa.array([None if v is None else str(v) for v in values], type=_LARGE_STRING)
            pieces.setdefault(name, []).append((np.asarray(rows, dtype=np.int64), arr))
    system = list(zip(*system_rows, strict=True))
    names = []  # the table's columns from here on: System ones first, then the pieces
    arrays = []
    for col, values in zip(SYSTEM_COLUMNS, system, strict=True):
        if col == "TimeCreated":
            arrays.append(_time_array(values))
        elif col in _STRING_SYSTEM:
            arrays.append(_system_strings(values))
        else:
            arrays.append(_int_array(values, col, stats))
        names.append(col)
    data_names = sorted(pieces)
    names.extend(data_names)
    arrays.extend(_scatter_columns([pieces[name] for name in data_names], n))
    return pa.Table.from_arrays(arrays, names=names)


def _general_row(system_row: tuple[Any, ...], keys: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    """A record of the fast shape whose EventData has values of other types: the reference flattening."""
    row = dict(zip(SYSTEM_COLUMNS, system_row, strict=True))
    data = dict(zip(keys, values, strict=True))
    if not _fast_data(row, data):
        add_data(row, data)
    return row


_PADDED_HEX = re.compile(r"0x[0-9a-fA-F]{8}(?:[0-9a-fA-F]{8})?")
_BRACED_GUID = re.compile(r"\{([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}")


def _hex_like_rust(text: str) -> str:
    # python-evtx renders typed values differently from the evtx package: hex zero-padded
    # (0x00000000 for 0x0) and GUIDs braced in lower case. Use the evtx package's forms so the two
    # backends give identical rows.
    if _PADDED_HEX.fullmatch(text):
        return hex(int(text, 16))
    m = _BRACED_GUID.fullmatch(text)
    return m.group(1).upper() if m else text


def xml_event(xml: str) -> dict[str, Any]:
    """python-evtx XML to the same JSON shape the Rust parser gives (``#attributes`` style)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    out: dict[str, Any] = {}
    for part in root:
        name = local(part.tag)
        if name == "System":
            system: dict[str, Any] = {}
            for el in part:
                key = local(el.tag)
                node: dict[str, Any] = {}
                if el.attrib:
                    node["#attributes"] = dict(el.attrib)
                if el.text and el.text.strip():
                    node["#text"] = el.text
                system[key] = node if el.attrib else (el.text or None)
            out["System"] = system
        elif name == "EventData":
            named: dict[str, Any] = {}
            unnamed: list[str] = []
            for el in part:
                value = _hex_like_rust(el.text or "")
                if local(el.tag) == "Data" and "Name" in el.attrib:
                    named[el.attrib["Name"]] = value
                else:
                    unnamed.append(value)
            if unnamed:
                named["Data"] = unnamed
            out["EventData"] = named
        elif name == "UserData":
            out["UserData"] = {local(c.tag): {local(g.tag): g.text or "" for g in c} for c in part}
        elif name == "RenderingInfo":  # event XML as forwarded or exported with its rendered message
            out["RenderingInfo"] = {local(c.tag): c.text for c in part if not len(c)}
    return {"Event": out}


def _iter_evtx_python(path: Path, stats: ReadStats) -> Iterator[dict[str, Any]]:
    import Evtx.Evtx as pyevtx  # slow: only for files the Rust parser cannot open

    with pyevtx.Evtx(str(path)) as log_file:
        header = log_file.get_file_header()
        for chunk in header.chunks(include_inactive=True):  # the header's chunk count can be stale
            if not chunk.check_magic():
                stats.bad_chunks += 1
                stats.warn("python-evtx: chunk with a bad magic skipped")
                continue
            try:
                records = list(chunk.records())
            except Exception as exc:
                stats.bad_chunks += 1
                stats.warn(f"python-evtx: chunk unreadable: {exc}")
                continue
            for rec in records:
                try:
                    yield flatten_event(xml_event(rec.xml()))
                except Exception as exc:
                    stats.bad_records += 1
                    stats.warn(f"python-evtx: record unreadable: {exc}")


class Batcher:
    """Collects flat rows and hands out typed frames of ``size`` rows (bounded memory)."""

    def __init__(self, stats: ReadStats, size: int) -> None:
        self.stats, self.size, self.rows = stats, size, []  # type: ignore[var-annotated]

    def add(self, row: dict[str, Any]) -> pd.DataFrame | None:
        self.rows.append(row)
        return self.flush() if len(self.rows) >= self.size else None

    def flush(self) -> pd.DataFrame | None:
        if not self.rows:
            return None
        frame = to_frame(self.rows, self.stats)
        self.rows = []
        self.stats.see(frame)
        return frame


def iter_evtx(
    path: str | Path, stats: ReadStats, batch: int = BATCH, *, columnar: bool = True, arrow: bool = False
) -> Iterator[Any]:
    """Batches of events from an EVTX file, keeping every readable record: pandas frames, or with ``arrow``
    the same batches as Arrow tables (:func:`table_from_json`; no pandas on the evtx package's path).

    ``columnar`` (the default) builds each batch's columns straight from the parser's JSON
    (:func:`frame_from_json`); ``columnar=False`` is the record-by-record reference path (:func:`flatten_event`
    rows into :func:`to_frame`), kept to prove both give the same frames.
    """
    if not columnar:
        frames = _iter_evtx_rows(Path(path), stats, batch)
        yield from (map(frame_to_table, frames) if arrow else frames)
        return
    path = Path(path)
    stats.backend = "evtx"
    pending: list[tuple[Any, str]] = []

    def done(table: pa.Table | None) -> Any:
        if table is None:
            return None
        batch = table if arrow else table_to_frame(table)
        stats.see(batch)  # a pandas caller keeps pandas times in its stats (first, last), as before
        return batch

    def take() -> Any:
        table = table_from_json(pending, stats)
        pending.clear()
        return done(table)

    try:
        for item in _parse_rust_json(str(path), stats, first_chunk=0):
            pending.append(item)
            if len(pending) >= batch and (frame := take()) is not None:
                yield frame
    except (RuntimeError, OSError, ValueError) as exc:
        if stats.records or pending:
            stats.warn(f"evtx stopped after {stats.records + len(pending)} records: {exc}")
        else:
            frames = _python_fallback(path, stats, batch, exc)
            yield from (map(frame_to_table, frames) if arrow else frames)
            return
    if (frame := take()) is not None:
        yield frame
    tail = _partial_chunk(path, stats)
    if tail is not None:
        before = stats.records
        texts, size = tail
        if (frame := done(table_from_json(texts, stats, keep=_cut_record(stats)))) is not None:
            yield frame
        _warn_truncated(stats, size, stats.records - before, before)


def frame_to_table(frame: pd.DataFrame) -> pa.Table:
    """A typed batch frame (:func:`to_frame`) as the Arrow table :func:`table_from_json` gives."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [
        pa.field(f.name, _TIME if f.name == "TimeCreated" else pa.int64() if f.name in INT_COLUMNS else _LARGE_STRING)
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def _python_fallback(path: Path, stats: ReadStats, batch: int, exc: BaseException) -> Iterator[pd.DataFrame]:
    """python-evtx over a file the evtx package cannot open at all."""
    stats.warn(f"evtx could not read the file ({exc}); falling back to python-evtx")
    stats.backend = "python-evtx"
    out = Batcher(stats, batch)
    try:
        for row in _iter_evtx_python(path, stats):
            if (frame := out.add(row)) is not None:
                yield frame
    except Exception as exc2:  # an unreadable file is a warning, not a crash
        stats.warn(f"python-evtx could not read the file either: {exc2}")
    if (frame := out.flush()) is not None:
        yield frame


def _iter_evtx_rows(path: Path, stats: ReadStats, batch: int) -> Iterator[pd.DataFrame]:
    """The record-by-record reader (flat row dicts into :func:`to_frame`): the reference of the columnar one."""
    stats.backend = "evtx"
    out = Batcher(stats, batch)
    try:
        for row in _iter_evtx_rust(path, stats):
            if (frame := out.add(row)) is not None:
                yield frame
    except (RuntimeError, OSError, ValueError) as exc:
        if stats.records or out.rows:
            stats.warn(f"evtx stopped after {stats.records + len(out.rows)} records: {exc}")
        else:
            yield from _python_fallback(path, stats, batch, exc)
            return
    before = stats.records + len(out.rows)
    tail = _partial_chunk(path, stats)
    if tail is not None:
        texts, size = tail
        keep = _cut_record(stats)
        recovered = 0
        for number, text in texts:
            try:
                row = flatten_event(_loads(text))
            except (ValueError, TypeError, KeyError) as exc:
                stats.bad_records += 1
                stats.warn(f"record {number}: cannot flatten: {exc}")
                continue
            if keep(row):
                recovered += 1
                if (frame := out.add(row)) is not None:
                    yield frame
        _warn_truncated(stats, size, recovered, before)
    if (frame := out.flush()) is not None:
        yield frame


FILE_HEADER, CHUNK_SIZE = 4096, 65536


def _cut_record(stats: ReadStats) -> Callable[[dict[str, Any]], bool]:
    """The filter of a recovered partial chunk: the record the cut went through (number 0) is dropped, counted."""

    def keep(row: dict[str, Any]) -> bool:
        if str(row.get("EventRecordID") or "0") == "0":
            stats.bad_records += 1
            return False
        return True

    return keep


def _partial_chunk(path: Path, stats: ReadStats) -> tuple[list[tuple[Any, str]], int] | None:
    """A truncated log ends inside a chunk, which the evtx package drops whole without a word.

    Parse that tail alone, zero-padded to a full chunk behind the file header, in a private temp file: the
    records before the cut come back (as the parser's JSON texts, at most one chunk's worth), with the size of
    the tail. None when the file ends on a chunk boundary.
    """
    size = path.stat().st_size
    tail = (size - FILE_HEADER) % CHUNK_SIZE if size > FILE_HEADER else 0
    if not tail:
        return None
    stats.truncated = True
    with open(path, "rb") as fh:
        header = fh.read(FILE_HEADER)
        fh.seek(size - tail)
        part = fh.read(tail)
    texts: list[tuple[Any, str]] = []
    with tempfile.NamedTemporaryFile(prefix="triage-evtx-tail-", suffix=".evtx") as tmp:
        tmp.write(header + part + bytes(CHUNK_SIZE - tail))
        tmp.flush()
        try:
            texts.extend(_parse_rust_json(tmp.name, stats, first_chunk=0))
        except (RuntimeError, OSError, ValueError) as exc:
            stats.warn(f"truncated last chunk: {exc}")
    return texts, tail


def _warn_truncated(stats: ReadStats, tail: int, recovered: int, before: int) -> None:
    stats.warn(
        f"file is truncated: it ends {tail} bytes into a {CHUNK_SIZE}-byte chunk; "
        f"{recovered} records recovered from that partial chunk (after {before} from whole chunks)"
    )


# -- a log read in chunk ranges (a big log split between processes) ------------------------------------------
def whole_chunks(path: str | Path) -> int | None:
    """The number of chunks of an EVTX file that is its header and whole chunks; None for any other size."""
    size = Path(path).stat().st_size
    if size <= FILE_HEADER or (size - FILE_HEADER) % CHUNK_SIZE:
        return None
    return (size - FILE_HEADER) // CHUNK_SIZE


class ChunkRange(io.RawIOBase):
    """A read-only view of an EVTX file as its header followed by chunks ``[first, last)`` only.

    EVTX chunks are independent 64 KiB units (their own string and template tables), so the parser reads such a
    view as a log of those chunks: the same records, with the same record numbers, as the whole file gives there.
    """

    def __init__(self, path: str | Path, first: int, last: int) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed with this view
        self._header = self._file.read(FILE_HEADER)
        self._first = first
        self._size = FILE_HEADER + (last - first) * CHUNK_SIZE
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        if self._pos < FILE_HEADER:
            n = min(want, FILE_HEADER - self._pos)
            view[:n] = self._header[self._pos : self._pos + n]
        else:
            self._file.seek(self._first * CHUNK_SIZE + self._pos)
            n = self._file.readinto(view[:want]) or 0
        self._pos += n
        return n

    def close(self) -> None:
        self._file.close()
        super().close()


def iter_evtx_range(
    path: str | Path, stats: ReadStats, first: int, last: int, batch: int = BATCH
) -> Iterator[pa.Table]:
    """Arrow batches of the records in chunks ``[first, last)`` of a log of whole chunks (see :func:`whole_chunks`).

    Rows are those :func:`iter_evtx` gives for these chunks; problems are warnings in ``stats`` (the parser numbers
    chunks from ``first`` there), never raised.
    """
    stats.backend = "evtx"
    pending: list[tuple[Any, str]] = []

    def take() -> pa.Table | None:
        table = table_from_json(pending, stats)
        pending.clear()
        if table is not None:
            stats.see(table)
        return table

    with ChunkRange(path, first, last) as view:
        try:
            for item in _parse_rust_json(view, stats, first_chunk=first):  # type: ignore[arg-type]
                pending.append(item)
                if len(pending) >= batch and (table := take()) is not None:
                    yield table
        except (RuntimeError, OSError, ValueError) as exc:
            stats.warn(f"evtx stopped after {stats.records + len(pending)} records of chunks {first}-{last}: {exc}")
        if (table := take()) is not None:
            yield table


# -- several small logs in one frame -------------------------------------------------------------------------
@dataclass
class LogPart:
    """One log's rows ``[start, stop)`` of a :class:`LogsTogether` frame, with that log's own reading stats."""

    start: int
    stop: int
    stats: ReadStats


@dataclass
class LogsTogether:
    """Several logs read into one typed frame (each log's rows contiguous, in the order given).

    ``parts[i]`` is None for a log left to be read on its own (:func:`iter_evtx`): one the evtx package cannot
    open, a truncated one, one with any reading warning, or one past the record budget.
    """

    frame: pa.Table
    parts: list[LogPart | None]


def read_together(paths: Sequence[str | Path], max_records: int = 4 * BATCH) -> LogsTogether | None:
    """Small EVTX logs (of one batch) as one frame, so rules run once over all of them instead of once per log.

    Only logs read without any warning join (everything about a problem log is reported by its own read);
    when building the shared frame itself warns (an unreadable record, a value out of range), None: every log is
    then read on its own. Rows are the same as :func:`iter_evtx` gives for each log alone.
    """
    texts: list[tuple[Any, str]] = []
    starts: list[int] = []
    parts: list[ReadStats | None] = []
    for raw in paths:
        path = Path(raw)
        stats = ReadStats(backend="evtx")
        try:
            size = path.stat().st_size
            if size > FILE_HEADER and (size - FILE_HEADER) % CHUNK_SIZE:
                raise ValueError("truncated")  # the partial-chunk recovery is iter_evtx's
            mine = list(_parse_rust_json(str(path), stats, first_chunk=0)) if len(texts) < max_records else None
        except (RuntimeError, OSError, ValueError):
            mine = None
        if mine is None or stats.warnings or len(texts) + len(mine) > max_records:
            parts.append(None)
            continue
        starts.append(len(texts))
        texts.extend(mine)
        parts.append(stats)
    if not any(parts):
        return None
    shared = ReadStats()
    kept: list[int] = []
    with paused_gc():
        frame = _frame_from_json(texts, shared, None, kept)  # an Arrow table: no pandas on this path
    if shared.warnings or shared.bad_records or shared.bad_values:
        return None
    if frame is None:  # every joined log is empty
        frame = pa.Table.from_arrays(
            [pa.array([], type=_TIME if c == "TimeCreated" else pa.int64() if c in INT_COLUMNS else _LARGE_STRING)
             for c in SYSTEM_COLUMNS],
            names=list(SYSTEM_COLUMNS),
        )
    # each log's first row: the first kept record at or after its first text
    firsts = np.searchsorted(np.asarray(kept, dtype=np.int64), np.asarray([*starts, len(texts)], dtype=np.int64))
    out: list[LogPart | None] = []
    # what ReadStats.see counts, for every log from whole-table arrays (a call per log would cost more)
    channel = frame.column("Channel")
    encoded = pc.dictionary_encode(channel.combine_chunks() if channel.num_chunks != 1 else channel.chunk(0))
    codes = numbers(encoded.indices, -1)
    names = encoded.dictionary.to_pylist()
    stamps, timed = time_arrays(frame)
    joined = iter(range(len(starts)))
    for mine_stats in parts:
        if mine_stats is None:
            out.append(None)
            continue
        j = next(joined)
        a, b = int(firsts[j]), int(firsts[j + 1])
        mine_stats.records = b - a
        if timed[a:b].any():
            when = stamps[a:b][timed[a:b]]
            mine_stats.first = _utc(int(when.min()))
            mine_stats.last = _utc(int(when.max()))
        chan = codes[a:b]
        for code, n in zip(*np.unique(chan[chan >= 0], return_counts=True), strict=True):
            mine_stats.channels[str(names[code])] = int(n)
        out.append(LogPart(a, b, mine_stats))
    return LogsTogether(frame, out)
