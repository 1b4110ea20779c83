"""The text exports of the findings written straight from Arrow record batches: CSV, JSONL, Timesketch JSONL.

No pandas here: a batch is turned into text column by column with Arrow compute (C++), and a JSON line is
the element-wise join of its cells. Only cells that need something Arrow cannot do go through Python, one at
a time: text holding a JSON escape (quotes, backslashes, control characters: ``orjson`` writes it), a CSV cell
a spreadsheet would read as a formula or that holds a bidi control (:func:`triage.report.cells.csv_text`), and
the nested ``attributes`` of ``findings.jsonl`` (parsed and written back by ``orjson``, in one C-level map over
the batch). Every line is byte for byte what ``orjson.dumps`` of the row's dict gives, every CSV cell what the
pandas writers gave (``tests/triage/report/test_report_streaming.py`` compares them). Files are hashed as their
bytes are written. This module imports no pandas (pyarrow loads it on its first conversion of Python values).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson

CHUNK = 65_536
TIMESKETCH_FIELDS = [
    "finding_id",
    "host",
    "severity",
    "confidence",
    "analyzer",
    "analyzer_version",
    "rule_id",
    "rule_title",
    "title",
    "evidence_id",
    "evidence_path",
    "evidence_sha256",
    "location",
    "mitre",
    "cve",
    "ed2102_steps",
    "tags",
    "case_id",
]


# -- sources --------------------------------------------------------------------------------------
def findings_source(src: Any, chunk: int = CHUNK) -> tuple[Any, Iterator[Any]]:
    """``(schema, record batches of at most chunk rows)`` of findings given as a ``findings.parquet`` path, an
    Arrow table, a findings frame, or an iterable of frames, tables or batches (in order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if isinstance(src, str | Path):
        pf = pq.ParquetFile(src)
        return pf.schema_arrow, pf.iter_batches(batch_size=chunk)
    if isinstance(src, pa.Table | pa.RecordBatch):
        table = src if isinstance(src, pa.Table) else pa.Table.from_batches([src])
        return table.schema, iter(table.to_batches(max_chunksize=chunk))
    if _is_frame(src):
        table = pa.Table.from_pandas(src, preserve_index=False)
        return table.schema, iter(table.to_batches(max_chunksize=chunk))
    parts = iter(src)
    first = next(parts, None)
    if first is None:  # nothing at all: the canonical (empty) findings
        from triage.finding import findings_frame

        return findings_source(findings_frame([]), chunk)
    schema, head = findings_source(first, chunk)

    def rest() -> Iterator[Any]:
        yield from head
        for part in parts:
            yield from findings_source(part, chunk)[1]

    return schema, rest()


def _is_frame(obj: Any) -> bool:
    mod = type(obj).__module__
    return mod.startswith("pandas") and hasattr(obj, "columns")


def parquet_batches(path: Path, chunk: int = CHUNK) -> Iterator[Any]:
    """The findings of a ``findings.parquet`` as Arrow record batches of at most ``chunk`` rows, in file order."""
    return findings_source(path, chunk)[1]


class _HashedFile:
    """A binary file whose SHA-256 is computed from the bytes as they are written (no second read)."""

    def __init__(self, path: Path) -> None:
        self.fh: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.sha = hashlib.sha256()

    def write(self, data: Any) -> None:
        self.sha.update(data)
        self.fh.write(data)

    def close(self) -> str:
        self.fh.close()
        return self.sha.hexdigest()


# -- cells ----------------------------------------------------------------------------------------
def _whole(arr: Any) -> Any:
    import pyarrow as pa

    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _digits(out: np.ndarray, at: int, value: np.ndarray, width: int) -> None:
    for i in range(width - 1, -1, -1):  # least significant digit last
        out[:, at + i] = 48 + value % 10
        value = value // 10


def _iso_bytes(micros: np.ndarray, suffix: bytes) -> np.ndarray | None:
    """``YYYY-MM-DDTHH:MM:SS.ffffff`` + suffix of epoch microseconds as rows of a uint8 matrix, computed with
    integer arithmetic (the proleptic Gregorian calendar, as numpy's); None when a year is outside 0-9999."""
    days = micros // 86_400_000_000
    rem = micros - days * 86_400_000_000
    secs, frac = rem // 1_000_000, rem % 1_000_000
    z = days + 719_468  # days from 0000-03-01 (civil-from-days: H. Hinnant's algorithm)
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    if len(year) and (year.min() < 0 or year.max() > 9999):
        return None
    out = np.empty((len(micros), 26 + len(suffix)), dtype=np.uint8)
    _digits(out, 0, year, 4)
    _digits(out, 5, month, 2)
    _digits(out, 8, day, 2)
    _digits(out, 11, secs // 3600, 2)
    _digits(out, 14, secs // 60 % 60, 2)
    _digits(out, 17, secs % 60, 2)
    _digits(out, 20, frac, 6)
    for at, char in ((4, b"-"), (7, b"-"), (10, b"T"), (13, b":"), (16, b":"), (19, b".")):
        out[:, at] = char[0]
    out[:, 26:] = np.frombuffer(suffix, dtype=np.uint8)
    return out


def iso_times(arr: Any, suffix: str = "Z") -> Any:
    """A timestamp column as ISO 8601 UTC text with microseconds (``2021-03-03T02:14:07.000000Z``); missing
    stay missing. The same text as numpy's ``datetime_as_string`` (which the pandas writers used; it remains
    the path for years outside 0-9999), computed column-wise with integer arithmetic."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _whole(arr)
    unit = arr.type.unit
    big = pa.large_string()
    values = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy().view(f"datetime64[{unit}]").astype("datetime64[us]")
    rows = _iso_bytes(values.view(np.int64), suffix.encode())
    validity = pc.is_valid(arr).buffers()[1] if arr.null_count else None
    if rows is not None:
        offsets = np.arange(len(arr) + 1, dtype=np.int64) * rows.shape[1]
        return pa.LargeStringArray.from_buffers(
            len(arr), pa.py_buffer(offsets), pa.py_buffer(rows), validity, arr.null_count
        )
    text = pa.array(np.datetime_as_string(values, unit="us"), big)
    text = pc.binary_join_element_wise(text, pa.scalar(suffix, big), pa.scalar("", big))
    if arr.null_count:
        text = pc.if_else(pc.is_valid(arr), text, pa.scalar(None, big))
    return text


def as_text(arr: Any, suffix: str = "Z") -> Any:
    """Any findings column as a ``large_string`` array: categories by name, times as ISO text."""
    import pyarrow as pa

    arr = _whole(arr)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_timestamp(arr.type):
        return iso_times(arr, suffix)
    return arr if arr.type == pa.large_string() else arr.cast(pa.large_string())


def _control(seg: np.ndarray) -> np.ndarray:
    return seg < 0x20


def _json_special(seg: np.ndarray) -> np.ndarray:
    return (seg < 0x20) | (seg == 0x22) | (seg == 0x5C)  # control characters, '"', '\\'


def rows_with(arr: Any, test: Any) -> np.ndarray:
    """Rows (ascending) of a text array holding a byte that ``test`` (vectorised over a uint8 array) marks:
    a few numpy passes over the array's data buffer, not one regex per cell."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    if data is None or offsets[-1] == offsets[0]:
        return np.zeros(0, dtype=np.int64)
    seg = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]]
    hits = np.flatnonzero(test(seg))
    if not len(hits):
        return hits
    rows = np.searchsorted(offsets, hits + offsets[0], side="right") - 1
    rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))]  # hits ascend: drop repeats of a row
    if arr.null_count:  # a missing cell's slot may hold bytes: it is no cell
        import pyarrow.compute as pc

        rows = rows[pc.is_valid(arr).to_numpy(zero_copy_only=False)[rows]]
    return rows


