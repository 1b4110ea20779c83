"""The layout of ``results/``: where unit and batch records live, and reading them back as one record per artifact.

Two kinds of record file sit in ``results/<analyzer>/``:

``<evidence_id>.run.json`` (a *single* unit, also every file of cases made before batches)
    one :class:`triage.finding.RunRecord`; its findings in ``<evidence_id>.parquet`` (only when it has any;
    older versions also wrote empty ones).
``<batch_id>.batch.json`` (a *batch*: small artifacts of one analyzer run together in one worker)
    ``{"format": BATCH_FORMAT, "batch_id", "analyzer", "run_id", "result_path", "result_sha256", "units": [...]}``
    with one run record per artifact (status, findings, warnings, message, traceback, duration, evidence hash,
    fingerprint, outputs); the findings of all its artifacts in ``<batch_id>.parquet`` (no file when none).
    A row with findings names the batch's parquet and its hash, as a single unit's record names its own.

An artifact has at most one record in an analyzer's folder: the runner drops a row from its old file before the
artifact runs again (:func:`triage.runner`). Readers (resume, verify, the report, the run's result hashes) go
through :func:`unit_records`, so both layouts read the same.
"""

from __future__ import annotations

import json
import logging
from array import array
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from triage.custody import load_json

log = logging.getLogger(__name__)

UNIT_SUFFIX = ".run.json"
BATCH_SUFFIX = ".batch.json"
BATCH_FORMAT = "triage-batch/1"


def is_record_name(name: str) -> bool:
    """Whether a file name is a unit or batch record."""
    return name.endswith((UNIT_SUFFIX, BATCH_SUFFIX)) and not name.startswith(".")


def record_files(case_dir: Path, analyzers: Iterable[str] | None = None) -> list[Path]:
    """Every record file under ``results/`` (of these analyzers), sorted."""
    root = case_dir / "results"
    if analyzers is None:
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    else:
        folders = [root / a for a in analyzers]
    out = [p for f in folders for suffix in (UNIT_SUFFIX, BATCH_SUFFIX) for p in f.glob(f"*{suffix}")]
    return sorted(p for p in out if not p.name.startswith("."))


def parse_records(path: Path, body: Any) -> list[dict[str, Any]]:
    """The per-artifact records of one record file's parsed JSON; ValueError when it is not a record."""
    if not isinstance(body, dict):
        raise ValueError("not a JSON object")
    if path.name.endswith(BATCH_SUFFIX):
        units = body.get("units")
        if body.get("format") != BATCH_FORMAT or not isinstance(units, list):
            raise ValueError(f"not a batch record of format {BATCH_FORMAT}")
        if not all(isinstance(u, dict) for u in units):
            raise ValueError("not a batch record: a row is not a JSON object")
        return [dict(u) for u in units]
    return [body]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The per-artifact records of one record file; OSError or ValueError when unreadable."""
    return parse_records(path, load_json(path.read_text(encoding="utf-8")))


def unit_records(
    case_dir: Path,
    analyzers: Iterable[str] | None = None,
    problems: list[tuple[Path, str]] | None = None,
    known: Mapping[Path, list[dict[str, Any]]] | None = None,
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """``(record file, per-artifact record)`` for every artifact with a record, single and batch layouts alike.

    Unreadable record files are skipped (logged, and listed in ``problems`` when given). ``known``: rows of
    record files the caller wrote itself in this command, by path, taken instead of reading those files (only
    for files that are still there)."""
    known = known or {}
    for path in record_files(case_dir, analyzers):
        try:
            recs = known[path] if path in known else read_records(path)
        except (OSError, ValueError) as exc:
            log.warning("unreadable run record %s: %s", path, exc)
            if problems is not None:
                problems.append((path, str(exc)))
            continue
        for rec in recs:
            yield path, rec


def record_run_id(path: Path) -> str | None:
    """The analyze run that wrote a record file ("" for records of older versions; None when unreadable)."""
    try:
        body = load_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(body.get("run_id") or "") if isinstance(body, dict) else None


def unit_record(case_dir: Path, analyzer: str, evidence_id: str) -> dict[str, Any] | None:
    """The record of one artifact under one analyzer (its single-unit file, else its row in a batch), or None."""
    single = case_dir / "results" / analyzer / f"{evidence_id}{UNIT_SUFFIX}"
    try:
        return read_records(single)[0]
    except (OSError, ValueError, IndexError):
        pass
    for _path, rec in unit_records(case_dir, [analyzer]):
        if rec.get("evidence_id") == evidence_id:
            return rec
    return None


# -- the findings file of a unit or batch ---------------------------------------------------------------------
_PANDAS_META: bytes | None = None


def _pandas_metadata() -> bytes:
    """The ``pandas`` schema metadata ``findings_frame(...).to_parquet`` writes, built without importing pandas
    (a worker that writes findings would otherwise pay the pandas import, about 0.7 CPU s, per process)."""
    global _PANDAS_META
    if _PANDAS_META is None:
        from importlib.metadata import PackageNotFoundError, version

        import pyarrow as pa

        from triage.finding import FINDING_COLUMNS, SEVERITIES

        def column(name: str) -> dict[str, Any]:
            base = {"name": name, "field_name": name}
            if name == "severity":
                meta = {"num_categories": len(SEVERITIES), "ordered": True}
                return base | {"pandas_type": "categorical", "numpy_type": "int8", "metadata": meta}
            if name == "ts":
                return base | {
                    "pandas_type": "datetimetz",
                    "numpy_type": "datetime64[us]",
                    "metadata": {"timezone": "UTC"},
                }
            return base | {"pandas_type": "object", "numpy_type": "string", "metadata": None}

        try:
            pandas_version = version("pandas")
        except PackageNotFoundError:
            pandas_version = ""
        _PANDAS_META = json.dumps(
            {
                "index_columns": [],
                "column_indexes": [],
                "columns": [column(n) for n in FINDING_COLUMNS],
                "attributes": {},
                "creator": {"library": "pyarrow", "version": pa.__version__},
                "pandas_version": pandas_version,
            }
        ).encode()
    return _PANDAS_META


def _validity(values: list[Any]) -> tuple[bytes | None, int]:
    """An Arrow validity bitmap of the values that are not None (None when all are), and the null count."""
    nulls = sum(v is None for v in values)
    if not nulls:
        return None, 0
    bits = bytearray((len(values) + 7) // 8)
    for i, v in enumerate(values):
        if v is not None:
            bits[i >> 3] |= 1 << (i & 7)
    return bytes(bits), nulls


def _arrow(kind: Any, values: list[Any], data: list[bytes]) -> Any:
    """An Arrow array of one fixed-width buffer per value (``data``), with ``values``' None as nulls."""
    import pyarrow as pa

    valid, nulls = _validity(values)
    buffers = [pa.py_buffer(valid) if valid else None, pa.py_buffer(b"".join(data))]
    return pa.Array.from_buffers(kind, len(values), buffers, null_count=nulls)


