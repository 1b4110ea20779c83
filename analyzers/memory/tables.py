"""Plugin tables kept as evidence: ``results/memory/<evidence_id>/<table>.parquet`` plus ``index.json``.

Columns get Arrow types from the TreeGrid's declared types (addresses as uint64: kernel addresses do not fit
int64); a column whose values do not fit its declared type falls back to text rather than failing the table.
Files are written to a temporary name and renamed, and the index records each table's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from analyzers.memory.vol import Column

if TYPE_CHECKING:
    from triage.registry import Unit

ARROW_TYPES = {
    "int": pa.int64(),
    "hex": pa.uint64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "float": pa.float64(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "bytes": pa.binary(),
}


def _array(values: list[Any], kind: str) -> pa.Array:
    try:
        return pa.array(values, type=ARROW_TYPES.get(kind, pa.string()))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        return pa.array(
            [None if v is None else (v.hex() if isinstance(v, bytes) else str(v)) for v in values], type=pa.string()
        )


def to_arrow(
    columns: Sequence[Column], rows: Sequence[dict[str, Any]], metadata: dict[str, str] | None = None
) -> pa.Table:
    """An Arrow table with one column per declared column, in order (empty tables keep their schema)."""
    arrays = [_array([r.get(c.name) for r in rows], c.kind) for c in columns]
    table = pa.Table.from_arrays(arrays, names=[c.name for c in columns])
    return table.replace_schema_metadata({k: str(v) for k, v in (metadata or {}).items()})


def write_table(
    path: Path, columns: Sequence[Column], rows: Sequence[dict[str, Any]], metadata: dict[str, str] | None = None
) -> str:
    """Write a table atomically; return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(to_arrow(columns, rows, metadata), tmp, compression="zstd")
    os.replace(tmp, path)
    return sha256_file(path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """A written table back as row dicts with Python values (tz-aware datetimes, bytes, ints)."""
    return pq.read_table(path).to_pylist()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class TableStore:
    """The folder of one memory image's tables and its index.

    With a ``unit`` the tables are the unit's declared side outputs: each is written to a temporary file
    (:meth:`staging`, a Volatility child may write it), then moved into place, hashed and listed in the unit's
    run record by the runner's unit (:meth:`commit`); a unit killed in between leaves no partial table.
    """

    def __init__(self, folder: Path, unit: Unit | None = None) -> None:
        self.folder = folder
        self.unit = unit
        self.entries: dict[str, dict[str, Any]] = {}
        self.hashes: dict[str, str] = {}

    def reset(self) -> None:
        """Drop tables of an earlier run, so none outlives a plugin that now fails."""
        if self.folder.is_dir():
            for p in self.folder.iterdir():
                if p.suffix in (".parquet", ".json") or p.name.startswith("."):
                    p.unlink()
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, table: str) -> Path:
        return self.folder / f"{table}.parquet"

    def staging(self, table: str) -> Path:
        """Where to write ``table`` before :meth:`commit` puts it in place."""
        if self.unit is None:
            return self.folder / f".{table}.parquet.staged"
        return self.unit.output_temp(f"{table}.parquet")

    def commit(self, table: str, staged: Path) -> str:
        """Move a written table into place; return its sha256."""
        if self.unit is None:
            os.replace(staged, self.path(table))
            digest = sha256_file(self.path(table))
        else:
            digest = self.unit.commit_output(f"{table}.parquet", staged)
        self.hashes[table] = digest
        return digest

    def discard(self, table: str) -> None:
        """Remove what a child stopped half way left of ``table`` (temporary files only)."""
        for pattern in (f".{table}.parquet.*", f"..{table}.parquet.*"):
            for tmp in self.folder.glob(pattern):
                tmp.unlink(missing_ok=True)

    def record(self, table: str, **entry: Any) -> None:
        """Note how a table came to be (status, plugin, rows, duration, error); sha256 added when written."""
        p = self.path(table)
        if entry.get("status") == "ok" and p.exists():
            entry["file"] = p.name
            entry["sha256"] = self.hashes.get(table) or sha256_file(p)
        self.entries[table] = entry

    def write_index(self, extra: dict[str, Any] | None = None) -> Path:
        out = self.folder / "index.json"
        data = json.dumps({"tables": self.entries, **(extra or {})}, indent=1, default=str).encode()
        if self.unit is not None:
            self.unit.write_output(out.name, data)
            return out
        tmp = out.with_name(f".index.json.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, out)
        return out