def _mask(n: int, rows: np.ndarray) -> Any:
    import pyarrow as pa

    flags = np.zeros(n, dtype=bool)
    flags[rows] = True
    return pa.array(flags)


def _escaped(arr: Any) -> Any:
    """The inside of each cell's JSON string (no quotes around it), as orjson writes it: quotes and
    backslashes escaped by Arrow, cells with control characters by orjson itself."""
    import pyarrow as pa
    import pyarrow.compute as pc

    control = rows_with(arr, _control)
    fixed = pc.replace_substring(pc.replace_substring(arr, "\\", "\\\\"), '"', '\\"')
    if len(control):  # \n, \t, \u0000 ...
        exact = [orjson.dumps(v).decode()[1:-1] for v in arr.take(pa.array(control)).to_pylist()]
        fixed = pc.replace_with_mask(fixed, _mask(len(arr), control), pa.array(exact, pa.large_string()))
    return fixed


def json_inside(arr: Any) -> Any:
    """Each cell of a text column without missing cells as the inside of its JSON string (the quotes go
    around it in the line's constant parts: no pass over the column to add them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = _whole(arr)
    special = rows_with(arr, _json_special)
    if not len(special):
        return arr
    if len(special) * 4 > len(arr):  # many cells (a column of JSON text): the whole column in one pass
        return _escaped(arr)
    return pc.replace_with_mask(arr, _mask(len(arr), special), _escaped(arr.take(pa.array(special))))


def json_strings(arr: Any) -> Any:
    """Each cell of a text column as a JSON string (``null`` where missing), byte for byte ``orjson``'s."""
    import pyarrow as pa
    import pyarrow.compute as pc

    big = pa.large_string()
    out = pc.binary_join_element_wise(pa.scalar('"', big), json_inside(arr), pa.scalar('"', big), pa.scalar("", big))
    return pc.fill_null(out, "null") if out.null_count else out