def _text_array(values: list[Any], large: bool = True) -> Any:
    """Text values (None: null) as an Arrow (large) string array: Arrow's own conversion when it imports no pandas
    (pandas loaded, or its import switched off as in a worker writing findings; several times faster than the
    loop below), else built from its buffers."""
    import pyarrow as pa

    from triage.arrowlite import converts_without_pandas

    if converts_without_pandas():
        return pa.array(values, type=pa.large_string() if large else pa.string(), from_pandas=False)

    encoded = [v.encode("utf-8") if v is not None else b"" for v in values]
    offsets = array("q" if large else "i", [0])
    total = 0
    for e in encoded:
        total += len(e)
        offsets.append(total)
    valid, nulls = _validity(values)
    buffers = [pa.py_buffer(valid) if valid else None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.large_string() if large else pa.string(), len(values), buffers, null_count=nulls)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class FindingColumns:
    """Findings held column by column in their stored form (the values of :meth:`Finding.storable`, a list per
    column of :data:`triage.finding.FINDING_COLUMNS`), built without a :class:`Finding` object each.

    An analyzer that gives thousands of findings at once (the event-log rules over a batch of logs) may yield one
    of these among its findings when :func:`triage.unitrun.run_unit` runs it; it counts as ``len()`` findings
    (:func:`count_findings`) and is written in its place, in order (:func:`findings_table`). Rows come from
    :meth:`add`, which gives exactly the row a :class:`Finding` of the same fields stores."""

    __slots__ = ("_defaults", "columns")

    def __init__(self) -> None:
        from triage.finding import FINDING_COLUMNS

        self.columns: dict[str, list[Any]] = {name: [] for name in FINDING_COLUMNS}
        self._defaults: dict[str, Any] | None = None

    def __len__(self) -> int:
        return len(self.columns["finding_id"])

    def __getstate__(self) -> dict[str, list[Any]]:
        return self.columns

    def __setstate__(self, state: dict[str, list[Any]]) -> None:
        self.columns, self._defaults = state, None

    def add(self, fields: dict[str, Any]) -> None:
        """One finding from the keywords a :class:`Finding` takes (what :meth:`Unit.finding_fields` gives)."""
        self.add_many(fields, ({},))

    def add_many(self, common: dict[str, Any], varying: Iterable[dict[str, Any]]) -> None:
        """Findings that share the ``common`` keywords, each with its own on top (title, message, time ...).

        Plain text takes the direct way: list fields joined (once for all), the id computed, ``attributes`` (a
        dict) as JSON text with sorted keys, ``ts`` in UTC. Anything :class:`Finding` would change or refuse (text
        with lone surrogates, a severity outside the scale, an unknown field, attributes that are not a dict)
        goes through a Finding, so each row is the one it stores, whatever the input."""
        from triage.finding import LIST_FIELDS, SEVERITIES, Finding, _json_default, _utc, finding_id

        defaults = self._defaults
        if defaults is None:
            from dataclasses import MISSING
            from dataclasses import fields as dataclass_fields

            given = dataclass_fields(Finding)
            defaults = self._defaults = {f.name: f.default for f in given if f.default is not MISSING}
        columns = self.columns
        own = {"severity", "finding_id", *LIST_FIELDS}  # checked once, in the shared part: a row may not set them
        base = defaults | common
        # what every row shares, checked once: known fields, a valid severity, no id of its own, plain text
        shared = base.keys() <= columns.keys() and base["severity"] in SEVERITIES and not base["finding_id"]
        if shared:
            for name in LIST_FIELDS:
                value = base[name]
                base[name] = value if isinstance(value, str) else ",".join(str(v) for v in value)
            shared = _plain(base.values())
        for fields in varying:
            row = base | fields
            attrs = row.get("attributes")
            if shared and type(attrs) is dict and row.keys() == columns.keys() and own.isdisjoint(fields):
                # as Finding writes a dict's JSON; a text it would escape (a lone surrogate) takes its way below
                text = json.dumps(attrs, sort_keys=True, default=_json_default, ensure_ascii=False)
                if _plain((text, *fields.values())):
                    row["attributes"] = text
                    row["ts"] = _utc(row["ts"])
                    row["finding_id"] = finding_id(
                        row["analyzer"], row["rule_id"], row["evidence_sha256"], row["location"]
                    )
                    for name, column in columns.items():
                        column.append(row[name])
                    continue
            stored = Finding(**(defaults | common | fields)).storable()
            for name, column in columns.items():
                column.append(stored[name])


