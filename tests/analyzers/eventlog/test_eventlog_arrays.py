"""The event-log analyzer's column-wise building of matched rows (from the Arrow table, or a pandas frame of a JSON
export) gives what pandas' row dicts give."""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from analyzers.eventlog import FrameRows
from triage.formats.evtx import SYSTEM_SET, read_together, table_to_frame
from triage.testing.eventlogs import event_log_files
from triage.testing.evtx import evtx_bytes

REPO = Path(__file__).resolve().parents[3]


def _normal(event: dict[str, Any]) -> dict[str, Any]:
    """A row as the findings read it: system fields always (missing as None), data fields only with a value."""
    return {k: (None if pd.isna(v) else v) for k, v in event.items() if k in SYSTEM_SET or not pd.isna(v)}


def test_matched_rows_are_the_rows_pandas_gives(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import evtx_throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    logs = {f"attack-{Path(k).name}": v for k, v in event_log_files(True).items()}
    logs["mix.evtx"] = evtx_bytes(evtx_throughput.make_events(400, seed=3))
    paths = []
    for name, data in logs.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    together = read_together(paths)
    assert together is not None
    table = together.frame
    frame = table_to_frame(table)
    assert frame.shape[1] > 40 and frame["Qualifiers"].isna().any()  # many columns, system values missing
    rng = random.Random(7)
    for k in (1, 5, 60, len(frame)):
        rows = sorted(rng.sample(range(len(frame)), k))
        reference = frame.iloc[rows].to_dict("records")
        for source in (table, frame):
            got = FrameRows(source).rows(rows)
            assert list(got) == rows
            for row, expected in zip(rows, reference, strict=True):
                event = got[row]
                assert _normal(event) == _normal(expected)
                assert list(event) == [c for c in expected if c in event]  # the frame's column order
                assert set(SYSTEM_SET) <= set(event)
                when = event["TimeCreated"]
                assert type(when) is datetime and when.tzinfo is UTC and type(event["EventRecordID"]) is int
    assert FrameRows(table).rows([]) == {}