def json_cell(arr: Any) -> tuple[Any, bool]:
    """A text column for a JSON line: ``(cells, whole)``; ``whole`` when each cell is a complete JSON value
    (a column with missing cells: ``null`` or a quoted string), else the insides of JSON strings."""
    arr = _whole(arr)
    if arr.null_count:
        return json_strings(arr), True
    return json_inside(arr), False


def json_attributes(value: Any) -> Any:
    """Attributes as a JSON object; text that is not one is kept as text, never spliced into the line."""
    if not isinstance(value, str):
        return None
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value
    return parsed if isinstance(parsed, dict) else value


def json_nested(arr: Any) -> Any:
    """Each ``attributes`` cell as the JSON object it holds (compact, as ``orjson`` writes it), else as a JSON
    string; ``null`` where missing."""
    import pyarrow as pa

    values = arr.to_pylist()
    cells: list[str] | None = None
    if not arr.null_count:
        try:  # the usual batch: every cell a JSON object, parsed in one C-level map
            parsed = list(map(orjson.loads, values))
            if all(type(p) is dict for p in parsed):
                # decoded at once: orjson's bytes objects kept alive hold ~4 KiB each (measured: 258 MiB for
                # 65,536 small objects)
                cells = [orjson.dumps(p).decode() for p in parsed]
        except orjson.JSONDecodeError:
            cells = None
    if cells is None:  # some cell is missing, not JSON or not an object: cell by cell
        cells = [orjson.dumps(json_attributes(v)).decode() for v in values]
    return pa.array(cells, pa.large_string())


def _write_lines(out: _HashedFile, parts: list[Any]) -> None:
    """The element-wise join of ``parts`` (scalars and arrays of one batch) written as one buffer."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lines = _whole(pc.binary_join_element_wise(*parts, pa.scalar("", pa.large_string())))
    if not len(lines):
        return
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    start, end = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
    data = lines.buffers()[2]
    if data is not None and end > start:
        out.write(memoryview(data)[start:end])


def _line_parts(cells: list[tuple[str, Any, bool]]) -> list[Any]:
    """The parts of a batch's JSON lines: ``cells`` are (key, column, whole) in key order (see
    :func:`json_cell`); between columns one constant part holds the separator, the key and the quotes."""
    import pyarrow as pa

    big = pa.large_string()
    parts: list[Any] = []
    pending = ""
    for i, (name, col, whole) in enumerate(cells):
        pending += ("{" if i == 0 else ",") + orjson.dumps(name).decode() + ":" + ("" if whole else '"')
        parts += [pa.scalar(pending, big), col]
        pending = "" if whole else '"'
    parts.append(pa.scalar(pending + "}\n", big))
    return parts


# -- JSONL ----------------------------------------------------------------------------------------
def jsonl_batch(out: _HashedFile, batch: Any) -> None:
    """One JSON object per finding, keys in column order, ``attributes`` nested."""
    if not batch.num_rows:
        return
    cells: list[tuple[str, Any, bool]] = []
    for i, name in enumerate(batch.schema.names):
        col = as_text(batch.column(i))
        cells.append((name, json_nested(col), True) if name == "attributes" else (name, *json_cell(col)))
    _write_lines(out, _line_parts(cells))


def write_jsonl(src: Any, path: Path, chunk: int = CHUNK) -> str:
    """``findings.jsonl`` from findings (see :func:`findings_source`); returns the file's SHA-256."""
    _schema, batches = findings_source(src, chunk)
    out = _HashedFile(path)
    try:
        for batch in batches:
            jsonl_batch(out, batch)
    finally:
        digest = out.close()
    return digest