def _plain(values: Iterable[Any]) -> bool:
    """Whether no text among the values is one :class:`Finding` would escape (a lone surrogate)."""
    return all(type(v) is not str or v.isascii() or _kept(v) for v in values)


def _kept(text: str) -> bool:
    """Whether :class:`Finding` stores ``text`` as it is (imported here: asked only of non-ASCII text, not per row)."""
    from triage.finding import storable

    return storable(text) is text


def count_findings(found: Iterable[Any]) -> int:
    """How many findings a unit's list holds (a :class:`FindingColumns` counts its rows)."""
    return sum(len(f) if isinstance(f, FindingColumns) else 1 for f in found)


def findings_table(found: list[Any]) -> Any:
    """The findings (:class:`triage.finding.Finding` objects and :class:`FindingColumns`, in order) as the Arrow
    table of the canonical findings frame: the same columns, types and pandas metadata as ``findings_frame(found)``
    gives.

    Built from Arrow buffers: ``pyarrow.array`` over Python values imports pandas (to ask whether they are pandas
    objects), which a worker writing a few findings would pay for with about 0.7 CPU s."""
    import pyarrow as pa

    from triage.finding import FINDING_COLUMNS, SEVERITIES

    columns: dict[str, list[Any]] = {name: [] for name in FINDING_COLUMNS}
    rows: list[dict[str, Any]] = []  # stored rows of the Finding objects since the last block

    def flush() -> None:
        for name, column in columns.items():
            column.extend([r[name] for r in rows])
        rows.clear()

    for f in found:
        if isinstance(f, FindingColumns):
            flush()
            for name, column in columns.items():
                column.extend(f.columns[name])
        else:
            rows.append(f.storable())
    flush()
    arrays = []
    for name in FINDING_COLUMNS:
        values = columns[name]
        if name == "severity":
            index = {s: i for i, s in enumerate(SEVERITIES)}
            codes = [index.get(v) if v is not None else None for v in values]
            dictionary = _text_array(list(SEVERITIES), large=False)
            indices = _arrow(pa.int8(), codes, [bytes([c or 0]) for c in codes])
            arrays.append(pa.DictionaryArray.from_arrays(indices, dictionary, ordered=True))
        elif name == "ts":
            micros = [(v - _EPOCH) // timedelta(microseconds=1) if v is not None else 0 for v in values]
            arrays.append(_arrow(pa.timestamp("us", tz="UTC"), values, [array("q", micros).tobytes()]))
        else:
            arrays.append(_text_array(values))
    table = pa.Table.from_arrays(arrays, names=list(FINDING_COLUMNS))
    return table.replace_schema_metadata({b"pandas": _pandas_metadata()})


def findings_parquet(found: list[Any]) -> bytes:
    """The findings as the bytes of one parquet file (what a unit or batch writes as its result)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(findings_table(found), sink)
    return sink.getvalue().to_pybytes()
