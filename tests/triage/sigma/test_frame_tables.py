"""Rule views over an Arrow table (the event-log path) give what the same events as a pandas frame give."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from triage.formats.evtx import read_together, table_to_frame
from triage.registry import signature_path
from triage.sigma import load_rules
from triage.sigma.frame import text_number, text_numbers
from triage.testing.eventlogs import event_log_files
from triage.testing.evtx import evtx_bytes

REPO = Path(__file__).resolve().parents[3]
TEXTS = [
    "1", " 1", "1 ", "+5", "-5", "1.", ".5", "1e5", "1E-3", "1e400", "inf", "-inf", "Inf", "INFINITY", "nan", "NaN",
    "1_0", "0x10", "1,000", "", " ", "\uff11\uff12", "\u0663", "12345678901234567890", "-12345678901234567890",
    "e5", "5e", "--5", "0", "00012", "1.2.3", "True", "None", "<NA>", "null", "1\t", "\n1", "4624", "3", "0x3e7",
    "S-1-5-18", "C:\\Windows\\System32\\cmd.exe", "2021-03-02T10:00:00Z",
]


@pytest.mark.parametrize("text", TEXTS)
def test_text_numbers_read_as_pandas_reads_them(text: str) -> None:
    parsed = pd.to_numeric(pd.Series([text, None], dtype=object), errors="coerce")
    expected = parsed.to_numpy("float64", na_value=np.nan)[0]
    got = text_number(text)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_text_numbers_of_an_array_are_per_value() -> None:
    arr = pa.array([*TEXTS, None, "7", "7"], type=pa.large_string())
    got = text_numbers(arr)
    expected = np.array([text_number(t) for t in TEXTS] + [math.nan, 7.0, 7.0])
    assert np.array_equal(got, expected, equal_nan=True)


def test_the_pack_matches_the_same_rows_of_a_table_and_of_its_frame(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import evtx_throughput
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    logs = {f"attack-{Path(k).name}": v for k, v in event_log_files(True).items()}
    logs |= {f"benign-{Path(k).name}": v for k, v in event_log_files(False).items()}
    logs["mix.evtx"] = evtx_bytes(evtx_throughput.make_events(600, seed=11))
    paths = []
    for name, data in logs.items():
        (tmp_path / name).write_bytes(data)
        paths.append(tmp_path / name)
    together = read_together(paths)
    assert together is not None and isinstance(together.frame, pa.Table)
    rules = load_rules([signature_path("sigma/ed2102")])
    on_table = {r.id: rows.tolist() for r, rows in rules.iter_matches(together.frame)}
    on_frame = {r.id: rows.tolist() for r, rows in rules.iter_matches(table_to_frame(together.frame))}
    assert len(on_table) >= 15 and on_table == on_frame