# -- Timesketch -----------------------------------------------------------------------------------
def _tag_lists(rule: Any, sev: Any, tags: Any) -> Any:
    """``tag`` cells: one JSON list per distinct (rule, severity, tags), built once and gathered to the rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    codes, names = [], []
    for arr in (rule, sev, tags):
        enc = pc.fill_null(arr, "").dictionary_encode()
        codes.append(enc.indices.to_numpy().astype(np.int64))
        names.append(enc.dictionary.to_pylist())
    key = (codes[0] * len(names[1]) + codes[1]) * len(names[2]) + codes[2]
    uniq, inverse = np.unique(key, return_inverse=True)
    texts = []
    for k in uniq.tolist():
        rest, t = divmod(k, len(names[2]))
        r, s = divmod(rest, len(names[1]))
        own = (p.strip() for p in names[2][t].split(","))
        items = dict.fromkeys(x for x in ("triage", names[0][r], names[1][s], *own) if x)
        texts.append(orjson.dumps(list(items)).decode())
    return pa.array(texts, pa.large_string()).take(pa.array(inverse.ravel()))


def timesketch_batch(out: _HashedFile, batch: Any) -> int:
    """Timesketch rows of a batch (``message``, ``datetime``, ``timestamp`` in µs, ``timestamp_desc``, our
    fields, ``tag``, ``details``, ``attributes`` as text); returns the findings left out for lack of a time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = _whole(batch.column("ts"))
    dated = batch.filter(pc.is_valid(ts)) if ts.null_count else batch
    skipped = batch.num_rows - dated.num_rows
    if not dated.num_rows:
        return skipped
    big = pa.large_string()
    empty = pa.scalar("", big)

    def text(name: str) -> Any:
        return as_text(dated.column(name))

    sev = text("severity")
    ts = _whole(dated.column("ts"))
    message = pc.binary_join_element_wise(
        pa.scalar("[", big),
        pc.fill_null(sev, ""),
        pa.scalar("] ", big),
        pc.fill_null(text("host"), ""),
        pa.scalar(": ", big),
        pc.fill_null(text("title"), ""),
        empty,
    )
    desc = pc.fill_null(text("ts_desc"), "")
    desc = pc.if_else(pc.equal(desc, empty), pa.scalar("Finding time", big), desc)
    # epoch microseconds (the canonical unit of ``ts``)
    micros = ts.cast(pa.timestamp("us", ts.type.tz), safe=False).cast(pa.int64())
    cells: list[tuple[str, Any, bool]] = [
        ("message", *json_cell(message)),
        ("datetime", *json_cell(iso_times(ts, "+00:00"))),
        ("timestamp", micros.cast(big), True),
        ("timestamp_desc", *json_cell(desc)),
    ]
    cells += [(c, *json_cell(sev if c == "severity" else text(c))) for c in TIMESKETCH_FIELDS if c != "tags"]
    cells.append(("tag", _tag_lists(text("rule_id"), sev, text("tags")), True))
    cells.append(("details", *json_cell(text("message"))))
    cells.append(("attributes", *json_cell(text("attributes"))))
    _write_lines(out, _line_parts(cells))
    return skipped


def write_timesketch_jsonl(src: Any, path: Path, chunk: int = CHUNK) -> tuple[int, str]:
    """``timesketch.jsonl`` from findings; returns (findings left out for lack of a time, the file's SHA-256)."""
    _schema, batches = findings_source(src, chunk)
    out = _HashedFile(path)
    skipped = 0
    try:
        for batch in batches:
            skipped += timesketch_batch(out, batch)
    finally:
        digest = out.close()
    return skipped, digest


# -- CSV ------------------------------------------------------------------------------------------
# bytes without which no cell can need a CSV change: formula starts, and the lead bytes of every bidi control
# (U+061C: D8; U+200E/F, U+202A-E, U+2066-9: E2)
def _csv_candidate(seg: np.ndarray) -> np.ndarray:
    hit = (seg == 0x3D) | (seg == 0x2B) | (seg == 0x40) | (seg == 0x2D)  # = + @ -
    return hit | (seg == 0x09) | (seg == 0x0A) | (seg == 0x0D) | (seg == 0xD8) | (seg == 0xE2)


