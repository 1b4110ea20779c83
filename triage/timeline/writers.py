"""The super-timeline's two file formats, written a batch at a time.

* Timesketch JSONL: one JSON object per line with Timesketch's required ``message``, ``datetime`` (ISO 8601
  with its UTC offset) and ``timestamp_desc``, plus ``timestamp`` (microseconds since 1970, UTC), ``tag`` (a
  JSON list, so Timesketch shows the entries as tags), ``data_type``, plaso's ``source_short``/``source_long``/
  ``parser``/``hostname``/``filename``, and the source fields that the event has (no nulls written).
* Plaso-style CSV: the columns of plaso's default ``dynamic`` output (``datetime, timestamp_desc, source,
  source_long, message, parser, display_name, tag``) plus ``hostname``, ``data_type`` and ``evidence_id``;
  tags joined with ``,``; every text cell formula-neutralised (the cells hold attacker text: URLs, user agents).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from triage.report.cells import neutralise_series, visible_series
from triage.timeline.events import FIELD_NAMES

_NL = orjson.OPT_APPEND_NEWLINE
CSV_COLUMNS = (
    "datetime",
    "timestamp_desc",
    "source",
    "source_long",
    "message",
    "parser",
    "display_name",
    "tag",
    "hostname",
    "data_type",
    "evidence_id",
)


class Sink(Protocol):
    def write(self, data: bytes) -> int: ...


def iso_text(us: np.ndarray) -> np.ndarray:
    """Microseconds since 1970 as ISO 8601 text with the UTC offset (``2021-03-03T02:13:51.113000+00:00``)."""
    text = np.datetime_as_string(us.astype("datetime64[us]"), unit="us")
    return np.char.add(text, "+00:00")


class TimesketchOut:
    """Timesketch JSONL lines, one per event."""

    BASE = ("message", "datetime", "timestamp", "timestamp_desc", "tag", "data_type")
    RENAMED = (("source", "source_short"), ("source_long", "source_long"), ("parser", "parser"),
               ("host", "hostname"), ("path", "filename"), ("evidence_id", "evidence_id"))  # fmt: skip

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, t: pa.Table) -> None:
        us = t["ts"].cast(pa.int64()).to_numpy()
        base = [
            t["message"].to_pylist(),
            iso_text(us).tolist(),
            us.tolist(),
            t["timestamp_desc"].to_pylist(),
            t["tag"].to_pylist(),
            t["data_type"].to_pylist(),
        ]
        named = [(out, t[col].to_pylist()) for col, out in self.RENAMED]
        fields = [(name, t[name].to_pylist()) for name in FIELD_NAMES if t[name].null_count < t.num_rows]
        keys = self.BASE
        dumps = orjson.dumps
        lines = []
        for i, row in enumerate(zip(*base, strict=True)):
            d: dict[str, Any] = dict(zip(keys, row, strict=True))
            if d["tag"] is None:
                d["tag"] = []
            for name, values in named:
                v = values[i]
                if v is not None:
                    d[name] = v
            for name, values in fields:
                v = values[i]
                if v is not None:
                    d[name] = v
            lines.append(dumps(d, option=_NL))
        self.sink.write(b"".join(lines))

    def close(self) -> None:
        """Nothing buffered."""


def _safe(values: Any) -> pd.Series:
    return neutralise_series(visible_series(pd.Series(values, dtype="string")))


class CsvOut:
    """Plaso ``dynamic``-style CSV rows (header first)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.writer: Any = None

    def write(self, t: pa.Table) -> None:
        import pyarrow.csv as pacsv

        us = t["ts"].cast(pa.int64()).to_numpy()
        tags = [",".join(x) if x else "" for x in t["tag"].to_pylist()]
        cols = {
            "datetime": pa.array(iso_text(us), pa.string()),
            "timestamp_desc": _safe(t["timestamp_desc"].to_pandas()),
            "source": t["source"],
            "source_long": _safe(t["source_long"].to_pandas()),
            "message": _safe(t["message"].to_pandas()),
            "parser": t["parser"],
            "display_name": _safe(t["path"].to_pandas()),
            "tag": _safe(tags),
            "hostname": _safe(t["host"].to_pandas()),
            "data_type": t["data_type"],
            "evidence_id": t["evidence_id"],
        }
        arrays = [v if isinstance(v, pa.Array | pa.ChunkedArray) else pa.array(v, pa.string()) for v in cols.values()]
        table = pa.Table.from_arrays(arrays, names=list(CSV_COLUMNS))
        if self.writer is None:
            self.writer = pacsv.CSVWriter(
                self.sink, table.schema, write_options=pacsv.WriteOptions(quoting_style="needed")
            )
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        else:  # no event: the header alone
            self.sink.write((",".join(f'"{c}"' for c in CSV_COLUMNS) + "\n").encode())