def csv_cells(arr: Any) -> Any:
    """A text column made spreadsheet-safe (:func:`triage.report.cells.csv_text`). One numpy pass over the bytes
    finds the cells that could need a change, the exact test (one Arrow regex) runs on those alone, and only
    the cells it flags go through Python."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from triage.report.cells import CSV_SUSPECT, csv_text

    arr = _whole(arr)
    maybe = rows_with(arr, _csv_candidate)
    if not len(maybe):
        return arr
    picked = arr.take(pa.array(maybe))
    flagged = pc.fill_null(pc.match_substring_regex(picked, CSV_SUSPECT), False)
    if not flagged.true_count:
        return arr
    rows = maybe[flagged.to_numpy(zero_copy_only=False)]
    fixed = pa.array([csv_text(v) for v in picked.filter(flagged).to_pylist()], pa.large_string())
    return pc.replace_with_mask(arr, _mask(len(arr), rows), fixed)


def csv_batch(batch: Any) -> Any:
    """A batch as the table the CSV writer gets: every column text, neutralised; times as ISO 8601 UTC."""
    import pyarrow as pa

    cols = []
    for col in batch.columns:
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            cols.append(csv_cells(as_text(col)))
        elif pa.types.is_dictionary(col.type) or pa.types.is_timestamp(col.type) or pa.types.is_null(col.type):
            cols.append(as_text(col, "+00:00"))
        else:  # a typed non-text column (none in a findings table) is written as the value it is
            cols.append(_whole(col))
    return pa.table(cols, names=batch.schema.names)


def _csv_schema(schema: Any) -> Any:
    """The CSV table's schema for findings of ``schema``: every column text unless typed otherwise."""
    import pyarrow as pa

    fields = []
    for f in schema:
        t = f.type
        text = pa.types.is_dictionary(t) or pa.types.is_timestamp(t) or pa.types.is_null(t) or pa.types.is_string(t)
        fields.append(pa.field(f.name, pa.large_string() if text else t))
    return pa.schema(fields)


def write_csv(src: Any, path: Path, chunk: int = CHUNK) -> str:
    """``findings.csv`` from findings, every text cell neutralised and quoted; returns the file's SHA-256.

    Cells holding ``,``, a quote or a line break are quoted (a bare CR stays inside its cell); see
    :mod:`triage.report.cells` for what is neutralised and why.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    schema, batches = findings_source(src, chunk)
    schema = _csv_schema(schema)
    out = _HashedFile(path)
    header = True
    try:
        for batch in batches:
            if not batch.num_rows:
                continue
            sink = pa.BufferOutputStream()
            opts = pacsv.WriteOptions(quoting_style="needed", include_header=header)
            pacsv.write_csv(csv_batch(batch).cast(schema), sink, opts)
            out.write(sink.getvalue())
            header = False
        if header:  # no findings: the header alone
            sink = pa.BufferOutputStream()
            pacsv.write_csv(schema.empty_table(), sink, pacsv.WriteOptions(quoting_style="needed"))
            out.write(sink.getvalue())
    finally:
        digest = out.close()
    return digest


def export_from_parquet(kind: str, parquet: Path, path: Path) -> tuple[int, str]:
    """One text export written from ``findings.parquet`` read in batches (runs in a worker process).

    Returns the findings left out (Timesketch) and the written file's SHA-256, taken as it was written.
    """
    from triage.report.arrowmem import use_jemalloc

    use_jemalloc()
    if kind == "csv":
        return 0, write_csv(parquet, path)
    if kind == "timesketch":
        return write_timesketch_jsonl(parquet, path)
    return 0, write_jsonl(parquet, path)


def write_all(src: Any, csv: Path, jsonl: Path, timesketch: Path, chunk: int = CHUNK) -> tuple[int, dict[str, str]]:
    """The three text exports in this process, in turn; returns (Timesketch left out, SHA-256 by file name)."""
    hashes = {csv.name: write_csv(src, csv, chunk), jsonl.name: write_jsonl(src, jsonl, chunk)}
    skipped, hashes[timesketch.name] = write_timesketch_jsonl(src, timesketch, chunk)
    return skipped, hashes
